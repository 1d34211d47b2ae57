/* utf8: well-formed UTF-8 checks and repair (see utf8.h); the table of well-formed byte
 * sequences is Unicode's (Table 3-7). */
#include "utf8.h"

#include <string.h>

static const char utf8_replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */

/* Length of the well-formed sequence at s[0..len), or 0 when it is ill-formed; then *bad
 * is the length of its maximal ill-formed subpart (at least 1). */
static size_t utf8_seq(const unsigned char *s, size_t len, size_t *bad)
{
    unsigned char b = s[0], lo = 0x80, hi = 0xBF;
    size_t n;
    *bad = 1;
    if (b >= 0x01 && b <= 0x7F)
        return 1;
    if (b >= 0xC2 && b <= 0xDF)
        n = 2;
    else if (b >= 0xE0 && b <= 0xEF)
        n = 3;
    else if (b >= 0xF0 && b <= 0xF4)
        n = 4;
    else
        return 0; /* NUL, a continuation byte, C0, C1, F5..FF */
    if (b == 0xE0)
        lo = 0xA0; /* no overlong 3-byte form */
    else if (b == 0xED)
        hi = 0x9F; /* no surrogates */
    else if (b == 0xF0)
        lo = 0x90; /* no overlong 4-byte form */
    else if (b == 0xF4)
        hi = 0x8F; /* nothing above U+10FFFF */
    for (size_t i = 1; i < n; i++) {
        if (i >= len || s[i] < lo || s[i] > hi) {
            *bad = i;
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    return n;
}

size_t utf8_sanitize(char *out, size_t cap, const char *in, size_t len)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0, o = 0;
    while (i < len) {
        size_t bad, n = utf8_seq(s + i, len - i, &bad);
        const char *src = n ? in + i : utf8_replacement;
        size_t m = n ? n : sizeof(utf8_replacement) - 1;
        if (o + m + 1 > cap)
            break;
        memcpy(out + o, src, m);
        o += m;
        i += n ? n : bad;
    }
    out[o] = '\0';
    return o;
}

int utf8_valid(const char *s, size_t len)
{
    size_t i = 0, bad;
    while (i < len) {
        size_t n = utf8_seq((const unsigned char *)s + i, len - i, &bad);
        if (!n)
            return 0;
        i += n;
    }
    return 1;
}
