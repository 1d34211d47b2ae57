/* throttle: fixed-window attempt counters in Redis (see throttle.h). Keys hold a hash of the
 * email, never the email itself: auth:fail:ip:<hash(email, ip)>, auth:fail:acct:<hash(email)>.
 * A counter changes only in a MULTI that also sets its expiry (EXPIRE NX: the window starts
 * with its first attempt and is never extended), so no key can be left without one. */
#include "throttle.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "crypto.h"
#include "xalloc.h"

enum { TH_IP = 1, TH_ACCT = 2 };

struct throttle_ticket {
    char ipkey[64], acctkey[64];
    int held;          /* TH_IP | TH_ACCT: the counters this attempt incremented */
    uint64_t until_ms; /* the first of their windows ends then: later, no DECR */
};

typedef struct th_reserve {
    throttle_fn cb;
    void *ud;
    throttle_ticket *t;
} th_reserve;

static struct {
    redis *const *rp;
    long per_ip_max, per_account_max, window_s;
} th;

void throttle_init(redis *const *rp, long per_ip_max, long per_account_max, long window_s)
{
    th.rp = rp;
    th.per_ip_max = per_ip_max;
    th.per_account_max = per_account_max;
    th.window_s = window_s;
}

static void th_keys(const char *email, const char *ip, char ipkey[64], char acctkey[64])
{
    uint8_t d[32];
    char hex[65];
    size_t el = strlen(email), il = strlen(ip);
    char *buf = xmalloc(el + il + 2);
    memcpy(buf, email, el);
    buf[el] = '\n';
    memcpy(buf + el + 1, ip, il + 1);
    crypto_sha256(buf, el + 1 + il, d);
    free(buf);
    crypto_hex(d, 16, hex);
    snprintf(ipkey, 64, "auth:fail:ip:%.32s", hex);
    crypto_sha256(email, el, d);
    crypto_hex(d, 16, hex);
    snprintf(acctkey, 64, "auth:fail:acct:%.32s", hex);
}

/* Adds delta (+1 or -1) to the counter key in one MULTI with its expiry; cb (may be NULL)
 * gets the EXEC reply: [value, expire set, seconds left]. */
static void th_add(redis *r, const char *key, int delta, redis_fn cb, void *ud)
{
    redis_command(r, NULL, NULL, "MULTI");
    redis_command(r, NULL, NULL, delta > 0 ? "INCR %s" : "DECR %s", key);
    redis_command(r, NULL, NULL, "EXPIRE %s %ld NX", key, th.window_s);
    redis_command(r, NULL, NULL, "TTL %s", key);
    redis_command(r, cb, ud, "EXEC");
}

/* The counter's new value and the seconds left in its window from an EXEC reply of th_add;
 * 0 when Redis could not count. */
static int th_counted(redis_status st, redisReply *reply, long *value, long *ttl)
{
    if (st != REDIS_ST_OK || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[2]->type != REDIS_REPLY_INTEGER)
        return 0;
    *value = (long)reply->element[0]->integer;
    *ttl = reply->element[2]->integer > 0 ? (long)reply->element[2]->integer : th.window_s;
    return 1;
}

static void th_held(throttle_ticket *t, int which, long ttl)
{
    uint64_t until = clock_mono_ms() + (uint64_t)ttl * 1000u;
    if (!t->held || until < t->until_ms)
        t->until_ms = until;
    t->held |= which;
}

static void th_refuse(th_reserve *c, long retry_after_s)
{
    throttle_done(c->t, 0); /* gives back what this attempt still holds */
    c->cb(retry_after_s, NULL, c->ud);
    free(c);
}

static void th_allow(th_reserve *c)
{
    c->cb(0, c->t, c->ud);
    free(c);
}

/* One counter's EXEC reply: 1 when under max (the ticket now holds it); else lets the attempt
 * through when Redis could not count (fail open) or refuses it over max, frees c and is 0.
 * A refused attempt's own count stays: the window is fixed anyway, and only the counters
 * reached so far were touched. */
static int th_step(th_reserve *c, redis_status st, redisReply *reply, long max, int which)
{
    long n, ttl;
    if (!th_counted(st, reply, &n, &ttl))
        th_allow(c); /* fail open */
    else if (n > max)
        th_refuse(c, ttl);
    else {
        th_held(c->t, which, ttl);
        return 1;
    }
    return 0;
}

static void th_on_acct(redis_status st, redisReply *reply, void *ud)
{
    th_reserve *c = ud;
    if (th_step(c, st, reply, th.per_account_max, TH_ACCT))
        th_allow(c);
}

static void th_on_ip(redis_status st, redisReply *reply, void *ud)
{
    th_reserve *c = ud;
    if (!th_step(c, st, reply, th.per_ip_max, TH_IP))
        return;
    if (!*th.rp) {
        th_allow(c);
        return;
    }
    th_add(*th.rp, c->t->acctkey, 1, th_on_acct, c);
}

void throttle_reserve(const char *email, const char *ip, throttle_fn cb, void *ud)
{
    th_reserve *c = xcalloc(1, sizeof(*c));
    c->cb = cb;
    c->ud = ud;
    c->t = xcalloc(1, sizeof(*c->t));
    th_keys(email, ip, c->t->ipkey, c->t->acctkey);
    if (!*th.rp) {
        th_allow(c); /* fail open */
        return;
    }
    th_add(*th.rp, c->t->ipkey, 1, th_on_ip, c);
}

void throttle_done(throttle_ticket *t, int failed)
{
    if (!t)
        return;
    /* past the end of a window, a DECR would start a new counter below zero */
    if (!failed && t->held && *th.rp && clock_mono_ms() + 1000u < t->until_ms) {
        if (t->held & TH_IP)
            th_add(*th.rp, t->ipkey, -1, NULL, NULL);
        if (t->held & TH_ACCT)
            th_add(*th.rp, t->acctkey, -1, NULL, NULL);
    }
    free(t);
}
