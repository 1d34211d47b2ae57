/* worker: a gateway worker process (see worker.h). */
#include "worker.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "crypto.h"
#include "gateway.h"
#include "log.h"
#include "route.h"

/* Skips what the master's active checks published as down (no lock: see shm.h). */
static int worker_peer_down(const upstream_peer *p, void *ud)
{
    const gw_shm_view *v = ud;
    return gw_shm_peer_down(v->shm, v->idx, v->name, upstream_peer_addr(p));
}

static gw_worker worker;
static uv_signal_t sig_term, sig_int;
static int draining, servers_left;

/* Ticket keys for the TLS layer: the ones the master placed in the shared memory. */
static size_t ticket_keys(void *ud, tls_ticket_key *out, size_t max)
{
    gw_worker *w = ud;
    gw_ticket_key keys[GW_SHM_KEYS];
    gw_shm_ticket_keys(w->shm, keys);
    size_t n = 0;
    for (size_t i = 0; i < GW_SHM_KEYS && n < max; i++) {
        if (keys[i].created_ms == 0)
            continue;
        memcpy(out[n].name, keys[i].name, sizeof out[n].name);
        memcpy(out[n].key, keys[i].key, sizeof out[n].key);
        n++;
    }
    return n;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static uv_timer_t stop_timer;

/* Everything in flight is done: free what holds handles, then let the loop end. Runs from a
 * timer so that no server is freed from inside its own callback. */
static void on_stop_timer(uv_timer_t *t)
{
    (void)t;
    for (size_t i = 0; i < worker.cfg->nupstreams; i++)
        upstream_free(worker.ups[i]);
    http_client_free(worker.client);
    if (worker.http_srv)
        http_server_free(worker.http_srv);
    if (worker.https_srv)
        http_server_free(worker.https_srv);
    uv_walk(worker.loop, close_walk, NULL);
}

static void on_drained(http_server *srv, void *ud)
{
    (void)srv;
    (void)ud;
    if (--servers_left > 0)
        return;
    uv_timer_start(&stop_timer, on_stop_timer, 0, 0);
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)h;
    if (draining)
        return;
    draining = 1;
    log_info(NULL, "worker %d: signal %d, draining", worker.slot, signum);
    unsigned t = (unsigned)worker.cfg->drain_timeout_ms;
    servers_left = (worker.http_srv != NULL) + (worker.https_srv != NULL);
    if (worker.http_srv)
        http_server_drain(worker.http_srv, t, on_drained, NULL);
    if (worker.https_srv)
        http_server_drain(worker.https_srv, t, on_drained, NULL);
    if (servers_left == 0)
        uv_timer_start(&stop_timer, on_stop_timer, 0, 0);
}

/* Caps connections per client address (shared by the workers), except from trusted proxies. */
static int conn_hook(void *ud, const char *ip, int open)
{
    gw_worker *w = ud;
    if (!w->cfg->max_conns_per_ip || cidr_nets_match(w->cfg->trusted, w->cfg->ntrusted, ip))
        return 0;
    if (!open) {
        gw_shm_conn_dec(w->shm, w->slot, ip);
        return 0;
    }
    unsigned n = gw_shm_conn_inc(w->shm, w->slot, ip);
    if (n > w->cfg->max_conns_per_ip) {
        gw_shm_conn_dec(w->shm, w->slot, ip);
        return -1;
    }
    return 0;
}

/* The security headers of the https listener's own error responses (framing, limits,
 * timeouts): the same as gw_headers_security() with the API policy. */
static const char *const tls_error_headers[] = {
    "Strict-Transport-Security",
    "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options",
    "nosniff",
    "X-Frame-Options",
    "DENY",
    "Content-Security-Policy",
    GW_CSP_API,
    "Referrer-Policy",
    "no-referrer",
    NULL,
    NULL,
};

static http_server *server_on(gw_worker *w, int fd, tls_server *tls)
{
    const gw_config *c = w->cfg;
    http_server_opts o;
    memset(&o, 0, sizeof o);
    http_limits_default(&o.limits);
    o.limits.header_timeout_ms = (unsigned)c->header_timeout_ms;
    o.limits.body_timeout_ms = (unsigned)c->body_timeout_ms;
    o.limits.idle_timeout_ms = (unsigned)c->keepalive_timeout_ms;
    o.limits.send_timeout_ms = (unsigned)c->send_timeout_ms;
    o.handler = gw_route_handle;
    o.handler_ud = w;
    o.server_name = NULL;
    o.tls = tls;
    o.conn_hook = conn_hook;
    o.error_headers = tls ? tls_error_headers : NULL;
    http_server *srv = http_server_new(w->loop, &o);
    if (!srv)
        return NULL;
    int rc = http_server_listen_fd(srv, fd);
    if (rc != 0) {
        log_error(NULL, "worker: cannot serve fd %d: %s", fd, uv_strerror(rc));
        http_server_free(srv);
        return NULL;
    }
    return srv;
}

int gw_worker_main(const gw_config *cfg, int slot)
{
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the master */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);  /* reloads are the master's business */
    if (crypto_init() != 0) { /* this process's own DRBG */
        log_error(NULL, "worker: cannot seed the DRBG");
        return 1;
    }
    gw_worker *w = &worker;
    w->cfg = cfg;
    w->slot = slot;
    w->loop = uv_default_loop();
    w->shm = gw_shm_attach(GW_FD_SHM);
    if (!w->shm) {
        log_error(NULL, "worker: no shared memory on fd %d", GW_FD_SHM);
        return 1;
    }
    http_client_opts co;
    http_client_opts_default(&co);
    co.connect_timeout_ms = (unsigned)cfg->proxy_connect_timeout_ms;
    co.read_timeout_ms = (unsigned)cfg->proxy_read_timeout_ms;
    /* Idle upstream connections kept per instance: as many as a busy worker has requests in
     * flight, so that keep-alive to the services holds under load (with 32, fifty concurrent
     * clients made the worker connect anew for a third of its requests); nginx's `keepalive
     * 64` in bench/gateway.sh is the same. */
    co.max_idle_per_peer = 64;
    w->client = http_client_new(w->loop, &co);
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        const gw_upstream_conf *uc = &cfg->upstreams[i];
        upstream_opts uo;
        upstream_opts_default(&uo);
        uo.resolve_every_ms = (unsigned)uc->resolve_every_ms;
        uo.max_fails = uc->max_fails;
        uo.fail_timeout_ms = (unsigned)uc->fail_timeout_ms;
        uo.health_path = NULL; /* active checks run in the master, published in shm */
        w->ups[i] = upstream_new(w->loop, w->client, uc->name, uc->servers, &uo);
        if (!w->ups[i]) {
            log_error(NULL, "worker: [upstream %s] servers do not parse", uc->name);
            return 1;
        }
        w->views[i] = (gw_shm_view){w->shm, i, uc->name};
        upstream_set_skip(w->ups[i], worker_peer_down, &w->views[i]);
    }
    w->statics = gw_static_new(cfg);
    if (cfg->https_port) {
        char err[256];
        tls_server_opts to = {cfg->cert,
                              cfg->key,
                              cfg->cert2[0] ? cfg->cert2 : NULL,
                              cfg->key2[0] ? cfg->key2 : NULL,
                              ticket_keys,
                              w,
                              (uint32_t)(cfg->ticket_rotate_ms * 2 / 1000)};
        w->tls = tls_server_new(&to, err, sizeof err);
        if (!w->tls) {
            log_error(NULL, "worker: TLS: %s", err);
            return 1;
        }
        w->https_srv = server_on(w, GW_FD_HTTPS, w->tls);
        if (!w->https_srv)
            return 1;
    }
    if (cfg->http_port) {
        w->http_srv = server_on(w, GW_FD_HTTP, NULL);
        if (!w->http_srv)
            return 1;
    }
    uv_timer_init(w->loop, &stop_timer);
    uv_signal_init(w->loop, &sig_term);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_init(w->loop, &sig_int);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    log_info(NULL, "worker %d: serving", slot);
    uv_run(w->loop, UV_RUN_DEFAULT);
    gw_static_free(w->statics);
    tls_server_free(w->tls);
    uv_loop_close(w->loop);
    log_info(NULL, "worker %d: stopped", slot);
    return 0;
}
