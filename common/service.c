/* service: the scaffolding every service binary shares (see service.h). */
#include "service.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "crypto.h"
#include "log.h"
#include "metrics.h"

static service *service_current; /* the one service of this process, for the signal handler */
static uv_signal_t service_sigterm, service_sigint;

static void service_livez(http_req *req)
{
    http_reply(req, 200, "application/json", "{\"status\":\"ok\"}", 15);
}

static void service_health(http_req *req)
{
    service *s = service_current;
    int ok = 1;
    json_t *deps = json_object();
    if (s->pg) {
        int up = pg_pool_connected(s->pg) > 0;
        json_object_set_new(deps, "postgres", json_string(up ? "up" : "down"));
        ok &= up;
    }
    if (s->redis) {
        int up = redis_connected(s->redis);
        json_object_set_new(deps, "redis", json_string(up ? "up" : "down"));
        ok &= up;
    }
    for (int i = 0; i < s->nchecks; i++) {
        int up = s->checks[i].up(s->checks[i].ud);
        json_object_set_new(deps, s->checks[i].name, json_string(up ? "up" : "down"));
        ok &= up;
    }
    if (!ok)
        http_resp_header(req, "Retry-After", "1");
    http_reply_json(req, ok ? 200 : 503,
                    json_pack("{s:s, s:s, s:o}", "status", ok ? "ok" : "unavailable", "service",
                              s->name, "dependencies", deps));
}

static void service_metrics(http_req *req)
{
    size_t len;
    char *text = metrics_render(&len);
    http_reply(req, 200, "text/plain; version=0.0.4", text, len);
    free(text);
}

int service_init(service *s, const char *name)
{
    memset(s, 0, sizeof *s);
    s->name = name;
    log_init(name);
    if (crypto_init() != 0) {
        log_error(NULL, "cannot seed the random generator");
        return -1;
    }
    signal(SIGPIPE, SIG_IGN);
    s->loop = uv_default_loop();
    s->router = router_new();
    http_limits_default(&s->limits);
    s->limits.max_headers += HTTP_PROXY_ADDED_HEADERS; /* behind the gateway: its limit + */
    http_client_opts copts;
    http_client_opts_default(&copts);
    s->client = http_client_new(s->loop, &copts);
    router_add(s->router, "GET", "/livez", service_livez, 0);
    router_add(s->router, "GET", "/health", service_health, 0);
    router_add(s->router, "GET", "/metrics", service_metrics, 0);
    service_current = s;
    return 0;
}

void service_add_check(service *s, const char *name, int (*up)(void *ud), void *ud)
{
    if (s->nchecks < (int)(sizeof s->checks / sizeof s->checks[0]))
        s->checks[s->nchecks++] = (struct service_check){name, up, ud};
}

int service_use_pg(service *s, const char *migrations_dir)
{
    pg_pool_opts o;
    pg_pool_opts_default(&o);
    o.size = (int)config_int("PG_POOL_SIZE", o.size);
    o.statement_timeout_ms = (unsigned)config_ms("PG_STATEMENT_TIMEOUT", o.statement_timeout_ms);
    if (migrations_dir && pg_migrate(&o, migrations_dir) != 0)
        return -1;
    s->pg = pg_pool_new(s->loop, &o);
    return s->pg ? 0 : -1;
}

const char *service_migrations(const char *env, const char *installed)
{
    static char dir[4096];
    const char *v = config_str(env, NULL);
    if (v)
        return v;
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - sizeof "/migrations");
    char *slash = n > 0 ? memrchr(dir, '/', (size_t)n) : NULL;
    struct stat st;
    if (slash) {
        memcpy(slash, "/migrations", sizeof "/migrations");
        if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
            return dir;
    }
    return installed;
}

int service_use_redis(service *s)
{
    redis_opts o;
    redis_opts_default(&o);
    s->redis = redis_new(s->loop, &o);
    return s->redis ? 0 : -1;
}

static void service_close_walk(uv_handle_t *h, void *ud)
{
    (void)ud;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void service_drained(http_server *srv, void *ud)
{
    service *s = ud;
    (void)srv;
    log_info(NULL, "drained, closing");
    if (s->on_stop)
        s->on_stop(s);
    if (s->pg) {
        pg_pool_free(s->pg);
        s->pg = NULL;
    }
    if (s->redis) {
        redis_free(s->redis);
        s->redis = NULL;
    }
    http_client_free(s->client);
    s->client = NULL;
    uv_signal_stop(&service_sigterm);
    uv_signal_stop(&service_sigint);
    uv_close((uv_handle_t *)&service_sigterm, NULL);
    uv_close((uv_handle_t *)&service_sigint, NULL);
}

static void service_on_signal(uv_signal_t *h, int signum)
{
    service *s = h->data;
    if (s->http == NULL)
        return;
    log_info(NULL, "signal %d: draining", signum);
    unsigned drain = (unsigned)config_ms("DRAIN_TIMEOUT", 10000);
    http_server *srv = s->http;
    uv_signal_stop(&service_sigterm);
    uv_signal_stop(&service_sigint);
    http_server_drain(srv, drain, service_drained, s);
}

int service_run(service *s)
{
    const char *host = config_str("HOST", "0.0.0.0");
    long port = config_int("PORT", 0);
    if (port <= 0 || port > 65535) {
        log_error(NULL, "PORT must be set to a TCP port");
        return 2;
    }
    http_server_opts o = {0};
    o.limits = s->limits;
    o.handler = router_dispatch;
    o.handler_ud = s->router;
    s->http = http_server_new(s->loop, &o);
    int rc = http_server_listen(s->http, host, (int)port, 0);
    if (rc != 0) {
        log_error(NULL, "cannot listen on %s:%ld: %s", host, port, uv_strerror(rc));
        return 1;
    }
    uv_signal_init(s->loop, &service_sigterm);
    uv_signal_init(s->loop, &service_sigint);
    service_sigterm.data = service_sigint.data = s;
    uv_signal_start(&service_sigterm, service_on_signal, SIGTERM);
    uv_signal_start(&service_sigint, service_on_signal, SIGINT);
    log_emit(LOG_INFO, NULL, json_pack("{s:s, s:i}", "host", host, "port", (int)port), "listening");
    uv_run(s->loop, UV_RUN_DEFAULT);

    http_server_free(s->http);
    s->http = NULL;
    uv_walk(s->loop, service_close_walk, NULL);
    uv_run(s->loop, UV_RUN_DEFAULT);
    router_free(s->router);
    metrics_reset();
    uv_loop_close(s->loop);
    log_info(NULL, "stopped");
    return 0;
}

void service_reply_pg_error(http_req *req, pg_status st, const PGresult *res)
{
    if (st == PG_BUSY || st == PG_DOWN) {
        http_resp_header(req, "Retry-After", "1");
        http_reply_error(req, 503, "unavailable",
                         st == PG_BUSY ? "The database is busy; retry shortly."
                                       : "The database is unavailable; retry shortly.");
        return;
    }
    log_emit(LOG_ERROR, http_req_id(req),
             json_pack("{s:s}", "sqlstate", res ? pg_sqlstate(res) : ""), "database error: %s",
             res ? PQresultErrorMessage(res) : "");
    http_reply_error(req, 500, "internal_error", "An internal error occurred.");
}

void service_reply_redis_error(http_req *req, redis_status st)
{
    http_resp_header(req, "Retry-After", "1");
    http_reply_error(req, 503, "unavailable",
                     st == REDIS_ST_TIMEOUT ? "The cache did not answer in time; retry shortly."
                                            : "The cache is unavailable; retry shortly.");
}
