/* throttle: login failure counters in Redis, per account and client address (5 within
 * 15 minutes) and per account from anywhere (50 within 15 minutes). Redis down: fail open
 * (throttling is a defence against guessing, never a reason to refuse a real user). */
#ifndef SVC_AUTH_THROTTLE_H
#define SVC_AUTH_THROTTLE_H

#include "redis.h"

/* rp: where the service keeps its Redis client (NULL once closed at shutdown). */
void throttle_init(redis *const *rp, long per_ip_max, long per_account_max, long window_s);

/* retry_after_s 0: allowed; else refused for that many seconds. */
typedef void (*throttle_fn)(long retry_after_s, void *ud);
void throttle_check(const char *email, const char *ip, throttle_fn cb, void *ud);
/* Counts a failed attempt (fire and forget). */
void throttle_failed(const char *email, const char *ip);
/* A successful login clears the account+address counter. */
void throttle_succeeded(const char *email, const char *ip);

#endif
