/* fuzz_multipart: libFuzzer target for svc-storage's streaming multipart parser. The first
 * bytes choose the boundary's length and a seed for the split points; the rest is the body,
 * fed in random pieces. The same body fed whole must give the same parts, data and verdict:
 * a split never changes what the parser sees. Also runs mp_boundary on the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "multipart.h"

static int fz_part(void *ud, const mp_part *p)
{
    buf *b = ud;
    buf_printf(b, "<%s|%d|%s|%s>", p->name, p->has_filename, p->filename, p->content_type);
    return 0;
}

static int fz_data(void *ud, const char *d, size_t n)
{
    buf_append(ud, d, n);
    return 0;
}

static int fz_end(void *ud)
{
    buf_puts(ud, "</>");
    return 0;
}

static const mp_callbacks fz_cb = {fz_part, fz_data, fz_end};

static int fz_run(const char *boundary, const uint8_t *body, size_t len, uint32_t seed, buf *out)
{
    mp_parser *p = mp_new(boundary, &fz_cb, out);
    size_t pos = 0;
    int rc = 0;
    while (pos < len && rc == 0) {
        size_t n = len - pos;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
            n = 1 + (seed >> 16) % (n < 64 ? n : 64);
        }
        rc = mp_feed(p, (const char *)body + pos, n);
        pos += n;
    }
    if (rc == 0)
        rc = mp_finish(p);
    mp_free(p);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    static const char boundary_chars[] = "AaB03x-_'()+,./:=?";
    char boundary[8];
    size_t blen = 1 + data[0] % 7;
    for (size_t i = 0; i < blen; i++)
        boundary[i] = boundary_chars[i % (sizeof boundary_chars - 1)];
    boundary[blen] = '\0';
    uint32_t seed = (uint32_t)data[1] << 8 | data[2] | 1;
    buf whole = {0}, split = {0};
    int rw = fz_run(boundary, data + 3, size - 3, 0, &whole);
    int rs = fz_run(boundary, data + 3, size - 3, seed, &split);
    /* an error may stop the split run at another piece, but never change a success */
    if (rw != rs ||
        (rw == 0 && (whole.len != split.len || (whole.len && memcmp(whole.p, split.p, whole.len)))))
        abort();
    buf_free(&whole);
    buf_free(&split);
    char *ct = malloc(size - 2);
    memcpy(ct, data + 3, size - 3);
    ct[size - 3] = '\0';
    char b[MP_MAX_BOUNDARY + 1];
    if (mp_boundary(ct, b, sizeof b) == 1 && (strlen(b) < 1 || strlen(b) > MP_MAX_BOUNDARY))
        abort();
    free(ct);
    return 0;
}
