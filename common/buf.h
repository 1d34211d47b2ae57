/* buf: a growable byte buffer, the one string builder of the suite (Redis's sds, lwan's
 * strbuf). The bytes are always followed by a NUL once anything was added, so a buffer of
 * text can be used as a C string. Out of memory aborts (as the rest of common/).
 *
 * A zeroed buf is empty and valid: `buf b = {0};`. buf_free() returns it to that state;
 * buf_steal() hands the bytes to the caller. */
#ifndef COMMON_BUF_H
#define COMMON_BUF_H

#include <stddef.h>

typedef struct buf {
    char *p;    /* NULL until the first byte (or buf_reserve) */
    size_t len; /* bytes used, the NUL not counted */
    size_t cap; /* bytes allocated */
} buf;

/* Makes room for n more bytes and their NUL. */
void buf_reserve(buf *b, size_t n);
void buf_append(buf *b, const void *data, size_t n);
void buf_puts(buf *b, const char *s);
void buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the bytes from len on (len <= b->len). */
void buf_truncate(buf *b, size_t len);
/* The bytes as a string: "" when empty, never NULL. */
const char *buf_str(const buf *b);
/* The bytes, now the caller's (free()); NULL when empty. The buffer is empty after. */
char *buf_steal(buf *b);
void buf_free(buf *b);

#endif
