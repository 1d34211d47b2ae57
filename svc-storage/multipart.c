/* multipart: the incremental multipart/form-data parser (see multipart.h).
 *
 * The body part data ends at the delimiter CRLF "--" boundary. The delimiter's only CR is its
 * first byte (boundary characters exclude CR), so a partial match that fails can never hide
 * the start of another match: the bytes held back are the delimiter's own prefix, given back
 * as data, and the failing byte is looked at again from the start. */
#include "multipart.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xalloc.h"

typedef enum {
    MP_FIRST,     /* matching "--boundary" at the very start */
    MP_AFTER,     /* after a delimiter: "--" (close) or padding then CRLF */
    MP_CLOSE,     /* saw the first '-' of the close delimiter */
    MP_PAD,       /* transport padding (blanks) before CRLF */
    MP_PAD_LF,    /* saw CR after a delimiter */
    MP_HEADER,    /* a header line */
    MP_HEADER_LF, /* saw CR in a header line */
    MP_BODY,      /* part data, searching the delimiter */
    MP_DONE,      /* after the close delimiter: epilogue ignored */
    MP_ERROR,
} mp_state;

struct mp_parser {
    mp_state state;
    mp_callbacks cb;
    void *ud;
    char delim[MP_MAX_BOUNDARY + 5]; /* "\r\n--" boundary */
    size_t dlen;
    size_t matched; /* bytes of delim matched (MP_FIRST: of delim + 2) */
    char line[MP_MAX_HEADER_LINE + 1];
    size_t linelen;
    size_t header_bytes, headers, parts;
    int has_disposition;
    mp_part part;
    char error[128];
};

static int mp_bchar(unsigned char c)
{
    return isalnum(c) || strchr("'()+_,-./:=? ", c) != NULL;
}

int mp_boundary(const char *ct, char *out, size_t cap)
{
    static const char type[] = "multipart/form-data";
    if (!ct || strncasecmp(ct, type, sizeof type - 1) != 0)
        return 0;
    const char *p = ct + sizeof type - 1;
    if (*p != '\0' && *p != ';' && *p != ' ' && *p != '\t')
        return 0;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ';')
            p++;
        if (!*p)
            return -1;
        const char *name = p;
        while (*p && *p != '=' && *p != ';')
            p++;
        size_t nlen = (size_t)(p - name);
        if (*p != '=')
            return -1;
        p++;
        char val[MP_MAX_BOUNDARY + 2];
        size_t vlen = 0;
        if (*p == '"') {
            p++;
            while (*p && *p != '"') {
                if (vlen > MP_MAX_BOUNDARY)
                    return -1;
                val[vlen++] = *p++;
            }
            if (*p++ != '"')
                return -1;
        } else {
            while (*p && *p != ';' && *p != ' ' && *p != '\t') {
                if (vlen > MP_MAX_BOUNDARY)
                    return -1;
                val[vlen++] = *p++;
            }
        }
        if (nlen == 8 && strncasecmp(name, "boundary", 8) == 0) {
            if (vlen < 1 || vlen > MP_MAX_BOUNDARY || vlen + 1 > cap || val[vlen - 1] == ' ')
                return -1;
            for (size_t i = 0; i < vlen; i++)
                if (!mp_bchar((unsigned char)val[i]))
                    return -1;
            memcpy(out, val, vlen);
            out[vlen] = '\0';
            return 1;
        }
    }
}

mp_parser *mp_new(const char *boundary, const mp_callbacks *cb, void *ud)
{
    mp_parser *p = xcalloc(1, sizeof *p);
    p->cb = *cb;
    p->ud = ud;
    p->dlen = (size_t)snprintf(p->delim, sizeof p->delim, "\r\n--%.*s", MP_MAX_BOUNDARY, boundary);
    p->state = MP_FIRST;
    return p;
}

void mp_free(mp_parser *p)
{
    free(p);
}

const char *mp_error(const mp_parser *p)
{
    return p->error[0] ? p->error : "malformed multipart body";
}

static int mp_fail(mp_parser *p, const char *msg)
{
    snprintf(p->error, sizeof p->error, "%s", msg);
    p->state = MP_ERROR;
    return -1;
}

/* ---- part headers ---- */

/* Reads a token or quoted-string parameter value at *s into out (cap); 0 or -1. */
static int mp_param_value(const char **s, char *out, size_t cap)
{
    const char *p = *s;
    size_t n = 0;
    if (*p == '"') {
        p++;
        while (*p && *p != '"') {
            if (*p == '\\' && p[1])
                p++;
            if (n + 1 >= cap)
                return -1;
            out[n++] = *p++;
        }
        if (*p != '"')
            return -1;
        p++;
    } else {
        while (*p && *p != ';' && *p != ' ' && *p != '\t') {
            if (n + 1 >= cap)
                return -1;
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
    *s = p;
    return 0;
}

/* RFC 8187 ext-value "UTF-8''pct-encoded" into out; 0 or -1. */
static int mp_ext_value(const char *v, char *out, size_t cap)
{
    if (strncasecmp(v, "UTF-8'", 6) != 0)
        return -1;
    const char *p = strchr(v + 6, '\'');
    if (!p)
        return -1;
    size_t n = 0;
    for (p++; *p; p++) {
        int c = (unsigned char)*p;
        if (c == '%') {
            if (!isxdigit((unsigned char)p[1]) || !isxdigit((unsigned char)p[2]))
                return -1;
            char hex[3] = {p[1], p[2], 0};
            c = (int)strtol(hex, NULL, 16);
            p += 2;
        }
        if (c == 0 || n + 1 >= cap)
            return -1;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return 0;
}

static int mp_disposition(mp_parser *p, const char *v)
{
    if (p->has_disposition)
        return mp_fail(p, "a part has two Content-Disposition headers");
    p->has_disposition = 1;
    if (strncasecmp(v, "form-data", 9) != 0 || (v[9] && v[9] != ';' && v[9] != ' '))
        return mp_fail(p, "a part's Content-Disposition is not form-data");
    const char *s = v + 9;
    int has_name = 0, has_ext = 0;
    for (;;) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            break;
        if (*s++ != ';')
            return mp_fail(p, "malformed Content-Disposition parameters");
        while (*s == ' ' || *s == '\t')
            s++;
        const char *name = s;
        while (*s && *s != '=' && *s != ';' && *s != ' ')
            s++;
        size_t nlen = (size_t)(s - name);
        if (*s++ != '=')
            return mp_fail(p, "malformed Content-Disposition parameters");
        char val[MP_MAX_FILENAME * 3 + 1];
        if (mp_param_value(&s, val, sizeof val) != 0)
            return mp_fail(p, "a Content-Disposition parameter is malformed or too long");
        if (nlen == 4 && strncasecmp(name, "name", 4) == 0) {
            if (has_name || strlen(val) > MP_MAX_NAME)
                return mp_fail(p, "a part's name is repeated or too long");
            snprintf(p->part.name, sizeof p->part.name, "%s", val);
            has_name = 1;
        } else if (nlen == 8 && strncasecmp(name, "filename", 8) == 0) {
            if (p->part.has_filename && !has_ext)
                return mp_fail(p, "a part's filename is repeated");
            if (!has_ext) {
                if (strlen(val) > MP_MAX_FILENAME)
                    return mp_fail(p, "a part's filename is too long");
                snprintf(p->part.filename, sizeof p->part.filename, "%s", val);
            }
            p->part.has_filename = 1;
        } else if (nlen == 9 && strncasecmp(name, "filename*", 9) == 0) {
            if (has_ext || mp_ext_value(val, p->part.filename, sizeof p->part.filename) != 0)
                return mp_fail(p, "a part's filename* is repeated or malformed");
            has_ext = 1;
            p->part.has_filename = 1;
        }
    }
    if (!has_name)
        return mp_fail(p, "a part's Content-Disposition has no name");
    return 0;
}

static int mp_header_line(mp_parser *p)
{
    char *l = p->line;
    l[p->linelen] = '\0';
    char *colon = strchr(l, ':');
    if (!colon || colon == l)
        return mp_fail(p, "a part header line is malformed");
    for (char *c = l; c < colon; c++)
        if (!isalnum((unsigned char)*c) && !strchr("!#$%&'*+-.^_`|~", *c))
            return mp_fail(p, "a part header name is malformed");
    *colon = '\0';
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t vl = strlen(v);
    while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        v[--vl] = '\0';
    for (size_t i = 0; i < vl; i++)
        if (((unsigned char)v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f)
            return mp_fail(p, "a part header value holds a control character");
    if (strcasecmp(l, "Content-Disposition") == 0)
        return mp_disposition(p, v);
    if (strcasecmp(l, "Content-Type") == 0) {
        if (vl >= sizeof p->part.content_type)
            return mp_fail(p, "a part's Content-Type is too long");
        memcpy(p->part.content_type, v, vl + 1);
    }
    return 0;
}

/* The empty line: the headers are complete. */
static int mp_headers_end(mp_parser *p)
{
    if (!p->has_disposition)
        return mp_fail(p, "a part has no Content-Disposition");
    if (p->cb.on_part && p->cb.on_part(p->ud, &p->part) != 0)
        return mp_fail(p, "stopped");
    p->state = MP_BODY;
    p->matched = 0;
    return 0;
}

static void mp_part_start(mp_parser *p)
{
    memset(&p->part, 0, sizeof p->part);
    p->has_disposition = 0;
    p->header_bytes = p->headers = p->linelen = 0;
    p->state = MP_HEADER;
}

/* ---- the body ---- */

static int mp_data(mp_parser *p, const char *d, size_t n)
{
    if (n && p->cb.on_data && p->cb.on_data(p->ud, d, n) != 0)
        return mp_fail(p, "stopped");
    return 0;
}

/* Part data in d[0..n): returns the bytes consumed (up to the end of a delimiter), -1 error. */
static long mp_body(mp_parser *p, const char *d, size_t n)
{
    size_t run = 0; /* start of the data not yet given to on_data */
    for (size_t i = 0; i < n; i++) {
        if (d[i] == p->delim[p->matched]) {
            if (p->matched == 0 && mp_data(p, d + run, i - run) != 0)
                return -1;
            if (++p->matched == p->dlen) {
                p->matched = 0;
                if (p->cb.on_part_end && p->cb.on_part_end(p->ud) != 0)
                    return mp_fail(p, "stopped");
                p->state = MP_AFTER;
                return (long)i + 1;
            }
            run = i + 1;
            continue;
        }
        if (p->matched > 0) { /* the held-back prefix was data after all */
            size_t held = p->matched;
            p->matched = 0;
            if (mp_data(p, p->delim, held) != 0)
                return -1;
            run = i;
            if (d[i] == p->delim[0]) {
                p->matched = 1;
                run = i + 1;
            }
        }
    }
    if (p->matched == 0 && mp_data(p, d + run, n - run) != 0)
        return -1;
    return (long)n;
}

int mp_feed(mp_parser *p, const char *d, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)d[i];
        switch (p->state) {
        case MP_ERROR: return -1;
        case MP_DONE: return 0;
        case MP_FIRST:
            if (c != (unsigned char)p->delim[2 + p->matched])
                return mp_fail(p, "the body does not start with the boundary");
            i++;
            if (++p->matched == p->dlen - 2) {
                p->matched = 0;
                p->state = MP_AFTER;
            }
            break;
        case MP_AFTER:
            i++;
            if (c == '-')
                p->state = MP_CLOSE;
            else if (c == '\r')
                p->state = MP_PAD_LF;
            else if (c == ' ' || c == '\t')
                p->state = MP_PAD;
            else
                return mp_fail(p, "a boundary is followed by garbage");
            break;
        case MP_CLOSE:
            i++;
            if (c != '-')
                return mp_fail(p, "a boundary is followed by garbage");
            p->state = MP_DONE;
            return 0;
        case MP_PAD:
            i++;
            if (c == '\r')
                p->state = MP_PAD_LF;
            else if (c != ' ' && c != '\t')
                return mp_fail(p, "a boundary is followed by garbage");
            break;
        case MP_PAD_LF:
            i++;
            if (c != '\n')
                return mp_fail(p, "a boundary line does not end in CRLF");
            if (++p->parts > MP_MAX_PARTS)
                return mp_fail(p, "too many parts");
            mp_part_start(p);
            break;
        case MP_HEADER:
            i++;
            if (++p->header_bytes > MP_MAX_HEADER_BYTES)
                return mp_fail(p, "a part's headers are too large");
            if (c == '\r') {
                p->state = MP_HEADER_LF;
            } else if (c == '\n' || c == '\0') {
                return mp_fail(p, "a part header line does not end in CRLF");
            } else {
                if (p->linelen >= MP_MAX_HEADER_LINE)
                    return mp_fail(p, "a part header line is too long");
                p->line[p->linelen++] = (char)c;
            }
            break;
        case MP_HEADER_LF:
            i++;
            if (c != '\n')
                return mp_fail(p, "a part header line does not end in CRLF");
            if (p->linelen == 0) {
                if (mp_headers_end(p) != 0)
                    return -1;
                break;
            }
            if (++p->headers > MP_MAX_HEADERS)
                return mp_fail(p, "a part has too many headers");
            if (mp_header_line(p) != 0)
                return -1;
            p->linelen = 0;
            p->state = MP_HEADER;
            break;
        case MP_BODY: {
            long used = mp_body(p, d + i, n - i);
            if (used < 0)
                return -1;
            i += (size_t)used;
            break;
        }
        }
    }
    return p->state == MP_ERROR ? -1 : 0;
}

int mp_finish(mp_parser *p)
{
    if (p->state == MP_DONE)
        return 0;
    if (p->state != MP_ERROR)
        mp_fail(p, "the body ends before the closing boundary");
    return -1;
}
