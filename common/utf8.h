/* utf8: client-supplied bytes (header values) made valid UTF-8 before they are stored in
 * PostgreSQL or written to a log line. */
#ifndef COMMON_UTF8_H
#define COMMON_UTF8_H

#include <stddef.h>

/* Copies in[0..len) into out as valid UTF-8 without NUL and returns the bytes written (out
 * is always NUL-terminated; cap >= 1). Each maximal ill-formed subsequence (a stray byte, an
 * overlong form, a surrogate, a code point above U+10FFFF, a sequence cut short) and each NUL
 * becomes U+FFFD, as the Unicode standard recommends. Stops before the first character that
 * would not fit in cap - 1 bytes: a truncation never splits a character. */
size_t utf8_sanitize(char *out, size_t cap, const char *in, size_t len);

/* Nonzero when s[0..len) is well-formed UTF-8 without NUL. */
int utf8_valid(const char *s, size_t len);

#endif
