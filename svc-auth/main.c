/* svc-auth: users, organizations, sessions, ES256 access tokens, API keys and service
 * tokens (API.md, section Auth). main wires configuration (settings.c), routes and start-up. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "config.h"
#include "healthcheck.h"
#include "crypto.h"
#include "es256.h"
#include "log.h"
#include "passwords.h"
#include "throttle.h"

#ifndef AUTH_MIGRATIONS_DIR
#define AUTH_MIGRATIONS_DIR "svc-auth/migrations"
#endif

int main(int argc, char **argv)
{
    int hc = healthcheck_main(argc, argv, "PORT", "/livez");
    if (hc >= 0)
        return hc;
    /* argon2 allocates 19 MiB per hash: give it back to the system after each one. */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    mallopt(M_ARENA_MAX, 2);

    long cores = (long)uv_available_parallelism();
    long conc = config_int("AUTH_HASH_CONCURRENCY", cores > 1 ? cores - 1 : 1);
    long queue = config_int("AUTH_HASH_QUEUE", 64);
    long jconc = config_int("AUTH_JWT_CONCURRENCY", cores > 0 ? cores : 1);
    long jqueue = config_int("AUTH_JWT_QUEUE", 512);
    if (conc < 1 || queue < 0 || jconc < 1 || jqueue < 0) {
        fprintf(stderr, "AUTH_HASH_CONCURRENCY and AUTH_JWT_CONCURRENCY must be >= 1, "
                        "AUTH_HASH_QUEUE and AUTH_JWT_QUEUE >= 0\n");
        return 2;
    }
    /* the threadpool must hold the hashes and the ES256 jobs and still serve DNS lookups */
    if (!getenv("UV_THREADPOOL_SIZE") && conc + jconc + 1 > 4) {
        char n[24];
        snprintf(n, sizeof(n), "%ld", conc + jconc + 1);
        setenv("UV_THREADPOOL_SIZE", n, 1);
    }

    if (service_init(&auth.svc, "auth") != 0)
        return 1;
    if (auth_settings_load() != 0) {
        auth_settings_free();
        return 2;
    }
    if (service_use_pg(&auth.svc, service_migrations("AUTH_MIGRATIONS", AUTH_MIGRATIONS_DIR)) !=
            0 ||
        service_use_redis(&auth.svc) != 0 || admin_bootstrap() != 0) {
        auth_settings_free();
        return 1;
    }
    if (passwords_init(auth.svc.loop, (unsigned)conc, (unsigned)queue) != 0 ||
        es256_init(auth.svc.loop, (unsigned)jconc, (unsigned)jqueue) != 0) {
        log_error(NULL, "cannot prepare password hashing and token signing");
        auth_settings_free();
        return 1;
    }
    throttle_init(&auth.svc.redis, config_int("AUTH_THROTTLE_PER_IP", 5),
                  config_int("AUTH_THROTTLE_PER_ACCOUNT", 50),
                  config_ms("AUTH_THROTTLE_WINDOW", 15 * 60 * 1000L) / 1000);

    router *r = auth.svc.router;
    router_set_authn(r, auth_route_authn, NULL);
    users_routes(r);
    sessions_routes(r);
    tokens_routes(r);
    api_keys_routes(r);
    invites_routes(r);
    jwks_routes(r);

    int rc = service_run(&auth.svc);
    auth_settings_free();
    return rc;
}
