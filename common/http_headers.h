/* http_headers: the one table of header names a proxy or a client treats specially, each with
 * its flags (as h2o's token table): hop-by-hop, framing, replaced by the gateway, forwarding,
 * security. The gateway's request and response filters and the HTTP client's head builder all
 * ask this table instead of keeping lists of their own. */
#ifndef COMMON_HTTP_HEADERS_H
#define COMMON_HTTP_HEADERS_H

enum {
    HTTP_HDR_HOP = 1,        /* hop-by-hop (RFC 9110 §7.6.1): never forwarded */
    HTTP_HDR_FRAMING = 2,    /* Content-Length, Transfer-Encoding: the sender frames itself */
    HTTP_HDR_REPLACED = 4,   /* Host, Date, X-Request-ID, Expect: set by whoever sends */
    HTTP_HDR_FORWARDING = 8, /* X-Forwarded-*, X-Real-IP, Forwarded: the gateway writes its own */
    HTTP_HDR_SECURITY = 16,  /* the security headers the gateway sets on https responses */
};

/* What a proxy drops from a message in either direction (it writes its own where needed). */
#define HTTP_HDR_NOT_FORWARDED (HTTP_HDR_HOP | HTTP_HDR_FRAMING | HTTP_HDR_REPLACED)

/* The flags of the header called name (case-insensitive); 0 for any other name. */
unsigned http_headers_flags(const char *name);
/* 1 when the comma-separated list (a Connection value, may be NULL) holds token
 * (case-insensitive, blanks around items ignored). */
int http_headers_list_has(const char *list, const char *token);
/* 1 when a proxy must not forward the header name: its flags include one of HTTP_HDR_NOT_FORWARDED
 * or the message's Connection value conn (may be NULL) names it. */
int http_headers_hop(const char *name, const char *conn);

#endif
