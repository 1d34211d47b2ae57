/* es256: svc-auth's ES256 work off the event loop. Signing a token (~0.8 ms) and checking
 * the signature of an access token not yet in the verified-token cache (~2.5 ms) run in a
 * workq lane of their own: AUTH_JWT_CONCURRENCY at once (default: the cores), at most
 * AUTH_JWT_QUEUE waiting (default 512); beyond that the caller answers 503 with Retry-After.
 *
 * Verifying an access token: the verified-token cache first (a SHA-256), then the cheap
 * checks on the loop (format, alg, typ, kid, iss, aud, exp: a bad token never waits for the
 * lane), then the signature on the lane; concurrent requests presenting the same token share
 * one verification. A verified token enters the cache until it expires. */
#ifndef SVC_AUTH_ES256_H
#define SVC_AUTH_ES256_H

#include <uv.h>
#include <jansson.h>

#include "jwt.h"

/* Call once the keys (auth.keys) and the token cache are loaded. Returns 0 or -1. */
int es256_init(uv_loop_t *loop, unsigned concurrency, unsigned queue_max);
/* At exit, once the loop has stopped: drops waiting jobs (their callbacks never run). */
void es256_shutdown(void);

/* Holds a place in the lane for a token signed later (login, refresh: before changing what
 * only the reply can hand over). 0, or -1 when the lane is full: answer 503 at once. */
int es256_reserve(void);
void es256_release(void);

/* token: malloc'd, owned by the callback; NULL when signing failed. */
typedef void (*es256_signed_fn)(char *token, void *ud);
/* Signs claims (stolen: the caller keeps no reference to them nor to anything inside) with
 * header typ (a string constant). reserved: uses a place held by es256_reserve (never
 * refused). Returns 0 (cb will run), or -1 when the lane is full (cb never runs). */
int es256_sign(const char *typ, json_t *claims, int reserved, es256_signed_fn cb, void *ud);

/* checked 0: the lane could not run the check (answer 503). Otherwise err says whether the
 * token is valid; claims (borrowed) are set only when err is JWT_OK. */
typedef void (*es256_verified_fn)(int checked, jwt_err err, json_t *claims, void *ud);
/* Verifies an access token (typ at+jwt, the configured issuer and audience). Returns 0 when
 * cb will run (or already ran: cache hits, cheap refusals and a full lane answer at once),
 * -1 when out of memory (cb never runs). Checks of one token share one verification. */
int es256_verify_access(const char *token, size_t len, es256_verified_fn cb, void *ud);

/* Jobs running and waiting (for tests and metrics). */
unsigned es256_running(void);
unsigned es256_waiting(void);

#endif
