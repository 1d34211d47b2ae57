/* idempotency: Stripe-style idempotency keys for POST /payments, stored in PostgreSQL so every
 * instance shares them. A key belongs to one user and lives PAYMENTS_IDEMPOTENCY_TTL; the
 * request's fingerprint (SHA-256 of the canonical JSON body: keys sorted, no whitespace) is
 * stored with it. The first request claims the key (in flight), then stores its answer in
 * the same transaction that creates the payment. A key left in flight by a crashed instance
 * can be claimed again by the same request once PAYMENTS_IDEMPOTENCY_LOCK_TIMEOUT passed. */
#ifndef PAYMENTS_IDEMPOTENCY_H
#define PAYMENTS_IDEMPOTENCY_H

#include <stdint.h>
#include <jansson.h>

#include "pg_pool.h"

#define IDEM_KEY_MAX 255

typedef struct idem_claim {
    char *user;
    char *key;
    char fingerprint[2 + 64 + 1]; /* bytea text: "\x" + hex */
    char lock_id[32];
} idem_claim;

typedef enum {
    IDEM_OWNED = 0, /* this request owns the key: run it, then idem_complete */
    IDEM_REPLAY,    /* answered before: status and body are the first answer */
    IDEM_MISMATCH,  /* the key was used with another body: 422 idempotency_key_reused */
    IDEM_IN_FLIGHT, /* the first request with this key is still running: 409 */
} idem_outcome;

typedef void (*idem_claim_fn)(pg_status st, const PGresult *res, idem_outcome out, int status,
                              const char *body, void *ud);

/* 1 when key is acceptable as an Idempotency-Key (1..255 printable ASCII characters). */
int idem_key_valid(const char *key);

/* A new claim for user + key with the fingerprint of body. Free with idem_claim_free. */
idem_claim *idem_claim_new(const char *user, const char *key, json_t *body);
void idem_claim_free(idem_claim *c);

/* Claims the key or reports what the earlier request left (cb exactly once). */
void idem_claim_run(pg_pool *pg, idem_claim *c, long ttl_s, long lock_s, idem_claim_fn cb,
                    void *ud);
/* In the caller's transaction: stores the answer. cb gets PG_OK with 1 affected row when the
 * claim was still ours (PQcmdTuples "1"), "0" when another request took it over. */
void idem_complete(pg_tx *tx, const idem_claim *c, int status, const char *body,
                   const char *payment_id, pg_query_fn cb, void *ud);
/* Gives the key back after a failure (the request may be retried); fire and forget. */
void idem_release(pg_pool *pg, const idem_claim *c);
/* Deletes expired keys; fire and forget. */
void idem_purge(pg_pool *pg);

#endif
