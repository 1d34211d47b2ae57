/* throttle: login attempt counters in Redis, per account and client address (5 within
 * 15 minutes) and per account from anywhere (50 within 15 minutes).
 *
 * Each attempt is reserved before its password is checked: INCR of the counter (its
 * window's expiry set in the same MULTI, so no key is ever left without one), then the
 * decision on the value INCR returned, so concurrent attempts can never all pass the check.
 * The account+address counter is reserved first; the account counter only for attempts the
 * first one let through (attempts refused from one address never lock the account for the
 * others). An attempt that failed stays counted until its window ends; one that succeeded,
 * or whose password was never checked (503), is given back (DECR): a success removes only
 * its own attempt, so it never unlocks a pair or an account over its limit, and the
 * counters hold the failures of the window (plus the attempts in progress).
 *
 * Redis down (not connected, an error, or no answer in time): fail open, the attempt is
 * allowed and not counted (throttling is a defence against guessing, never a reason to
 * refuse a real user). */
#ifndef SVC_AUTH_THROTTLE_H
#define SVC_AUTH_THROTTLE_H

#include "redis.h"

/* rp: where the service keeps its Redis client (NULL once closed at shutdown). */
void throttle_init(redis *const *rp, long per_ip_max, long per_account_max, long window_s);

/* A reserved attempt. */
typedef struct throttle_ticket throttle_ticket;

/* retry_after_s > 0: refused for that many seconds (t NULL); else allowed, and t (which may
 * be NULL when nothing could be counted) must be ended with throttle_done. */
typedef void (*throttle_fn)(long retry_after_s, throttle_ticket *t, void *ud);
void throttle_reserve(const char *email, const char *ip, throttle_fn cb, void *ud);
/* Ends an allowed attempt and frees t (NULL is fine): failed 1 keeps it counted; failed 0
 * (the password was right, or never checked) gives it back. */
void throttle_done(throttle_ticket *t, int failed);

#endif
