/* throttle: fixed-window failure counters in Redis (see throttle.h). Keys hold a hash of the
 * email, never the email itself: auth:fail:ip:<hash(email, ip)>, auth:fail:acct:<hash(email)>. */
#include "throttle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"

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
    char *buf = malloc(el + il + 2);
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

typedef struct th_check {
    throttle_fn cb;
    void *ud;
    char ipkey[64], acctkey[64];
} th_check;

static void th_on_ttl(redis_status st, redisReply *reply, void *ud)
{
    th_check *c = ud;
    long ttl = th.window_s;
    if (st == REDIS_ST_OK && reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        ttl = (long)reply->integer;
    c->cb(ttl, c->ud);
    free(c);
}

static long th_reply_long(redisReply *r)
{
    if (!r)
        return 0;
    if (r->type == REDIS_REPLY_STRING)
        return strtol(r->str, NULL, 10);
    if (r->type == REDIS_REPLY_INTEGER)
        return (long)r->integer;
    return 0;
}

static void th_on_get(redis_status st, redisReply *reply, void *ud)
{
    th_check *c = ud;
    if (st != REDIS_ST_OK || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        c->cb(0, c->ud);   /* fail open */
        free(c);
        return;
    }
    long ipn = th_reply_long(reply->element[0]), acctn = th_reply_long(reply->element[1]);
    if (ipn >= th.per_ip_max || acctn >= th.per_account_max) {
        /* Retry-After: when the window of the counter over its limit ends */
        if (!*th.rp) {
            c->cb(th.window_s, c->ud);
            free(c);
            return;
        }
        redis_command(*th.rp, th_on_ttl, c, "TTL %s",
                      acctn >= th.per_account_max ? c->acctkey : c->ipkey);
        return;
    }
    c->cb(0, c->ud);
    free(c);
}

void throttle_check(const char *email, const char *ip, throttle_fn cb, void *ud)
{
    th_check *c = calloc(1, sizeof(*c));
    c->cb = cb;
    c->ud = ud;
    th_keys(email, ip, c->ipkey, c->acctkey);
    if (!*th.rp) {
        th_on_get(REDIS_ST_DOWN, NULL, c);   /* fail open */
        return;
    }
    redis_command(*th.rp, th_on_get, c, "MGET %s %s", c->ipkey, c->acctkey);
}

void throttle_failed(const char *email, const char *ip)
{
    char ipkey[64], acctkey[64];
    redis *r = *th.rp;
    if (!r)
        return;
    th_keys(email, ip, ipkey, acctkey);
    redis_command(r, NULL, NULL, "INCR %s", ipkey);
    redis_command(r, NULL, NULL, "EXPIRE %s %ld NX", ipkey, th.window_s);
    redis_command(r, NULL, NULL, "INCR %s", acctkey);
    redis_command(r, NULL, NULL, "EXPIRE %s %ld NX", acctkey, th.window_s);
}

void throttle_succeeded(const char *email, const char *ip)
{
    char ipkey[64], acctkey[64];
    if (!*th.rp)
        return;
    th_keys(email, ip, ipkey, acctkey);
    redis_command(*th.rp, NULL, NULL, "DEL %s", ipkey);
}
