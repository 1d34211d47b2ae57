/* webhook: POST /payments/webhook, the payment processor's signed notifications.
 * X-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]; each v1 is
 * HMAC-SHA256(secret, t + "." + raw body); any v1 matching any configured secret (rotation)
 * is accepted, compared in constant time, when t is within the tolerance of now. */
#ifndef PAYMENTS_WEBHOOK_H
#define PAYMENTS_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "router.h"

/* Returns 1 when header carries a valid signature of body (len bytes, exactly as received)
 * under one of the secrets, with |now - t| <= tolerance_s; 0 otherwise. */
int webhook_verify(const char *header, const void *body, size_t len, char *const *secrets,
                   size_t nsecrets, int64_t now, int64_t tolerance_s);

/* Registers POST /payments/webhook. */
void webhook_routes(router *r);

#endif
