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
#include "xalloc.h"

/* ---- the revocation check ---- */
/* One lookup in flight per session (ttl_cache_join on the session cache). */
typedef struct sess_lookup {
    char sid[40];
    uint8_t key[32];
} sess_lookup;

typedef struct sess_call {
    auth_session_fn cb;
    void *ud;
} sess_call;

static uint64_t sess_revoked_until(void)
{
    return clock_mono_ms() + (uint64_t)(auth.access_ttl_s + 2 * AUTH_LEEWAY_S) * 1000u;
}

static void sess_finish(sess_lookup *l, auth_session_state st)
{
    json_t *v = st == AUTH_SESSION_ALIVE     ? json_true()
                : st == AUTH_SESSION_REVOKED ? json_false()
                                             : NULL;
    uint64_t until = st == AUTH_SESSION_ALIVE     ? clock_mono_ms() + auth.positive_ttl_ms
                     : st == AUTH_SESSION_REVOKED ? sess_revoked_until()
                                                  : 0;
    ttl_cache_done(auth.session_cache, l->key, (int)st, v, until);
    free(l);
}

static void sess_call_answer(int status, json_t *v, void *ud)
{
    sess_call call = *(sess_call *)ud;
    free(ud);
    (void)v;
    call.cb((auth_session_state)status, call.ud);
}

static void sess_on_pg(pg_status st, PGresult *res, void *ud)
{
    sess_lookup *l = ud;
    if (st != PG_OK) {
        log_warn(NULL, "session check failed: %s",
                 st == PG_ERR_SQL ? pg_sqlstate(res) : "pg down/busy");
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
    sess_ask_pg(l); /* not known revoked (or Redis down): PostgreSQL decides */
}

void auth_session_check(const char *sid, auth_session_fn cb, void *ud)
{
    if (!auth_is_uuid(sid)) {
        cb(AUTH_SESSION_REVOKED, ud);
        return;
    }
    uint8_t key[32];
    crypto_sha256(sid, strlen(sid), key);
    json_t *v = ttl_cache_get(auth.session_cache, key, clock_mono_ms());
    if (v) {
        cb(json_is_true(v) ? AUTH_SESSION_ALIVE : AUTH_SESSION_REVOKED, ud);
        return;
    }
    sess_call *call = xcalloc(1, sizeof(*call));
    call->cb = cb;
    call->ud = ud;
    if (!ttl_cache_join(auth.session_cache, key, sess_call_answer, call))
        return;
    sess_lookup *l = xcalloc(1, sizeof(*l));
    snprintf(l->sid, sizeof(l->sid), "%s", sid);
    memcpy(l->key, key, 32);
    if (auth.svc.redis && redis_connected(auth.svc.redis))
        redis_command(auth.svc.redis, sess_on_redis, l, "EXISTS auth:revoked:%s", sid);
    else
        sess_ask_pg(l);
}

void auth_session_revoked(const char *sid)
{
    uint8_t key[32];
    crypto_sha256(sid, strlen(sid), key);
    ttl_cache_put(auth.session_cache, key, json_false(), sess_revoked_until());
    if (auth.svc.redis)
        redis_command(auth.svc.redis, NULL, NULL, "SET auth:revoked:%s 1 EX %ld", sid,
                      auth.access_ttl_s + 2 * AUTH_LEEWAY_S);
}
