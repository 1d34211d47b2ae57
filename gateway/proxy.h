/* proxy: the request handler of both listeners: redirects, built-in endpoints (/health,
 * /docs, ACME), routing by longest prefix over the normalized path, rate limiting, and the
 * streaming proxy to a round-robin upstream instance with retries. */
#ifndef GW_PROXY_H
#define GW_PROXY_H

#include <stddef.h>

#include "gateway.h"

/* The http_server handler; ud is the gw_worker. */
void gw_proxy_handle(http_req *req, void *ud);

/* Normalizes a request path: repeated slashes merged, "." and ".." segments (also percent-
 * encoded) resolved; "%2F" is never decoded. Returns 0, or -1 when it escapes the root or is
 * not a path (400). */
int gw_path_normalize(const char *raw, char *out, size_t cap);
/* The route with the longest prefix matching path, or NULL. */
const gw_route_conf *gw_route_match(const gw_config *c, const char *path);
/* 1 for the paths never routed: /internal/, /livez, /metrics. */
int gw_path_blocked(const char *path);

#endif
