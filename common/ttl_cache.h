/* ttl_cache: a bounded map from a 32-byte key (a SHA-256: of a token, a credential, a
 * session id) to a JSON value with an expiry time, with single-flight filling: while one
 * caller fills a key (asks PostgreSQL, auth, the threadpool), the others that want it wait
 * for that one answer instead of asking again. Event loop thread only.
 *
 *     json_t *v = ttl_cache_get(c, key, now);
 *     if (v) return use(v);
 *     if (ttl_cache_join(c, key, on_value, ud))      (1: this caller fills the key)
 *         start_lookup(...);   ... later: ttl_cache_done(c, key, status, value, expires);
 */
#ifndef COMMON_TTL_CACHE_H
#define COMMON_TTL_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

typedef struct ttl_cache ttl_cache;

ttl_cache *ttl_cache_new(size_t max_entries);
/* Waiters of fills still in flight are dropped without a call. */
void ttl_cache_free(ttl_cache *c);
/* The value stored for key if it has not expired at now_ms (borrowed ref), else NULL. */
json_t *ttl_cache_get(ttl_cache *c, const uint8_t key[32], uint64_t now_ms);
/* Stores value (a new reference is taken) until expires_ms, replacing an entry of the same
 * key. When full, the oldest entry is dropped. */
void ttl_cache_put(ttl_cache *c, const uint8_t key[32], json_t *value, uint64_t expires_ms);
void ttl_cache_remove(ttl_cache *c, const uint8_t key[32]);
size_t ttl_cache_size(const ttl_cache *c);

/* ---- single flight ---- */
/* status and value are the filler's (value borrowed, NULL when the fill failed). */
typedef void (*ttl_cache_fn)(int status, json_t *value, void *ud);
/* Queues cb for key's answer. Returns 1 when no fill of key was in flight: the caller must
 * now fill it and end with ttl_cache_done; 0 when cb waits behind a fill in flight. */
int ttl_cache_join(ttl_cache *c, const uint8_t key[32], ttl_cache_fn cb, void *ud);
/* Ends key's fill: stores value until expires_ms (when value is not NULL and expires_ms is
 * not 0), then calls every waiter in arrival order with status and value. A waiter may join
 * key again: that starts a new fill. */
void ttl_cache_done(ttl_cache *c, const uint8_t key[32], int status, json_t *value,
                    uint64_t expires_ms);
/* Fills of key in flight (0 or 1) and their waiters: for tests and metrics. */
size_t ttl_cache_waiters(const ttl_cache *c, const uint8_t key[32]);

#endif
