/* service: what every service binary shares around its routes: logging and crypto set-up,
 * the HTTP server with the router, /livez, /health (dependencies' state, 503 when one is
 * down), /metrics, the PostgreSQL pool (with migrations) and Redis from the environment,
 * and a graceful SIGTERM/SIGINT: stop accepting, drain in-flight requests, close pools, exit 0.
 *
 * Environment: HOST (0.0.0.0), PORT (required), DRAIN_TIMEOUT (10s), PG* for PostgreSQL,
 * REDIS_HOST/REDIS_PORT/REDIS_PASSWORD for Redis, LOG_LEVEL. */
#ifndef COMMON_SERVICE_H
#define COMMON_SERVICE_H

#include <uv.h>
#include "http_client.h"
#include "http_server.h"
#include "pg_pool.h"
#include "redis.h"
#include "router.h"
#include "upstream.h"

typedef struct service {
    const char *name;
    uv_loop_t *loop;
    router *router;
    http_server *http;
    http_client *client; /* for calls to other services */
    pg_pool *pg;         /* NULL until service_use_pg */
    redis *redis;        /* NULL until service_use_redis */
    http_limits limits;  /* adjust before service_run */
    /* Called once after draining, before the pools close: free what the service added. */
    void (*on_stop)(struct service *s);
    /* Extra dependencies shown by /health (an auth upstream...): 1 when up. */
    struct service_check {
        const char *name;
        int (*up)(void *ud);
        void *ud;
    } checks[4];
    int nchecks;
    upstream *auth_upstream; /* service_use_auth's, else NULL */
    auth_client *auth;
} service;

/* Logging, crypto, loop, router with /livez /health /metrics. Returns 0 or -1. */
int service_init(service *s, const char *name);
/* Runs migrations from dir (NULL: none) then opens the pool. Returns 0 or -1. */
int service_use_pg(service *s, const char *migrations_dir);
/* The migrations folder: the environment variable env if set, else `migrations` next to the
 * binary when that folder exists (the build tree: meson copies them there), else installed
 * (meson's DATADIR/suite/svc-NAME/migrations). Call once at start-up (one static buffer). */
const char *service_migrations(const char *env, const char *installed);
int service_use_redis(service *s);
/* svc-auth at auth_url as the service's authority (service_auth.c): an upstream "auth", an
 * auth_client named after the service on it, the router's authentication of callers through it
 * (with service_calls, of other services' tokens too) and a dependency "auth" on /health.
 * Returns 0 or -1. service_auth_teardown undoes it (the router then answers 503). */
int service_use_auth(service *s, const char *auth_url, int service_calls);
void service_auth_teardown(service *s);
/* Adds a dependency to /health (at most 4). */
void service_add_check(service *s, const char *name, int (*up)(void *ud), void *ud);
/* Listens on HOST:PORT and runs until SIGTERM/SIGINT, then drains and frees everything.
 * Returns the process exit status. */
int service_run(service *s);

/* Replies 503 {"error":{"code":"unavailable",...}} with Retry-After: 1 for PG_BUSY/PG_DOWN,
 * 500 for PG_ERR_SQL (logged with the request id). For handlers' error paths. */
void service_reply_pg_error(http_req *req, pg_status st, const PGresult *res);
void service_reply_redis_error(http_req *req, redis_status st);

#endif
