/* svc-payments: payments, their status machine, idempotency keys and signed webhooks.
 * main wires the configuration, the routes and the start-up; see payments.c, state.c,
 * webhook.c, idempotency.c.
 *
 * Environment (besides service.h's HOST, PORT, PG*, DRAIN_TIMEOUT, LOG_LEVEL):
 *   AUTH_URL                           svc-auth instances, "host:port[,host:port...]" (required)
 *   PAYMENTS_WEBHOOK_SECRETS           comma-separated webhook secrets, any may sign (required;
 *                                      PAYMENTS_WEBHOOK_SECRET, one secret, is read as well)
 *   PAYMENTS_WEBHOOK_TOLERANCE         accepted age of a signature: 300s
 *   PAYMENTS_IDEMPOTENCY_TTL           life of an idempotency key: 24h
 *   PAYMENTS_IDEMPOTENCY_LOCK_TIMEOUT  a key left in flight (crashed instance) frees after: 60s
 *   PAYMENTS_MIGRATIONS                the migrations folder (default: next to the binary, else installed) */
#include <stdlib.h>
#include <string.h>

#include "caller.h"
#include "config.h"
#include "healthcheck.h"
#include "idempotency.h"
#include "log.h"
#include "payments.h"
#include "webhook.h"

#ifndef PAYMENTS_MIGRATIONS_DIR
#define PAYMENTS_MIGRATIONS_DIR "svc-payments/migrations"
#endif

#define PAYMENTS_PURGE_EVERY_MS (10 * 60 * 1000)

static uv_timer_t payments_purge_timer;

static void payments_purge(uv_timer_t *t)
{
    (void)t;
    if (payments.svc.pg)
        idem_purge(payments.svc.pg);
}

static void payments_free_config(void)
{
    config_list_free(payments.webhook_secrets, payments.nwebhook_secrets);
}

static void payments_stop(service *s)
{
    (void)s;
    uv_timer_stop(&payments_purge_timer);
    service_auth_teardown(&payments.svc);
}

int main(int argc, char **argv)
{
    int hc = healthcheck_main(argc, argv, "PORT", "/livez");
    if (hc >= 0)
        return hc;
    if (service_init(&payments.svc, "payments") != 0)
        return 1;
    const char *secrets =
        config_str("PAYMENTS_WEBHOOK_SECRETS", config_str("PAYMENTS_WEBHOOK_SECRET", ""));
    payments.nwebhook_secrets = config_list(secrets, &payments.webhook_secrets);
    if (payments.nwebhook_secrets == 0) {
        log_error(NULL, "PAYMENTS_WEBHOOK_SECRETS must name at least one webhook secret");
        payments_free_config();
        return 2;
    }
    payments.webhook_tolerance_s = config_ms("PAYMENTS_WEBHOOK_TOLERANCE", 300000) / 1000;
    payments.idem_ttl_s = config_ms("PAYMENTS_IDEMPOTENCY_TTL", 24L * 3600 * 1000) / 1000;
    payments.idem_lock_s = config_ms("PAYMENTS_IDEMPOTENCY_LOCK_TIMEOUT", 60000) / 1000;
    if (payments.idem_ttl_s < 1 || payments.idem_lock_s < 1) {
        log_error(NULL, "PAYMENTS_IDEMPOTENCY_TTL and _LOCK_TIMEOUT must be at least 1s");
        payments_free_config();
        return 2;
    }
    const char *auth_url = config_str("AUTH_URL", NULL);
    if (!auth_url || service_use_auth(&payments.svc, auth_url, 0) != 0) {
        log_error(NULL, "AUTH_URL must list the svc-auth instances as host:port[,host:port]");
        payments_free_config();
        return 2;
    }
    if (service_use_pg(&payments.svc,
                       service_migrations("PAYMENTS_MIGRATIONS", PAYMENTS_MIGRATIONS_DIR)) != 0) {
        service_auth_teardown(&payments.svc);
        payments_free_config();
        return 1;
    }
    webhook_routes(payments.svc.router); /* before /payments/{reference} */
    payments_routes(payments.svc.router);

    uv_timer_init(payments.svc.loop, &payments_purge_timer);
    uv_timer_start(&payments_purge_timer, payments_purge, 5000, PAYMENTS_PURGE_EVERY_MS);
    uv_unref((uv_handle_t *)&payments_purge_timer);

    payments.svc.on_stop = payments_stop;
    int rc = service_run(&payments.svc);
    payments_free_config();
    return rc;
}
