/* proxy: the streaming proxy of one routed request to an instance of its upstream (picked,
 * reported and retried by common/upstream.c), bodies streamed both ways with back-pressure. */
#ifndef GW_PROXY_H
#define GW_PROXY_H

#include "builtin.h"

/* Proxies a->req on route (a->path normalized); the reply is the upstream's, or an error. */
void gw_proxy_start(const gw_answer *a, const gw_route_conf *route);

#endif
