/* access_log: one JSON line per request (through common/log), with the upstream address,
 * status and timings. Never a header value, a query string, a token or a cookie. */
#ifndef GW_ACCESS_LOG_H
#define GW_ACCESS_LOG_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw_access {
    const char *request_id;
    const char *client_ip;
    const char *method;
    const char *path;     /* normalized, without the query */
    const char *route;    /* route prefix or the built-in name, may be NULL */
    const char *upstream; /* "127.0.0.1:3001" or NULL */
    int status;
    int tls;
    int tries; /* upstream attempts */
    int64_t bytes_in, bytes_out;
    int64_t total_us;    /* request start to response end, in microseconds */
    int64_t upstream_us; /* upstream request start to its response head, -1: none */
} gw_access;

void gw_access_log(const gw_access *a);

#endif
