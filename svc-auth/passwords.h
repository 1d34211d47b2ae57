/* passwords: argon2id hashing (m=19456 KiB, t=2, p=1, PHC strings) on the libuv threadpool,
 * at most `concurrency` hashes at once and at most `queue_max` waiting: beyond that the
 * caller answers 503 with Retry-After. The event loop never hashes. */
#ifndef SVC_AUTH_PASSWORDS_H
#define SVC_AUTH_PASSWORDS_H

#include <stddef.h>
#include <uv.h>

#define PASSWORDS_MIN_CHARS 8
#define PASSWORDS_MAX_CHARS 256

/* Prepares the pool and the dummy hash verified for unknown emails (hashes once, blocking:
 * call before serving). Returns 0 or -1. */
int passwords_init(uv_loop_t *loop, unsigned concurrency, unsigned queue_max);
/* At exit: drops waiting jobs (their callbacks never run). */
void passwords_shutdown(void);

/* result: 0 done (hash set / password matches), 1 mismatch (verify), -1 error. */
typedef void (*passwords_fn)(int result, const char *hash, void *ud);

/* Both copy the password. Return 0 when queued, -1 when the queue is full (cb never runs). */
int passwords_hash(const char *password, size_t len, passwords_fn cb, void *ud);
/* phc NULL: verifies against the dummy hash (always a mismatch, same cost). */
int passwords_verify(const char *phc, const char *password, size_t len, passwords_fn cb, void *ud);

/* Blocking, for start-up before the loop runs (the bootstrapped admin, admin.c): hashes
 * into out (PASSWORDS_PHC_MAX bytes), 0 or -1; verifies, 0 match, 1 mismatch, -1 error. */
#define PASSWORDS_PHC_MAX 128
int passwords_hash_now(const char *password, size_t len, char out[PASSWORDS_PHC_MAX]);
int passwords_verify_now(const char *phc, const char *password, size_t len);

/* Hashes running and waiting (for metrics and tests). */
unsigned passwords_running(void);
unsigned passwords_waiting(void);

#endif
