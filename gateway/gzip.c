/* gzip: streaming deflate with the gzip wrapper over zlib (see gzip.h). */
#include "gzip.h"
#include "xalloc.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

struct gw_gzip {
    z_stream zs;
};

gw_gzip *gw_gzip_new(int level)
{
    gw_gzip *z = xcalloc(1, sizeof *z);
    /* windowBits 15 + 16: gzip wrapper; memLevel 8. */
    if (deflateInit2(&z->zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(z);
        return NULL;
    }
    return z;
}

void gw_gzip_free(gw_gzip *z)
{
    if (!z)
        return;
    deflateEnd(&z->zs);
    free(z);
}

int gw_gzip_push(gw_gzip *z, const void *in, size_t len, int finish, char **out, size_t *outlen)
{
    size_t cap = deflateBound(&z->zs, (uLong)len) + 64, n = 0;
    char *buf = xmalloc(cap);
    z->zs.next_in = (Bytef *)(uintptr_t)in;
    z->zs.avail_in = (uInt)len;
    int flush = finish ? Z_FINISH : Z_NO_FLUSH;
    for (;;) {
        z->zs.next_out = (Bytef *)buf + n;
        z->zs.avail_out = (uInt)(cap - n);
        int rc = deflate(&z->zs, flush);
        n = cap - z->zs.avail_out;
        if (rc == Z_STREAM_ERROR) {
            free(buf);
            return -1;
        }
        if (finish ? rc == Z_STREAM_END : (z->zs.avail_in == 0 && z->zs.avail_out > 0))
            break;
        if (z->zs.avail_out == 0) {
            char *b = xrealloc(buf, cap * 2);
            if (!b) {
                free(buf);
                return -1;
            }
            buf = b;
            cap *= 2;
        }
    }
    if (n == 0) {
        free(buf);
        buf = NULL;
    }
    *out = buf;
    *outlen = n;
    return 0;
}

int gw_gzip_buffer(const void *in, size_t len, char **out, size_t *outlen)
{
    gw_gzip *z = gw_gzip_new(6);
    if (!z)
        return -1;
    int rc = gw_gzip_push(z, in, len, 1, out, outlen);
    gw_gzip_free(z);
    return rc;
}

/* The q value of a coding's parameters ("; q=0.5"), 1 when absent. */
static double coding_q(const char *p, const char *end)
{
    while (p < end) {
        while (p < end && (*p == ';' || *p == ' ' || *p == '\t'))
            p++;
        if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=')
            return strtod(p + 2, NULL);
        while (p < end && *p != ';')
            p++;
    }
    return 1.0;
}

int gw_gzip_accepted(const char *ae)
{
    if (!ae)
        return 0;
    int gzip = -1, star = -1;
    const char *p = ae;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *tok = p;
        while (*p && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
            p++;
        size_t toklen = (size_t)(p - tok);
        const char *params = p;
        while (*p && *p != ',')
            p++;
        if (toklen == 0)
            continue;
        int ok = coding_q(params, p) > 0.0;
        if (toklen == 4 && strncasecmp(tok, "gzip", 4) == 0)
            gzip = ok;
        else if (toklen == 1 && *tok == '*')
            star = ok;
    }
    if (gzip >= 0)
        return gzip;
    return star > 0;
}

int gw_gzip_type_ok(const char *ct)
{
    if (!ct)
        return 0;
    static const char *types[] = {
        "application/json",
        "application/problem+json",
        "application/javascript",
        "application/x-javascript",
        "application/xml",
        "application/yaml",
        "application/x-yaml",
        "image/svg+xml",
        "text/",
        NULL,
    };
    while (*ct == ' ')
        ct++;
    for (int i = 0; types[i]; i++) {
        size_t n = strlen(types[i]);
        if (strncasecmp(ct, types[i], n) == 0) {
            char next = ct[n];
            if (types[i][n - 1] == '/' || next == '\0' || next == ';' || next == ' ')
                return 1;
        }
    }
    return 0;
}
