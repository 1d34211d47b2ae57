/* query: percent-decoding and query-string parameters (see query.h). */
#include "query.h"

#include <string.h>

#include "crypto.h"
#include "utf8.h"

long query_unescape(const char *s, size_t n, char *out, size_t cap, int plus_is_space)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '+' && plus_is_space) {
            ch = ' ';
        } else if (ch == '%') {
            if (i + 2 >= n)
                return -1;
            int h = crypto_hex_value((unsigned char)s[i + 1]);
            int l = crypto_hex_value((unsigned char)s[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            ch = (char)(h * 16 + l);
            i += 2;
        }
        if (ch == '\0' || o + 1 >= cap)
            return -1;
        out[o++] = ch;
    }
    if (cap == 0)
        return -1;
    out[o] = '\0';
    return (long)o;
}

int query_param(const char *query, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = query;
    while (*p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            long n = query_unescape(p + nl + 1, len - nl - 1, out, cap, 1);
            return n < 0 || !utf8_valid(out, (size_t)n) ? -1 : 1;
        }
        if (len == nl && strncmp(p, name, nl) == 0)
            return cap > 0 ? (out[0] = '\0', 1) : -1;
        if (!end)
            break;
        p = end + 1;
    }
    return 0;
}
