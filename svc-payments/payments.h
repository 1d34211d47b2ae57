/* payments: the svc-payments process state shared by its handlers, and the handlers of the
 * payment resource (create, get, list, status change). */
#ifndef PAYMENTS_PAYMENTS_H
#define PAYMENTS_PAYMENTS_H

#include <stddef.h>
#include <jansson.h>

#include "service.h"

typedef struct payments_app {
    service svc;
    struct auth_client *auth; /* validates callers' credentials */
    char **webhook_secrets;   /* PAYMENTS_WEBHOOK_SECRETS, split on ',' */
    size_t nwebhook_secrets;
    long webhook_tolerance_s; /* PAYMENTS_WEBHOOK_TOLERANCE: 300 s */
    long idem_ttl_s;          /* PAYMENTS_IDEMPOTENCY_TTL: 24 h */
    long idem_lock_s;         /* PAYMENTS_IDEMPOTENCY_LOCK_TIMEOUT: 60 s */
} payments_app;

extern payments_app payments;

/* Registers the routes of /payments... on the service's router. */
void payments_routes(router *r);

/* Validates a create request body. On success returns 0 and fills the normalized fields
 * (currency uppercased, description NULL when absent, metadata a new object, {} when
 * absent); on failure returns -1 with a message in err. */
typedef struct payment_input {
    long long amount;
    char currency[4];
    const char *description; /* borrowed from the body */
    json_t *metadata;        /* owned: json_decref */
} payment_input;

int payments_validate(json_t *body, payment_input *in, char *err, size_t errlen);

/* A new reference: "pay_" + 24 base62 characters (out needs 29 bytes). */
void payments_new_reference(char out[29]);

#endif
