/* test_ttl_cache: common/ttl_cache.c: expiry, eviction of the oldest when full, and single
 * flight: lookups of one key during a fill wait for that one fill, a failed fill wakes them
 * all with the failure, and a waiter may start the next fill from its callback. */
#include <string.h>

#include "test.h"
#include "ttl_cache.h"

static void key_of(uint8_t key[32], int n)
{
    memset(key, 0, 32);
    key[0] = (uint8_t)n;
    key[31] = (uint8_t)(n >> 8);
}

static void expires(void)
{
    ttl_cache *c = ttl_cache_new(8);
    uint8_t k[32];
    key_of(k, 1);
    json_t *v = json_string("v");
    ttl_cache_put(c, k, v, 1000);
    json_decref(v);
    CHECK(ttl_cache_get(c, k, 999) != NULL);
    CHECK_STR(json_string_value(ttl_cache_get(c, k, 999)), "v");
    CHECK(ttl_cache_get(c, k, 1000) == NULL); /* expired at its time, and dropped */
    CHECK_INT(ttl_cache_size(c), 0);
    ttl_cache_free(c);
}

static void evicts_the_oldest(void)
{
    ttl_cache *c = ttl_cache_new(2);
    uint8_t k1[32], k2[32], k3[32];
    key_of(k1, 1);
    key_of(k2, 2);
    key_of(k3, 3);
    ttl_cache_put(c, k1, json_true(), 100);
    ttl_cache_put(c, k2, json_true(), 100);
    ttl_cache_put(c, k3, json_true(), 100);
    CHECK_INT(ttl_cache_size(c), 2);
    CHECK(ttl_cache_get(c, k1, 0) == NULL);
    CHECK(ttl_cache_get(c, k3, 0) != NULL);
    ttl_cache_free(c);
}

typedef struct seen {
    int calls, status;
    char value[16];
} seen;

static void on_value(int status, json_t *v, void *ud)
{
    seen *s = ud;
    s->calls++;
    s->status = status;
    snprintf(s->value, sizeof s->value, "%s", v ? json_string_value(v) : "(null)");
}

static void one_fill_for_concurrent_lookups(void)
{
    ttl_cache *c = ttl_cache_new(8);
    uint8_t k[32], other[32];
    key_of(k, 7);
    key_of(other, 7 + 256); /* same first byte, another key */
    seen a = {0}, b = {0}, d = {0}, o = {0};
    CHECK_INT(ttl_cache_join(c, k, on_value, &a), 1); /* a fills */
    CHECK_INT(ttl_cache_join(c, k, on_value, &b), 0); /* b waits */
    CHECK_INT(ttl_cache_join(c, k, on_value, &d), 0);
    CHECK_INT(ttl_cache_join(c, other, on_value, &o), 1); /* its own fill */
    CHECK_INT(ttl_cache_waiters(c, k), 3);
    CHECK_INT(a.calls + b.calls + d.calls, 0); /* nobody answered before the fill */
    json_t *v = json_string("filled");
    ttl_cache_done(c, k, 200, v, 500);
    json_decref(v);
    CHECK_INT(a.calls, 1);
    CHECK_INT(b.calls, 1);
    CHECK_INT(d.calls, 1);
    CHECK_INT(b.status, 200);
    CHECK_STR(d.value, "filled");
    CHECK_STR(json_string_value(ttl_cache_get(c, k, 499)), "filled");
    CHECK_INT(ttl_cache_waiters(c, k), 0);
    CHECK_INT(ttl_cache_waiters(c, other), 1); /* untouched */
    CHECK_INT(o.calls, 0);
    ttl_cache_free(c); /* drops o's wait */
}

static void failure_wakes_every_waiter(void)
{
    ttl_cache *c = ttl_cache_new(8);
    uint8_t k[32];
    key_of(k, 9);
    seen a = {0}, b = {0};
    CHECK_INT(ttl_cache_join(c, k, on_value, &a), 1);
    CHECK_INT(ttl_cache_join(c, k, on_value, &b), 0);
    ttl_cache_done(c, k, 503, NULL, 0);
    CHECK_INT(a.calls, 1);
    CHECK_INT(b.calls, 1);
    CHECK_INT(b.status, 503);
    CHECK_STR(b.value, "(null)");
    CHECK_INT(ttl_cache_size(c), 0); /* a failure is not cached */
    /* the next lookup starts a new fill */
    CHECK_INT(ttl_cache_join(c, k, on_value, &a), 1);
    ttl_cache_done(c, k, 503, NULL, 0);
    CHECK_INT(a.calls, 2);
    ttl_cache_free(c);
}

typedef struct rejoin {
    ttl_cache *c;
    uint8_t key[32];
    int joined;
} rejoin;

static void on_value_rejoin(int status, json_t *v, void *ud)
{
    rejoin *r = ud;
    (void)status;
    (void)v;
    r->joined = ttl_cache_join(r->c, r->key, on_value_rejoin, r);
}

static void a_waiter_may_join_again(void)
{
    rejoin r = {.c = ttl_cache_new(8)};
    key_of(r.key, 11);
    CHECK_INT(ttl_cache_join(r.c, r.key, on_value_rejoin, &r), 1);
    ttl_cache_done(r.c, r.key, 503, NULL, 0);
    CHECK_INT(r.joined, 1); /* a new fill, not the finished one */
    CHECK_INT(ttl_cache_waiters(r.c, r.key), 1);
    ttl_cache_free(r.c);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {TEST_CASE(expires), TEST_CASE(evicts_the_oldest),
                                      TEST_CASE(one_fill_for_concurrent_lookups),
                                      TEST_CASE(failure_wakes_every_waiter),
                                      TEST_CASE(a_waiter_may_join_again)};
    return test_main("ttl_cache", cases, argc, argv);
}
