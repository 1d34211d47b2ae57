/* sniff: magic numbers of the stored types (see sniff.h). */
#include "sniff.h"

#include <string.h>

static const struct sniff_magic {
    const char *bytes;
    size_t len;
    const char *type;
} sniff_magics[] = {
    {"\x89PNG\r\n\x1a\n", 8, "image/png"},
    {"\xff\xd8\xff", 3, "image/jpeg"},
    {"II*\0", 4, "image/tiff"},
    {"MM\0*", 4, "image/tiff"},
    {"%PDF-", 5, "application/pdf"},
};

const char *sniff_type(const void *head, size_t len)
{
    for (size_t i = 0; i < sizeof sniff_magics / sizeof sniff_magics[0]; i++) {
        const struct sniff_magic *m = &sniff_magics[i];
        if (len >= m->len && memcmp(head, m->bytes, m->len) == 0)
            return m->type;
    }
    return NULL;
}
