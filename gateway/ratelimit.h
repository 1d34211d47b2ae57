/* ratelimit: per-client-address request limiting shared by every worker, a leaky bucket as
 * nginx limit_req with burst and nodelay: a request is admitted while the bucket holds at most
 * `burst` requests above the steady rate, else refused with the seconds to wait. */
#ifndef GW_RATELIMIT_H
#define GW_RATELIMIT_H

#include "shm.h"

/* route: the route's index (each route has its own buckets); rate per second; burst.
 * Returns 0 when admitted, else the Retry-After in whole seconds (>= 1). */
unsigned gw_ratelimit_check(gw_shm *s, int route, const char *ip, double rate, unsigned burst);

#endif
