/* service_token: this service's own token for calling another service's /internal/ routes.
 * Asked of svc-auth (POST /internal/service-token {"service","secret","audience"}) through
 * the auth upstream, cached until shortly before its expires_in, and refreshed single-flight:
 * callers that want it while a request is in flight wait for that one answer. Event loop
 * thread only. */
#ifndef COMMON_SERVICE_TOKEN_H
#define COMMON_SERVICE_TOKEN_H

#include <uv.h>

#include "upstream.h"

typedef struct service_token service_token;

/* auth stays the caller's; service, secret and audience are copied. */
service_token *service_token_new(uv_loop_t *loop, upstream *auth, const char *service,
                                 const char *secret, const char *audience);
/* A request in flight finishes later without calling anyone. */
void service_token_free(service_token *t);

/* token: NULL when auth could not be asked or refused (status: auth's HTTP status, or 503
 * when it could not be reached). Valid during the callback only. May run before
 * service_token_get returns (cached). */
typedef void (*service_token_fn)(int status, const char *token, void *ud);
void service_token_get(service_token *t, service_token_fn cb, void *ud);
/* Forgets the cached token (the callee answered 401 with it: a rotated key). */
void service_token_invalidate(service_token *t);

/* How long before expiry a token is renewed: a fifth of its lifetime plus 1 s (exp is in
 * whole seconds), at most 30 s, and less than the lifetime (else half of it). */
unsigned long service_token_margin_ms(unsigned long lifetime_ms);

#endif
