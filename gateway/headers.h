/* headers: what the gateway adds to headers: the security headers of every https response and
 * the client's address for the forwarding headers (which names are dropped or replaced is
 * common/http_headers.c's table). */
#ifndef GW_HEADERS_H
#define GW_HEADERS_H

#include <stddef.h>

#include "http_server.h"

/* Adds Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options,
 * Content-Security-Policy (csp), Referrer-Policy. */
void gw_headers_security(http_req *req, const char *csp);

/* The client's address: the TCP peer, unless the peer is a trusted proxy; then the rightmost
 * address of X-Forwarded-For (all its lines, one list, however long) that is not itself
 * trusted, or the peer when the entry there is not an address. Writes it to out. */
struct gw_config;
void gw_headers_client_ip(const struct gw_config *c, http_req *req, char *out, size_t cap);

/* Copies the string s to out (cap > 0 bytes), cut to fit, always terminated. */
void gw_copy_text(char *out, size_t cap, const char *s);

#endif
