/* route: the gateway's request handler: normalizes the path, lets builtin.c answer its
 * endpoints, picks the route by longest prefix, applies the route's rate and body limits, and
 * hands the request to proxy.c. */
#ifndef GW_ROUTE_H
#define GW_ROUTE_H

#include <stddef.h>

#include "gateway.h"

/* The http_server handler of both listeners; ud is the gw_worker. */
void gw_route_handle(http_req *req, void *ud);

/* Normalizes a request path: repeated slashes merged, "." and ".." segments (also percent-
 * encoded) resolved; "%2F" is never decoded. Returns 0, or -1 when it escapes the root or is
 * not a path (400). */
int gw_path_normalize(const char *raw, char *out, size_t cap);
/* The route with the longest prefix matching path, or NULL. */
const gw_route_conf *gw_route_match(const gw_config *c, const char *path);

#endif
