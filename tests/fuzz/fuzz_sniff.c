/* fuzz_sniff: libFuzzer target for svc-storage's type sniffer and file name functions: the
 * type is one of the four or NULL; a sanitized name is non-empty valid UTF-8 without
 * controls, quotes or slashes, at most DOCNAME_MAX bytes; its Content-Disposition is printable
 * ASCII; Range parsing stays inside the file. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "docname.h"
#include "sniff.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *t = sniff_type(data, size < SNIFF_NEED ? size : SNIFF_NEED);
    if (t && strcmp(t, "image/png") && strcmp(t, "image/jpeg") && strcmp(t, "image/tiff") &&
        strcmp(t, "application/pdf"))
        abort();
    char name[DOCNAME_MAX + 1];
    docname_sanitize((const char *)data, size, name, sizeof name);
    size_t n = strlen(name);
    if (n == 0 || n > DOCNAME_MAX || !utf8_valid(name, n) || strpbrk(name, "/\\\"'\r\n"))
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            abort();
    char cd[DOCNAME_DISPOSITION_MAX];
    docname_disposition(name, cd, sizeof cd);
    for (const char *p = cd; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            abort();
    char *h = malloc(size + 1);
    memcpy(h, data, size);
    h[size] = '\0';
    int64_t fsize = size, a = -1, b = -1;
    if (docname_range(h, fsize, &a, &b) == 1 && (a < 0 || b < a || b >= fsize))
        abort();
    free(h);
    return 0;
}
