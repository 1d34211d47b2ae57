/* revocation: is a session alive? The check behind every access token, and the record of a
 * revocation.
 *
 * PostgreSQL is the truth. This process remembers "revoked" facts (they never change back)
 * and "alive" facts for positive_ttl_ms (< 1 s) only; Redis holds "revoked" facts
 * (auth:revoked:<sid>) so a revoked session costs no PostgreSQL query. An empty or
 * unreachable Redis only means asking PostgreSQL: it can never make a revoked session alive.
 * Concurrent checks of one session share one lookup. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "crypto.h"
#include "log.h"

/* ---- the revocation check ---- */
typedef struct sess_waiter {
    auth_session_fn cb;
    void *ud;
    struct sess_waiter *next;
} sess_waiter;

typedef struct sess_lookup {
    char sid[40];
    uint8_t key[32];
    sess_waiter *waiters;
    struct sess_lookup *next;
} sess_lookup;

static sess_lookup *sess_lookups;

static void sess_finish(sess_lookup *l, auth_session_state st)
{
    sess_lookup **pp = &sess_lookups;
    while (*pp != l)
        pp = &(*pp)->next;
    *pp = l->next;
    if (st == AUTH_SESSION_ALIVE)
        jwt_cache_put(auth.session_cache, l->key, json_true(), auth_now_ms() + auth.positive_ttl_ms);
    else if (st == AUTH_SESSION_REVOKED)
        jwt_cache_put(auth.session_cache, l->key, json_false(),
                      auth_now_ms() + (uint64_t)(auth.access_ttl_s + 2 * AUTH_LEEWAY_S) * 1000u);
    sess_waiter *w = l->waiters;
    free(l);
    while (w) {
        sess_waiter *next = w->next;
        w->cb(st, w->ud);
        free(w);
        w = next;
    }
}

static void sess_on_pg(pg_status st, PGresult *res, void *ud)
{
    sess_lookup *l = ud;
    if (st != PG_OK) {
        log_warn(NULL, "session check failed: %s", st == PG_ERR_SQL ? pg_sqlstate(res) : "pg down/busy");
        sess_finish(l, AUTH_SESSION_ERROR);
        return;
    }
    const char *alive = PQntuples(res) == 1 ? pg_get(res, 0, "alive") : NULL;
    sess_finish(l, alive && strcmp(alive, "t") == 0 ? AUTH_SESSION_ALIVE : AUTH_SESSION_REVOKED);
}

static void sess_ask_pg(sess_lookup *l)
{
    const char *params[] = {l->sid};
    auth_pg("SELECT (revoked_at IS NULL AND expires_at > now()) AS alive FROM sessions "
            "WHERE id = $1",
            1, params, sess_on_pg, l);
}

static void sess_on_redis(redis_status st, redisReply *reply, void *ud)
{
    sess_lookup *l = ud;
    if (st == REDIS_ST_OK && reply && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1) {
        sess_finish(l, AUTH_SESSION_REVOKED);
        return;
    }
    sess_ask_pg(l);   /* not known revoked (or Redis down): PostgreSQL decides */
}

void auth_session_check(const char *sid, auth_session_fn cb, void *ud)
{
    if (!auth_is_uuid(sid)) {
        cb(AUTH_SESSION_REVOKED, ud);
        return;
    }
    uint8_t key[32];
    crypto_sha256(sid, strlen(sid), key);
    json_t *v = jwt_cache_get(auth.session_cache, key, auth_now_ms());
    if (v) {
        cb(json_is_true(v) ? AUTH_SESSION_ALIVE : AUTH_SESSION_REVOKED, ud);
        return;
    }
    sess_waiter *w = calloc(1, sizeof(*w));
    w->cb = cb;
    w->ud = ud;
    for (sess_lookup *l = sess_lookups; l; l = l->next) {
        if (strcmp(l->sid, sid) == 0) {
            w->next = l->waiters;
            l->waiters = w;
            return;
        }
    }
    sess_lookup *l = calloc(1, sizeof(*l));
    snprintf(l->sid, sizeof(l->sid), "%s", sid);
    memcpy(l->key, key, 32);
    l->waiters = w;
    l->next = sess_lookups;
    sess_lookups = l;
    if (auth.svc.redis && redis_connected(auth.svc.redis))
        redis_command(auth.svc.redis, sess_on_redis, l, "EXISTS auth:revoked:%s", sid);
    else
        sess_ask_pg(l);
}

void auth_session_revoked(const char *sid)
{
    uint8_t key[32];
    crypto_sha256(sid, strlen(sid), key);
    jwt_cache_put(auth.session_cache, key, json_false(),
                  auth_now_ms() + (uint64_t)(auth.access_ttl_s + 2 * AUTH_LEEWAY_S) * 1000u);
    if (auth.svc.redis)
        redis_command(auth.svc.redis, NULL, NULL, "SET auth:revoked:%s 1 EX %ld", sid,
                      auth.access_ttl_s + 2 * AUTH_LEEWAY_S);
}
