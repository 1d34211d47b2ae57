/* headers: what the gateway adds to and removes from headers: hop-by-hop headers, the security
 * headers of every https response, the forwarding headers of every proxied request. */
#ifndef GW_HEADERS_H
#define GW_HEADERS_H

#include <stddef.h>

#include "http_server.h"

/* 1 for the hop-by-hop headers of RFC 9110 (and the ones the server frames itself), or a
 * header named in the Connection header's value conn (may be NULL). */
int gw_headers_hop(const char *name, const char *conn);
/* 1 for the response headers the gateway sets itself on https (the security headers). */
int gw_headers_security_name(const char *name);
/* Adds Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options,
 * Content-Security-Policy (csp), Referrer-Policy. */
void gw_headers_security(http_req *req, const char *csp);

/* The client's address: the TCP peer, unless the peer is a trusted proxy; then the rightmost
 * address of X-Forwarded-For (all its lines, one list, however long) that is not itself
 * trusted, or the peer when the entry there is not an address. Writes it to out. */
struct gw_config;
void gw_headers_client_ip(const struct gw_config *c, http_req *req, char *out, size_t cap);

#endif
