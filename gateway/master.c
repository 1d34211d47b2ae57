/* master: the gateway's master process (see master.h). */
#include "master.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "crypto.h"
#include "gateway.h"
#include "log.h"
#include "net_addr.h"
#include "worker.h"

typedef struct gw_child {
    uv_process_t proc;
    int in_use; /* the slot holds a process handle (until its close) */
    int alive;
    int gen;      /* config generation it runs */
    int stopping; /* sent SIGTERM */
    uint64_t started;
} gw_child;

static struct {
    uv_loop_t *loop;
    gw_config cfg;
    int workers; /* wanted per generation */
    int workers_override;
    int gen;
    int stopping;
    gw_shm *shm;
    int shm_fd;
    int http_fd, https_fd;
    char exe[PATH_MAX];
    gw_child kids[GW_SHM_WORKER_SLOTS];
    http_client *client;
    upstream *ups[GW_MAX_UPSTREAMS];
    size_t nups;
    uv_timer_t publish_timer, rotate_timer, check_timer, kill_timer, cert_timer;
    uv_signal_t sig_hup, sig_term, sig_int;
    uv_fs_poll_t cert_polls[4]; /* the certificate and key files (cert2, key2 too) */
} M;

/* How often the certificate files are looked at, and how long after a change the reload
 * waits (certbot writes the certificate and the key one after the other). */
#define GW_CERT_POLL_MS   2000
#define GW_CERT_SETTLE_MS 500

static int open_listener(const char *host, int port)
{
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    const char *h = (!host[0] || strcmp(host, "*") == 0) ? NULL : host;
    int rc = getaddrinfo(h, portstr, &hints, &ai);
    if (rc != 0) {
        log_error(NULL, "listen %s:%d: %s", host, port, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    /* No SO_REUSEPORT: the workers share this one socket (inherited), and a second gateway
     * started on the same port must fail rather than take half of the connections. */
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 511) != 0) {
        log_error(NULL, "listen %s:%d: %s", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    return fd;
}

/* Loads and checks a configuration, certificates included. */
static int load_config(const char *path, gw_config *c)
{
    char err[512];
    if (gw_config_load(path, c, err, sizeof err) != 0) {
        log_error(NULL, "config: %s", err);
        return -1;
    }
    if (M.workers_override > 0)
        c->workers = M.workers_override;
    if (c->workers > GW_SHM_WORKER_SLOTS / 2)
        c->workers = GW_SHM_WORKER_SLOTS / 2;
    if (c->https_port) {
        tls_server_opts to = {
            c->cert, c->key, c->cert2[0] ? c->cert2 : NULL, c->key2[0] ? c->key2 : NULL, NULL,
            NULL,    0};
        tls_server *t = tls_server_new(&to, err, sizeof err);
        if (!t) {
            log_error(NULL, "config: TLS: %s", err);
            return -1;
        }
        tls_server_free(t);
    }
    return 0;
}

/* ---- workers ---- */

static void on_child_closed(uv_handle_t *h)
{
    gw_child *k = h->data;
    k->in_use = 0;
}

static void on_child_exit(uv_process_t *p, int64_t status, int sig)
{
    gw_child *k = p->data;
    int slot = (int)(k - M.kids);
    k->alive = 0;
    gw_shm_conn_clear_slot(M.shm, slot);
    if (!k->stopping && !M.stopping)
        log_error(NULL, "worker %d (pid %d) died: status %lld signal %d", slot, p->pid,
                  (long long)status, sig);
    uv_close((uv_handle_t *)p, on_child_closed);
}

static int spawn_worker(void)
{
    int slot = -1;
    for (int i = 0; i < GW_SHM_WORKER_SLOTS && slot < 0; i++)
        if (!M.kids[i].in_use)
            slot = i;
    if (slot < 0)
        return -1;
    gw_child *k = &M.kids[slot];
    char slot_s[16];
    snprintf(slot_s, sizeof slot_s, "%d", slot);
    char *args[] = {M.exe, "--worker", slot_s, "--config", M.cfg.path, NULL};
    uv_stdio_container_t io[6];
    for (int i = 0; i < 3; i++) {
        io[i].flags = UV_INHERIT_FD;
        io[i].data.fd = i;
    }
    io[GW_FD_HTTP].flags = M.http_fd >= 0 ? UV_INHERIT_FD : UV_IGNORE;
    io[GW_FD_HTTP].data.fd = M.http_fd;
    io[GW_FD_HTTPS].flags = M.https_fd >= 0 ? UV_INHERIT_FD : UV_IGNORE;
    io[GW_FD_HTTPS].data.fd = M.https_fd;
    io[GW_FD_SHM].flags = UV_INHERIT_FD;
    io[GW_FD_SHM].data.fd = M.shm_fd;
    uv_process_options_t o;
    memset(&o, 0, sizeof o);
    o.file = M.exe;
    o.args = args;
    o.exit_cb = on_child_exit;
    o.stdio = io;
    o.stdio_count = 6;
    memset(k, 0, sizeof *k);
    k->proc.data = k;
    int rc = uv_spawn(M.loop, &k->proc, &o);
    if (rc != 0) {
        log_error(NULL, "cannot start a worker: %s", uv_strerror(rc));
        uv_close((uv_handle_t *)&k->proc, NULL);
        return -1;
    }
    k->in_use = k->alive = 1;
    k->gen = M.gen;
    k->started = uv_now(M.loop);
    return 0;
}

/* Keeps `workers` live workers of the current generation (replaces dead ones). */
static void on_check_timer(uv_timer_t *t)
{
    (void)t;
    if (M.stopping)
        return;
    int live = 0;
    for (int i = 0; i < GW_SHM_WORKER_SLOTS; i++)
        if (M.kids[i].in_use && M.kids[i].alive && !M.kids[i].stopping && M.kids[i].gen == M.gen)
            live++;
    for (; live < M.workers; live++)
        if (spawn_worker() != 0)
            break;
}

static void stop_generation(int before_gen)
{
    for (int i = 0; i < GW_SHM_WORKER_SLOTS; i++) {
        gw_child *k = &M.kids[i];
        if (k->in_use && k->alive && !k->stopping && k->gen < before_gen) {
            k->stopping = 1;
            uv_process_kill(&k->proc, SIGTERM);
        }
    }
}

/* ---- health and tickets ---- */

typedef struct publish_ctx {
    gw_shm_upstream *u;
} publish_ctx;

static void publish_peer(const upstream_peer *p, int healthy, void *ud)
{
    publish_ctx *pc = ud;
    if (pc->u->npeers == GW_SHM_PEERS)
        return;
    gw_shm_peer *sp = &pc->u->peers[pc->u->npeers++];
    snprintf(sp->addr, sizeof sp->addr, "%s", upstream_peer_text(p));
    memcpy(&sp->sa, upstream_peer_addr(p), net_addr_len(upstream_peer_addr(p)));
    sp->healthy = (uint8_t)healthy;
}

static void on_publish_timer(uv_timer_t *t)
{
    (void)t;
    static gw_shm_upstream snap[GW_MAX_UPSTREAMS];
    memset(snap, 0, sizeof snap);
    for (size_t i = 0; i < M.nups; i++) {
        snprintf(snap[i].name, sizeof snap[i].name, "%s", upstream_name(M.ups[i]));
        unsigned healthy, total;
        upstream_counts(M.ups[i], &healthy, &total);
        snap[i].healthy = healthy;
        snap[i].total = total;
        publish_ctx pc = {&snap[i]};
        upstream_each(M.ups[i], publish_peer, &pc);
    }
    gw_shm_publish_health(M.shm, snap, M.nups);
}

static void on_rotate_timer(uv_timer_t *t)
{
    (void)t;
    gw_shm_rotate_ticket_key(M.shm);
    log_info(NULL, "session ticket key rotated");
}

static void free_upstreams(void)
{
    for (size_t i = 0; i < M.nups; i++)
        upstream_free(M.ups[i]);
    M.nups = 0;
}

static int make_upstreams(void)
{
    for (size_t i = 0; i < M.cfg.nupstreams; i++) {
        const gw_upstream_conf *uc = &M.cfg.upstreams[i];
        upstream_opts uo;
        upstream_opts_default(&uo);
        uo.resolve_every_ms = (unsigned)uc->resolve_every_ms;
        uo.max_fails = uc->max_fails;
        uo.fail_timeout_ms = (unsigned)uc->fail_timeout_ms;
        uo.health_path = uc->health_path[0] ? uc->health_path : NULL;
        uo.health_interval_ms = (unsigned)uc->health_interval_ms;
        uo.health_timeout_ms = (unsigned)uc->health_timeout_ms;
        uo.rise = uc->rise;
        uo.fall = uc->fall;
        M.ups[i] = upstream_new(M.loop, M.client, uc->name, uc->servers, &uo);
        if (!M.ups[i]) {
            log_error(NULL, "[upstream %s]: servers do not parse", uc->name);
            return -1;
        }
        M.nups = i + 1;
    }
    return 0;
}

/* ---- signals ---- */

static int reopen(int *fd, const char *old_host, int old_port, const char *host, int port)
{
    if (old_port == port && strcmp(old_host, host) == 0)
        return 0;
    int nfd = port ? open_listener(host, port) : -1;
    if (port && nfd < 0)
        return -1;
    if (*fd >= 0)
        close(*fd); /* the old workers keep their copies until they have drained */
    *fd = nfd;
    return 0;
}

static void watch_certs(void);

static void reload(void)
{
    static gw_config nc;
    if (load_config(M.cfg.path, &nc) != 0) {
        log_error(NULL, "reload refused: the running configuration stays");
        return;
    }
    if (reopen(&M.http_fd, M.cfg.http_host, M.cfg.http_port, nc.http_host, nc.http_port) != 0 ||
        reopen(&M.https_fd, M.cfg.https_host, M.cfg.https_port, nc.https_host, nc.https_port) !=
            0) {
        log_error(NULL, "reload refused: cannot listen on the new addresses");
        return;
    }
    free_upstreams();
    M.cfg = nc;
    M.workers = nc.workers;
    M.gen++;
    if (make_upstreams() != 0)
        log_error(NULL, "reload: upstreams incomplete");
    on_publish_timer(NULL);
    on_check_timer(NULL);   /* the new generation first, on the same sockets */
    stop_generation(M.gen); /* then the old one drains */
    watch_certs();
    log_info(NULL, "reloaded: generation %d, %d workers", M.gen, M.workers);
}

/* ---- certificates renewed in place (certbot in another container: no signal needed) ----
 * uv_fs_poll stats each file on the threadpool; any change (modification time, size, a new
 * inode after a rename) reloads as SIGHUP does, once the files have settled. A pair that
 * does not match yet (the certificate renewed, the key not yet written) is refused by
 * reload() and the next change tries again. */
static void on_cert_settled(uv_timer_t *t)
{
    (void)t;
    if (!M.stopping)
        reload();
}

static void on_cert_changed(uv_fs_poll_t *h, int status, const uv_stat_t *prev,
                            const uv_stat_t *curr)
{
    (void)prev;
    (void)curr;
    if (status < 0 || M.stopping) /* gone for a moment while being replaced: wait */
        return;
    char path[PATH_MAX];
    size_t len = sizeof path;
    if (uv_fs_poll_getpath(h, path, &len) != 0)
        path[0] = '\0';
    log_info(NULL, "certificate file %s changed: reloading", path);
    uv_timer_start(&M.cert_timer, on_cert_settled, GW_CERT_SETTLE_MS, 0);
}

static void watch_certs(void)
{
    const char *files[4] = {M.cfg.cert, M.cfg.key, M.cfg.cert2, M.cfg.key2};
    for (int i = 0; i < 4; i++) {
        uv_fs_poll_stop(&M.cert_polls[i]);
        if (M.cfg.https_port && files[i][0])
            uv_fs_poll_start(&M.cert_polls[i], on_cert_changed, files[i], GW_CERT_POLL_MS);
    }
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static int any_alive(void)
{
    for (int i = 0; i < GW_SHM_WORKER_SLOTS; i++)
        if (M.kids[i].in_use && M.kids[i].alive)
            return 1;
    return 0;
}

/* Every worker is gone: close what is left so that the loop ends. */
static void finish_stop(void)
{
    free_upstreams();
    http_client_free(M.client);
    M.client = NULL;
    uv_walk(M.loop, close_walk, NULL);
}

static uint64_t stop_deadline;

/* While stopping: ends when every worker is gone; after the grace period, kills. */
static void on_stop_tick(uv_timer_t *t)
{
    (void)t;
    if (!any_alive()) {
        finish_stop();
        return;
    }
    if (uv_now(M.loop) >= stop_deadline) {
        for (int i = 0; i < GW_SHM_WORKER_SLOTS; i++)
            if (M.kids[i].in_use && M.kids[i].alive)
                uv_process_kill(&M.kids[i].proc, SIGKILL);
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)h;
    if (signum == SIGHUP) {
        if (!M.stopping)
            reload();
        return;
    }
    if (M.stopping)
        return;
    M.stopping = 1;
    log_info(NULL, "signal %d: stopping the workers", signum);
    stop_generation(M.gen + 1);
    for (int i = 0; i < 4; i++)
        uv_fs_poll_stop(&M.cert_polls[i]);
    uv_timer_stop(&M.cert_timer);
    uv_timer_stop(&M.check_timer);
    uv_timer_stop(&M.publish_timer);
    uv_timer_stop(&M.rotate_timer);
    stop_deadline = uv_now(M.loop) + (uint64_t)M.cfg.drain_timeout_ms + 5000;
    uv_timer_start(&M.kill_timer, on_stop_tick, 50, 50);
}

int gw_master_main(const char *config_path, int workers_override)
{
    signal(SIGPIPE, SIG_IGN);
    M.workers_override = workers_override;
    M.http_fd = M.https_fd = -1;
    if (crypto_init() != 0) {
        log_error(NULL, "cannot seed the DRBG");
        return 1;
    }
    if (load_config(config_path, &M.cfg) != 0)
        return 2;
    M.workers = M.cfg.workers;
    ssize_t n = readlink("/proc/self/exe", M.exe, sizeof M.exe - 1);
    if (n <= 0) {
        log_error(NULL, "cannot find my own executable");
        return 1;
    }
    M.exe[n] = '\0';
    M.shm = gw_shm_create(&M.shm_fd);
    if (!M.shm) {
        log_error(NULL, "cannot create the shared memory: %s", strerror(errno));
        return 1;
    }
    gw_shm_rotate_ticket_key(M.shm);
    if (M.cfg.http_port && (M.http_fd = open_listener(M.cfg.http_host, M.cfg.http_port)) < 0)
        return 1;
    if (M.cfg.https_port && (M.https_fd = open_listener(M.cfg.https_host, M.cfg.https_port)) < 0)
        return 1;

    M.loop = uv_default_loop();
    http_client_opts co;
    http_client_opts_default(&co);
    M.client = http_client_new(M.loop, &co);
    if (make_upstreams() != 0)
        return 2;
    uv_signal_init(M.loop, &M.sig_hup);
    uv_signal_start(&M.sig_hup, on_signal, SIGHUP);
    uv_signal_init(M.loop, &M.sig_term);
    uv_signal_start(&M.sig_term, on_signal, SIGTERM);
    uv_signal_init(M.loop, &M.sig_int);
    uv_signal_start(&M.sig_int, on_signal, SIGINT);
    uv_timer_init(M.loop, &M.publish_timer);
    uv_timer_start(&M.publish_timer, on_publish_timer, 200, 200);
    uv_timer_init(M.loop, &M.rotate_timer);
    uv_timer_start(&M.rotate_timer, on_rotate_timer, (uint64_t)M.cfg.ticket_rotate_ms,
                   (uint64_t)M.cfg.ticket_rotate_ms);
    uv_timer_init(M.loop, &M.check_timer);
    uv_timer_start(&M.check_timer, on_check_timer, 0, 1000);
    uv_timer_init(M.loop, &M.kill_timer);
    uv_timer_init(M.loop, &M.cert_timer);
    for (int i = 0; i < 4; i++)
        uv_fs_poll_init(M.loop, &M.cert_polls[i]);
    watch_certs();
    log_info(NULL, "gateway master: http %s:%d https %s:%d, %d workers", M.cfg.http_host,
             M.cfg.http_port, M.cfg.https_host, M.cfg.https_port, M.workers);
    uv_run(M.loop, UV_RUN_DEFAULT);
    uv_loop_close(M.loop);
    log_info(NULL, "gateway master: stopped");
    return 0;
}
