/* ttl_cache: a chained hash table with an insertion-ordered list for eviction, and the fills
 * in flight with their waiters (see ttl_cache.h). */
#include "ttl_cache.h"
#include "queue.h"

#include <stdlib.h>
#include <string.h>

typedef struct ttl_entry {
    uint8_t key[32];
    json_t *value;
    uint64_t expires_ms;
    struct ttl_entry *chain;         /* bucket chain */
    struct ttl_entry *older, *newer; /* insertion order */
} ttl_entry;

typedef struct ttl_waiter {
    ttl_cache_fn cb;
    void *ud;
    struct ttl_waiter *next;
} ttl_waiter;

/* One fill in flight and the callers waiting for it. */
typedef struct ttl_flight {
    uint8_t key[32];
    ttl_waiter *head, *tail;
    struct ttl_flight *next;
} ttl_flight;

#define TTL_FLIGHT_BUCKETS 64

struct ttl_cache {
    ttl_entry **buckets;
    size_t nbuckets; /* power of two */
    size_t size, max;
    ttl_entry *oldest, *newest;
    ttl_flight *flights[TTL_FLIGHT_BUCKETS]; /* by the key's first byte */
};

ttl_cache *ttl_cache_new(size_t max_entries)
{
    ttl_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->max = max_entries ? max_entries : 1;
    c->nbuckets = 16;
    while (c->nbuckets < c->max * 2)
        c->nbuckets *= 2;
    c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
    if (!c->buckets) {
        free(c);
        return NULL;
    }
    return c;
}

static size_t ttl_bucket(const ttl_cache *c, const uint8_t key[32])
{
    uint64_t h;
    memcpy(&h, key, sizeof(h)); /* the key is a hash already */
    return (size_t)h & (c->nbuckets - 1);
}

static ttl_entry **ttl_slot(ttl_cache *c, const uint8_t key[32])
{
    ttl_entry **pp = &c->buckets[ttl_bucket(c, key)];
    while (*pp && memcmp((*pp)->key, key, 32) != 0)
        pp = &(*pp)->chain;
    return pp;
}

static void ttl_entry_drop(ttl_cache *c, ttl_entry **slot)
{
    ttl_entry *e = *slot;
    *slot = e->chain;
    DQ_REMOVE(c->oldest, c->newest, e, newer, older);
    json_decref(e->value);
    free(e);
    c->size--;
}

static void ttl_waiters_free(ttl_waiter *w)
{
    while (w) {
        ttl_waiter *next = w->next;
        free(w);
        w = next;
    }
}

void ttl_cache_free(ttl_cache *c)
{
    if (!c)
        return;
    while (c->oldest)
        ttl_entry_drop(c, ttl_slot(c, c->oldest->key));
    for (size_t i = 0; i < TTL_FLIGHT_BUCKETS; i++) {
        while (c->flights[i]) {
            ttl_flight *f = c->flights[i];
            c->flights[i] = f->next;
            ttl_waiters_free(f->head);
            free(f);
        }
    }
    free(c->buckets);
    free(c);
}

json_t *ttl_cache_get(ttl_cache *c, const uint8_t key[32], uint64_t now_ms)
{
    ttl_entry **slot = ttl_slot(c, key);
    if (!*slot)
        return NULL;
    if ((*slot)->expires_ms <= now_ms) {
        ttl_entry_drop(c, slot);
        return NULL;
    }
    return (*slot)->value;
}

void ttl_cache_remove(ttl_cache *c, const uint8_t key[32])
{
    ttl_entry **slot = ttl_slot(c, key);
    if (*slot)
        ttl_entry_drop(c, slot);
}

void ttl_cache_put(ttl_cache *c, const uint8_t key[32], json_t *value, uint64_t expires_ms)
{
    ttl_cache_remove(c, key);
    if (c->size >= c->max)
        ttl_entry_drop(c, ttl_slot(c, c->oldest->key));
    ttl_entry *e = calloc(1, sizeof(*e));
    if (!e)
        return;
    memcpy(e->key, key, 32);
    e->value = json_incref(value);
    e->expires_ms = expires_ms;
    ttl_entry **slot = &c->buckets[ttl_bucket(c, key)];
    e->chain = *slot;
    *slot = e;
    DQ_PUSH_TAIL(c->oldest, c->newest, e, newer, older);
    c->size++;
}

size_t ttl_cache_size(const ttl_cache *c)
{
    return c->size;
}

/* ---- single flight ---- */
static ttl_flight **ttl_flight_slot(ttl_cache *c, const uint8_t key[32])
{
    ttl_flight **pp = &c->flights[key[0] % TTL_FLIGHT_BUCKETS];
    while (*pp && memcmp((*pp)->key, key, 32) != 0)
        pp = &(*pp)->next;
    return pp;
}

int ttl_cache_join(ttl_cache *c, const uint8_t key[32], ttl_cache_fn cb, void *ud)
{
    ttl_waiter *w = calloc(1, sizeof(*w));
    if (!w)
        abort();
    w->cb = cb;
    w->ud = ud;
    ttl_flight **slot = ttl_flight_slot(c, key);
    if (*slot) {
        SQ_PUSH((*slot)->head, (*slot)->tail, w, next);
        return 0;
    }
    ttl_flight *f = calloc(1, sizeof(*f));
    if (!f)
        abort();
    memcpy(f->key, key, 32);
    f->head = f->tail = w;
    *slot = f;
    return 1;
}

void ttl_cache_done(ttl_cache *c, const uint8_t key[32], int status, json_t *value,
                    uint64_t expires_ms)
{
    if (value && expires_ms)
        ttl_cache_put(c, key, value, expires_ms);
    ttl_flight **slot = ttl_flight_slot(c, key);
    ttl_flight *f = *slot;
    if (!f)
        return;
    *slot = f->next;    /* before the calls: a waiter may join again */
    json_incref(value); /* the waiters' even if the cache drops it meanwhile */
    for (ttl_waiter *w = f->head, *next; w; w = next) {
        next = w->next;
        w->cb(status, value, w->ud);
        free(w);
    }
    json_decref(value);
    free(f);
}

size_t ttl_cache_waiters(const ttl_cache *c, const uint8_t key[32])
{
    size_t n = 0;
    for (const ttl_flight *f = c->flights[key[0] % TTL_FLIGHT_BUCKETS]; f; f = f->next)
        if (memcmp(f->key, key, 32) == 0)
            for (const ttl_waiter *w = f->head; w; w = w->next)
                n++;
    return n;
}
