/* cookie: the one Cookie header parser (see cookie.h). A pair is split at its first '=';
 * spaces and tabs around the name and the value are not part of them. */
#include "cookie.h"

#include <string.h>
#include <strings.h>

static int cookie_space(char c)
{
    return c == ' ' || c == '\t';
}

long cookie_find(const char *header, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = header;
    while (*p) {
        const char *end = p + strcspn(p, ";");
        while (p < end && cookie_space(*p))
            p++;
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (eq) {
            const char *ne = eq, *v = eq + 1, *ve = end;
            while (ne > p && cookie_space(ne[-1]))
                ne--;
            while (v < ve && cookie_space(*v))
                v++;
            while (ve > v && cookie_space(ve[-1]))
                ve--;
            if ((size_t)(ne - p) == nl && memcmp(p, name, nl) == 0) {
                size_t vl = (size_t)(ve - v);
                if (vl + 1 > cap)
                    return COOKIE_TOO_LONG;
                memcpy(out, v, vl);
                out[vl] = '\0';
                return (long)vl;
            }
        }
        p = *end ? end + 1 : end;
    }
    return COOKIE_ABSENT;
}

long cookie_get(const http_req *req, const char *name, char *out, size_t cap)
{
    for (size_t i = 0; i < http_req_header_count(req); i++) {
        const char *hn, *hv;
        http_req_header_at(req, i, &hn, &hv);
        if (strcasecmp(hn, "Cookie") != 0)
            continue;
        long n = cookie_find(hv, name, out, cap);
        if (n != COOKIE_ABSENT)
            return n;
    }
    return COOKIE_ABSENT;
}
