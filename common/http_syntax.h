/* http_syntax: the character rules of HTTP/1.1 messages (RFC 9110, RFC 9112, RFC 3986) that
 * the server and the client check on what they receive: field names are tokens, field values
 * carry no control character but HTAB, the request-target is visible ASCII, Host is an
 * authority without userinfo. Pure functions over (pointer, length): a NUL byte is just an
 * invalid character. */
#ifndef COMMON_HTTP_SYNTAX_H
#define COMMON_HTTP_SYNTAX_H

#include <stddef.h>

/* Bytes of chunk extensions accepted on one chunk (as Node.js): more is an attack, not HTTP. */
#define HTTP_CHUNK_EXT_MAX 16384

/* 1 for a tchar of RFC 9110 §5.6.2. */
int http_syntax_tchar(unsigned char ch);
/* 1 when [s, s+n) is a token (1*tchar): a field name, a method. */
int http_syntax_token(const char *s, size_t n);
/* 1 when [s, s+n) may be (part of) a field value: VCHAR, SP, HTAB, obs-text (0x80-0xFF); no
 * NUL, CR, LF, DEL or other control character. */
int http_syntax_field_value(const char *s, size_t n);
/* 1 when [s, s+n) may be (part of) a request-target: visible ASCII (0x21-0x7E) only. */
int http_syntax_target(const char *s, size_t n);
/* 1 when [s, s+n) is a Host field value (RFC 9112 §3.2): uri-host [":" port], uri-host being
 * a reg-name (IPv4 included), or an IPv6 address in brackets; port at most 65535. Empty is
 * valid (a target without authority). */
int http_syntax_host(const char *s, size_t n);

#endif
