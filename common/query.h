/* query: percent-decoding and query-string parameters (RFC 3986; '+' is a space in
 * application/x-www-form-urlencoded query strings only). */
#ifndef COMMON_QUERY_H
#define COMMON_QUERY_H

#include <stddef.h>

/* Decodes [s, s+n) into out (cap bytes, NUL-terminated). Returns the decoded length, or -1
 * when a %-escape is malformed, a NUL would be decoded, or it does not fit. */
long query_unescape(const char *s, size_t n, char *out, size_t cap, int plus_is_space);

/* The decoded value of the first name=value in query (without the '?'). Returns 1 when
 * present, 0 when absent, -1 when malformed, not UTF-8 or longer than cap - 1. */
int query_param(const char *query, const char *name, char *out, size_t cap);

#endif
