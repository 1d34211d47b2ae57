/* docname: sanitized file names, Content-Disposition and Range (see docname.h). */
#include "docname.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

/* Bytes of the UTF-8 character starting with lead byte c (input already valid UTF-8). */
static size_t docname_char_len(unsigned char c)
{
    return c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
}

/* 1 when the character at s (n bytes) is dropped from a name. */
static int docname_drop(const unsigned char *s, size_t n)
{
    if (n == 1)
        return s[0] < 0x20 || s[0] == 0x7f || s[0] == '"' || s[0] == '\'' || s[0] == '/' ||
               s[0] == '\\';
    if (n == 2 && s[0] == 0xc2 && s[1] < 0xa0) /* C1 controls U+0080..U+009F */
        return 1;
    return 0;
}

static int docname_trimmed(unsigned char c)
{
    return c == ' ' || c == '.';
}

void docname_sanitize(const char *in, size_t len, char *out, size_t cap)
{
    size_t start = 0;
    for (size_t i = 0; i < len; i++)
        if (in[i] == '/' || in[i] == '\\')
            start = i + 1;
    size_t vcap = 4 * (len - start) + 1;
    char *valid = malloc(vcap);
    if (!valid)
        abort();
    size_t vlen = utf8_sanitize(valid, vcap, in + start, len - start);
    size_t o = 0;
    for (size_t i = 0; i < vlen;) {
        size_t n = docname_char_len((unsigned char)valid[i]);
        if (!docname_drop((const unsigned char *)valid + i, n)) {
            if (o + n > DOCNAME_MAX || o + n >= cap)
                break;
            memcpy(out + o, valid + i, n);
            o += n;
        }
        i += n;
    }
    free(valid);
    size_t b = 0;
    while (b < o && docname_trimmed((unsigned char)out[b]))
        b++;
    while (o > b && docname_trimmed((unsigned char)out[o - 1]))
        o--;
    memmove(out, out + b, o - b);
    o -= b;
    if (o == 0) {
        snprintf(out, cap, "document");
        return;
    }
    out[o] = '\0';
}

static int docname_attr_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("!#$&+-.^_`|~", c) != NULL;
}

void docname_disposition(const char *name, char *out, size_t cap)
{
    size_t o = (size_t)snprintf(out, cap, "attachment; filename=\"");
    const unsigned char *s = (const unsigned char *)name;
    for (size_t i = 0; s[i] && o + 2 < cap;) {
        size_t n = docname_char_len(s[i]);
        int plain =
            n == 1 && s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\' && s[i] != '%';
        out[o++] = plain ? (char)s[i] : '_';
        i += n;
    }
    o += (size_t)snprintf(out + o, cap > o ? cap - o : 0, "\"; filename*=UTF-8''");
    for (size_t i = 0; s[i] && o + 4 < cap; i++) {
        if (docname_attr_char(s[i]))
            out[o++] = (char)s[i];
        else
            o += (size_t)snprintf(out + o, cap - o, "%%%02X", s[i]);
    }
    out[o < cap ? o : cap - 1] = '\0';
}

/* Parses decimal digits at *p (at most 18 of them) into *v: 0, or -1 when there are none. */
static int docname_num(const char **p, int64_t *v)
{
    const char *s = *p;
    int64_t n = 0;
    size_t d = 0;
    while (*s >= '0' && *s <= '9') {
        if (++d > 18)
            return -1;
        n = n * 10 + (*s++ - '0');
    }
    if (d == 0)
        return -1;
    *p = s;
    *v = n;
    return 0;
}

int docname_range(const char *h, int64_t size, int64_t *start, int64_t *end)
{
    if (!h || strncmp(h, "bytes=", 6) != 0)
        return 0;
    const char *p = h + 6;
    while (*p == ' ')
        p++;
    int64_t a = -1, b = -1;
    if (*p == '-') {
        p++;
        if (docname_num(&p, &b) != 0)
            return 0;
    } else {
        if (docname_num(&p, &a) != 0 || *p++ != '-')
            return 0;
        if (*p >= '0' && *p <= '9' && docname_num(&p, &b) != 0)
            return 0;
    }
    while (*p == ' ')
        p++;
    if (*p != '\0') /* another range (a comma) or garbage: served whole */
        return 0;
    if (a < 0) { /* suffix: the last b bytes */
        if (b == 0 || size == 0)
            return -1;
        *start = b >= size ? 0 : size - b;
        *end = size - 1;
        return 1;
    }
    if (b >= 0 && b < a)
        return 0; /* invalid: ignored */
    if (a >= size)
        return -1;
    *start = a;
    *end = (b < 0 || b >= size) ? size - 1 : b;
    return 1;
}
