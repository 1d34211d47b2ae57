/* idempotency: idempotency keys in PostgreSQL (see idempotency.h). */
#include "idempotency.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "log.h"
#include "xalloc.h"

int idem_key_valid(const char *key)
{
    size_t n = strlen(key);
    if (n == 0 || n > IDEM_KEY_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] < 0x20 || (unsigned char)key[i] > 0x7e)
            return 0;
    return 1;
}

idem_claim *idem_claim_new(const char *user, const char *key, json_t *body)
{
    idem_claim *c = xcalloc(1, sizeof *c);
    c->user = xstrdup(user);
    c->key = xstrdup(key);
    char *canon = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    uint8_t fp[32];
    crypto_sha256(canon ? canon : "", canon ? strlen(canon) : 0, fp);
    free(canon);
    c->fingerprint[0] = '\\';
    c->fingerprint[1] = 'x';
    crypto_hex(fp, sizeof fp, c->fingerprint + 2);
    crypto_random_token(c->lock_id, 16);
    return c;
}

void idem_claim_free(idem_claim *c)
{
    if (!c)
        return;
    free(c->user);
    free(c->key);
    free(c);
}

/* Inserts the key in flight; on a conflict takes it over only when it expired, or when it
 * is still in flight past its lock with the same fingerprint (its instance crashed). */
#define IDEM_SQL_CLAIM                                                                             \
    "INSERT INTO idempotency_keys (user_id, key, fingerprint, lock_id, locked_until, "             \
    "  expires_at) VALUES ($1, $2, $3::bytea, $4, now() + make_interval(secs => $5::float8), "     \
    "  now() + make_interval(secs => $6::float8)) "                                                \
    "ON CONFLICT (user_id, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, "                \
    "  lock_id = EXCLUDED.lock_id, locked_until = EXCLUDED.locked_until, "                         \
    "  response_status = NULL, response_body = NULL, payment_id = NULL, created_at = now(), "      \
    "  expires_at = EXCLUDED.expires_at "                                                          \
    "WHERE idempotency_keys.expires_at <= now() OR (idempotency_keys.response_status IS NULL "     \
    "  AND idempotency_keys.locked_until <= now() "                                                \
    "  AND idempotency_keys.fingerprint = EXCLUDED.fingerprint) "                                  \
    "RETURNING 1"

#define IDEM_SQL_LOOKUP                                                                            \
    "SELECT fingerprint = $3::bytea AS same, response_status, response_body "                      \
    "FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND expires_at > now()"

typedef struct idem_call {
    pg_pool *pg;
    idem_claim *c;
    idem_claim_fn cb;
    void *ud;
} idem_call;

static void idem_lookup_done(pg_status st, PGresult *res, void *ud)
{
    idem_call *call = ud;
    if (st != PG_OK) {
        call->cb(st, res, IDEM_IN_FLIGHT, 0, NULL, call->ud);
    } else if (PQntuples(res) == 0) {
        /* expired or released between our two statements: the client may simply retry */
        call->cb(st, res, IDEM_IN_FLIGHT, 0, NULL, call->ud);
    } else if (strcmp(pg_get(res, 0, "same"), "t") != 0) {
        call->cb(st, res, IDEM_MISMATCH, 0, NULL, call->ud);
    } else if (pg_get(res, 0, "response_status") == NULL) {
        call->cb(st, res, IDEM_IN_FLIGHT, 0, NULL, call->ud);
    } else {
        call->cb(st, res, IDEM_REPLAY, atoi(pg_get(res, 0, "response_status")),
                 pg_get(res, 0, "response_body"), call->ud);
    }
    free(call);
}

static void idem_claim_done(pg_status st, PGresult *res, void *ud)
{
    idem_call *call = ud;
    if (st != PG_OK || PQntuples(res) == 1) {
        call->cb(st, res, IDEM_OWNED, 0, NULL, call->ud);
        free(call);
        return;
    }
    const char *params[3] = {call->c->user, call->c->key, call->c->fingerprint};
    pg_query(call->pg, IDEM_SQL_LOOKUP, 3, params, idem_lookup_done, call);
}

void idem_claim_run(pg_pool *pg, idem_claim *c, long ttl_s, long lock_s, idem_claim_fn cb, void *ud)
{
    idem_call *call = xmalloc(sizeof *call);
    call->pg = pg;
    call->c = c;
    call->cb = cb;
    call->ud = ud;
    char ttl[24], lock[24];
    snprintf(ttl, sizeof ttl, "%ld", ttl_s);
    snprintf(lock, sizeof lock, "%ld", lock_s);
    const char *params[6] = {c->user, c->key, c->fingerprint, c->lock_id, lock, ttl};
    pg_query(pg, IDEM_SQL_CLAIM, 6, params, idem_claim_done, call);
}

void idem_complete(pg_tx *tx, const idem_claim *c, int status, const char *body,
                   const char *payment_id, pg_query_fn cb, void *ud)
{
    char st[8];
    snprintf(st, sizeof st, "%d", status);
    const char *params[6] = {c->user, c->key, c->lock_id, st, body, payment_id};
    pg_tx_query(tx,
                "UPDATE idempotency_keys SET response_status = $4::int, response_body = $5, "
                "payment_id = $6::bigint, locked_until = now() "
                "WHERE user_id = $1 AND key = $2 AND lock_id = $3 AND response_status IS NULL",
                6, params, cb, ud);
}

static void idem_ignore(pg_status st, PGresult *res, void *ud)
{
    const char *what = ud;
    if (st != PG_OK)
        log_warn(NULL, "idempotency: %s failed: %s", what,
                 res ? PQresultErrorMessage(res) : "no connection");
}

void idem_release(pg_pool *pg, const idem_claim *c)
{
    const char *params[3] = {c->user, c->key, c->lock_id};
    pg_query(pg,
             "DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND lock_id = $3 "
             "AND response_status IS NULL",
             3, params, idem_ignore, "release");
}

void idem_purge(pg_pool *pg)
{
    pg_query(pg, "DELETE FROM idempotency_keys WHERE expires_at <= now()", 0, NULL, idem_ignore,
             "purge");
}
