/* upstream: a service as a set of instances found through DNS (see upstream.h).
 *
 * Each "host:port" item is resolved with uv_getaddrinfo now and every resolve_every_ms
 * (literal addresses once, at creation); the peer set is the union of the last good answer of
 * every item. New addresses join healthy, vanished ones leave the set; a peer is refcounted
 * (the set holds one reference, each pick another, each health check another), so a peer
 * still in use by a request outlives its removal. A failed resolution keeps the item's
 * previous addresses.
 *
 * Health: a peer is down while passively marked (max_fails failures within fail_timeout mark
 * it down for fail_timeout) or, with active checks, after fall failed checks until rise good
 * ones (2xx/3xx within health_timeout).
 *
 * The upstream is freed once nothing refers to it any more (timers closed, resolutions, checks
 * and fetches answered): upstream_free only starts that. Free the upstream before its client. */
#include "upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "log.h"
#include "net_addr.h"
#include "xalloc.h"

typedef struct us_host {
    upstream *u;
    char *host; /* without brackets */
    char port[8];
    int numeric; /* a literal address: never resolved */
    int resolving;
    int answered; /* the first resolution ended (well or not) */
    int failing;  /* the last resolution failed (logged once) */
    uv_getaddrinfo_t req;
    struct sockaddr_storage *addrs; /* the last good answer */
    size_t naddrs;
} us_host;

struct upstream_peer {
    struct sockaddr_storage addr;
    char text[64];
    unsigned refs;
    int in_set;
    unsigned fails; /* passive: failures since fail_start */
    uint64_t fail_start, down_until;
    int active_down; /* active: failed `fall` checks, not yet `rise` good ones */
    unsigned rise_n, fall_n;
    int checking;
};

typedef struct us_fetch us_fetch;

struct upstream {
    uv_loop_t *loop;
    http_client *client;
    char *name;
    upstream_opts opts;
    char *health_path;
    us_host *hosts;
    size_t nhosts;
    upstream_peer **peers;
    size_t npeers, cap;
    size_t rr;
    uv_timer_t resolve_timer, health_timer, defer_timer;
    unsigned pending; /* handles, resolutions, checks and fetches under way */
    int freeing;
    int first_round_done;  /* every name answered once */
    us_fetch *waiting;     /* fetches waiting for the first resolution */
    us_fetch *deferred;    /* fetches to end with HC_ECONNECT from the loop */
    upstream_skip_fn skip; /* outside health (upstream_set_skip) */
    void *skip_ud;
};

/* A request kept to be sent again on another peer: one block holds the strings. */
typedef struct us_req {
    char *method, *target, *body;
    http_header *headers;
    size_t nheaders, body_len;
} us_req;

struct us_fetch {
    upstream *u;
    us_req r;
    unsigned timeout_ms;
    http_fetch_fn cb;
    void *ud;
    upstream_peer *peer;
    int tries;
    uint64_t wait_until; /* waiting for the first resolution until then */
    us_fetch *next;
};

typedef struct us_check {
    upstream *u;
    upstream_peer *peer;
} us_check;

static void us_fetch_end(us_fetch *f, hc_err err, const http_response *r);
static void us_fetch_go(us_fetch *f);
static void us_defer_arm(upstream *u);

void upstream_opts_default(upstream_opts *o)
{
    o->resolve_every_ms = 5000;
    o->max_fails = 1;
    o->fail_timeout_ms = 10000;
    o->health_path = NULL;
    o->health_interval_ms = 2000;
    o->health_timeout_ms = 1000;
    o->rise = 2;
    o->fall = 3;
}

/* ---- parsing "host:port[,host:port...]" ---- */

static int us_parse_port(const char *s, size_t n, char out[8])
{
    unsigned long v = 0;
    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    snprintf(out, 8, "%lu", v);
    return 0;
}

static int us_valid_name(const char *s, size_t n)
{
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '.' || ch == '_'))
            return 0;
    }
    return 1;
}

/* One item, spaces trimmed; fills h (host, port, numeric and its address). */
static int us_parse_item(const char *s, size_t n, us_host *h)
{
    const char *host, *port;
    size_t hn, pn;
    while (n > 0 && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n == 0)
        return -1;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close || close + 1 >= s + n || close[1] != ':')
            return -1;
        host = s + 1;
        hn = (size_t)(close - host);
        port = close + 2;
    } else {
        const char *colon = memchr(s, ':', n);
        if (!colon || memchr(colon + 1, ':', (size_t)(s + n - colon - 1)))
            return -1;
        host = s;
        hn = (size_t)(colon - s);
        port = colon + 1;
    }
    pn = (size_t)(s + n - port);
    if (us_parse_port(port, pn, h->port) != 0)
        return -1;
    h->host = xstrndup(host, hn);
    if (s[0] == '[') {
        struct sockaddr_in6 a6;
        if (uv_ip6_addr(h->host, atoi(h->port), &a6) != 0)
            return -1;
        h->numeric = 1;
        h->addrs = xcalloc(1, sizeof *h->addrs);
        memcpy(h->addrs, &a6, sizeof a6);
        h->naddrs = 1;
    } else {
        struct sockaddr_in a4;
        if (!us_valid_name(host, hn))
            return -1;
        if (uv_ip4_addr(h->host, atoi(h->port), &a4) == 0) {
            h->numeric = 1;
            h->addrs = xcalloc(1, sizeof *h->addrs);
            memcpy(h->addrs, &a4, sizeof a4);
            h->naddrs = 1;
        }
    }
    return 0;
}

/* ---- addresses and peers ---- */

static int us_addr_eq(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    return net_addr_eq((const struct sockaddr *)a, (const struct sockaddr *)b);
}

void upstream_peer_release(upstream_peer *p)
{
    if (p && --p->refs == 0)
        free(p);
}

const struct sockaddr *upstream_peer_addr(const upstream_peer *p)
{
    return (const struct sockaddr *)&p->addr;
}

const char *upstream_peer_text(const upstream_peer *p)
{
    return p->text;
}

static int us_listed(const upstream *u, const struct sockaddr_storage *a)
{
    for (size_t i = 0; i < u->nhosts; i++)
        for (size_t j = 0; j < u->hosts[i].naddrs; j++)
            if (us_addr_eq(&u->hosts[i].addrs[j], a))
                return 1;
    return 0;
}

static upstream_peer *us_find_peer(const upstream *u, const struct sockaddr_storage *a)
{
    for (size_t i = 0; i < u->npeers; i++)
        if (us_addr_eq(&u->peers[i]->addr, a))
            return u->peers[i];
    return NULL;
}

/* ---- removed instances that no longer answer ---- */

/* A removed instance may be draining (a graceful stop: its address still answers, with a
 * SYN-ACK or a refusal) or gone with its host (a killed container's network goes with it: no
 * packet to it is ever answered, and requests in flight there would wait for the read
 * timeout). One connection attempt within health_timeout tells which; for a gone one, every
 * exchange on it ends as if reset, so that the retry policy sends the idempotent ones (and those
 * not sent yet) to another instance. */
static void us_unpend(upstream *u);

typedef struct us_gone {
    upstream *u;
    struct sockaddr_storage addr;
    char text[64];
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t creq;
    int decided, nclosing;
} us_gone;

static void us_gone_close_cb(uv_handle_t *h)
{
    us_gone *g = h->data;
    upstream *u = g->u;
    if (--g->nclosing == 0) {
        free(g);
        us_unpend(u);
    }
}

static void us_gone_decide(us_gone *g, int answered)
{
    upstream *u = g->u;
    if (g->decided)
        return;
    g->decided = 1;
    if (!answered && !u->freeing && !us_find_peer(u, &g->addr)) {
        unsigned n = http_client_drop_peer(u->client, (const struct sockaddr *)&g->addr);
        log_warn(NULL,
                 "upstream %s: instance %s is gone (no answer within %u ms): %u request(s) "
                 "on it end as reset",
                 u->name, g->text, u->opts.health_timeout_ms, n);
    }
    g->nclosing = 2;
    uv_close((uv_handle_t *)&g->tcp, us_gone_close_cb);
    uv_close((uv_handle_t *)&g->timer, us_gone_close_cb);
}

static void us_gone_connect_cb(uv_connect_t *req, int status)
{
    us_gone *g = req->data;
    if (status == UV_ECANCELED)
        return; /* closed after the timer decided */
    us_gone_decide(g, status == 0 || status == UV_ECONNREFUSED);
}

static void us_gone_timer_cb(uv_timer_t *t)
{
    us_gone_decide(t->data, 0);
}

static void us_gone_check(upstream *u, const upstream_peer *p)
{
    if (u->freeing || !http_client_has_peer(u->client, (const struct sockaddr *)&p->addr))
        return;
    us_gone *g = xcalloc(1, sizeof *g);
    g->u = u;
    g->addr = p->addr;
    memcpy(g->text, p->text, sizeof g->text);
    uv_tcp_init(u->loop, &g->tcp);
    uv_timer_init(u->loop, &g->timer);
    g->tcp.data = g->timer.data = g->creq.data = g;
    u->pending++;
    uv_timer_start(&g->timer, us_gone_timer_cb, u->opts.health_timeout_ms, 0);
    /* a connect that cannot even start is left to the timer: it decides from the loop */
    uv_tcp_connect(&g->creq, &g->tcp, (const struct sockaddr *)&g->addr, us_gone_connect_cb);
}

/* Makes the peer set the union of every item's addresses. */
static void us_sync_peers(upstream *u)
{
    size_t i = 0;
    while (i < u->npeers) {
        upstream_peer *p = u->peers[i];
        if (us_listed(u, &p->addr)) {
            i++;
            continue;
        }
        log_info(NULL, "upstream %s: instance %s removed", u->name, p->text);
        memmove(&u->peers[i], &u->peers[i + 1], (u->npeers - i - 1) * sizeof *u->peers);
        u->npeers--;
        p->in_set = 0;
        us_gone_check(u, p);
        upstream_peer_release(p);
    }
    for (size_t h = 0; h < u->nhosts; h++) {
        for (size_t j = 0; j < u->hosts[h].naddrs; j++) {
            const struct sockaddr_storage *a = &u->hosts[h].addrs[j];
            upstream_peer *p;
            if (us_find_peer(u, a))
                continue;
            p = xcalloc(1, sizeof *p);
            memcpy(&p->addr, a, sizeof p->addr);
            net_addr_text((const struct sockaddr *)a, p->text, sizeof p->text);
            p->refs = 1;
            p->in_set = 1;
            if (u->npeers == u->cap) {
                u->cap = u->cap ? u->cap * 2 : 8;
                u->peers = xrealloc(u->peers, u->cap * sizeof *u->peers);
            }
            u->peers[u->npeers++] = p;
            log_info(NULL, "upstream %s: instance %s added", u->name, p->text);
        }
    }
}

/* ---- lifetime ---- */

static void us_destroy(upstream *u)
{
    for (size_t i = 0; i < u->npeers; i++) {
        u->peers[i]->in_set = 0;
        upstream_peer_release(u->peers[i]);
    }
    for (size_t i = 0; i < u->nhosts; i++) {
        free(u->hosts[i].host);
        free(u->hosts[i].addrs);
    }
    free(u->hosts);
    free(u->peers);
    free(u->health_path);
    free(u->name);
    free(u);
}

static void us_unpend(upstream *u)
{
    if (--u->pending == 0 && u->freeing)
        us_destroy(u);
}

static void us_close_cb(uv_handle_t *h)
{
    us_unpend(h->data);
}

/* ---- resolution ---- */

static void us_resolve(upstream *u);

static void us_first_round_check(upstream *u)
{
    us_fetch *f;
    if (u->first_round_done)
        return;
    for (size_t i = 0; i < u->nhosts; i++)
        if (!u->hosts[i].numeric && !u->hosts[i].answered)
            return;
    u->first_round_done = 1;
    f = u->waiting;
    u->waiting = NULL;
    /* Keep the order in which they came. */
    us_fetch *rev = NULL;
    while (f) {
        us_fetch *next = f->next;
        f->next = rev;
        rev = f;
        f = next;
    }
    while (rev) {
        us_fetch *next = rev->next;
        rev->next = NULL;
        us_fetch_go(rev);
        rev = next;
    }
    us_defer_arm(u);
}

static void us_resolved_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    us_host *h = req->data;
    upstream *u = h->u;
    h->resolving = 0;
    if (!u->freeing) {
        size_t n = 0;
        for (struct addrinfo *ai = res; status == 0 && ai; ai = ai->ai_next)
            if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
                n++;
        if (n > 0) {
            struct sockaddr_storage *addrs = xcalloc(1, n * sizeof *addrs);
            size_t k = 0;
            for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
                struct sockaddr_storage a;
                int dup = 0;
                if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
                    continue;
                memset(&a, 0, sizeof a);
                memcpy(&a, ai->ai_addr, ai->ai_addrlen);
                for (size_t j = 0; j < k; j++)
                    dup |= us_addr_eq(&addrs[j], &a);
                if (!dup)
                    addrs[k++] = a;
            }
            free(h->addrs);
            h->addrs = addrs;
            h->naddrs = k;
            if (h->failing)
                log_info(NULL, "upstream %s: %s resolves again", u->name, h->host);
            h->failing = 0;
            us_sync_peers(u);
        } else if (!h->failing) {
            h->failing = 1;
            log_warn(NULL, "upstream %s: cannot resolve %s (%s), keeping %zu address(es)", u->name,
                     h->host, status ? uv_strerror(status) : "no address", h->naddrs);
        }
        h->answered = 1;
        us_first_round_check(u);
    }
    uv_freeaddrinfo(res);
    us_unpend(u);
}

static void us_resolve(upstream *u)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    for (size_t i = 0; i < u->nhosts; i++) {
        us_host *h = &u->hosts[i];
        if (h->numeric || h->resolving)
            continue;
        h->req.data = h;
        if (uv_getaddrinfo(u->loop, &h->req, us_resolved_cb, h->host, h->port, &hints) == 0) {
            h->resolving = 1;
            u->pending++;
        } else {
            h->answered = 1; /* could not even start: as a failed answer */
        }
    }
    us_first_round_check(u);
}

static void us_resolve_tick(uv_timer_t *t)
{
    us_resolve(t->data);
}

/* ---- health ---- */

static int us_healthy(const upstream *u, const upstream_peer *p, uint64_t now)
{
    if (p->down_until > now)
        return 0;
    if (u->health_path && p->active_down)
        return 0;
    return 1;
}

void upstream_set_skip(upstream *u, upstream_skip_fn skip, void *ud)
{
    u->skip = skip;
    u->skip_ud = ud;
}

upstream_peer *upstream_pick(upstream *u, const upstream_peer *avoid)
{
    uint64_t now = uv_now(u->loop);
    upstream_peer *fallback = NULL;
    size_t n = u->npeers;
    for (size_t i = 0; i < n; i++) {
        size_t at = (u->rr + i) % n;
        upstream_peer *p = u->peers[at];
        if (!us_healthy(u, p, now) || (u->skip && u->skip(p, u->skip_ud)))
            continue;
        if (p == avoid) {
            fallback = p;
            continue;
        }
        u->rr = (at + 1) % n;
        p->refs++;
        return p;
    }
    if (fallback)
        fallback->refs++;
    return fallback;
}

void upstream_peer_failed(upstream *u, upstream_peer *p)
{
    uint64_t now = uv_now(u->loop);
    if (u->opts.max_fails == 0)
        return;
    if (p->fails == 0 || now - p->fail_start > u->opts.fail_timeout_ms) {
        p->fails = 0;
        p->fail_start = now;
    }
    if (++p->fails >= u->opts.max_fails) {
        if (p->down_until <= now)
            log_warn(NULL, "upstream %s: instance %s down for %u ms", u->name, p->text,
                     u->opts.fail_timeout_ms);
        p->down_until = now + u->opts.fail_timeout_ms;
        p->fails = 0;
    }
}

void upstream_peer_succeeded(upstream *u, upstream_peer *p)
{
    (void)u;
    p->fails = 0;
}

static void us_check_cb(hc_err err, const http_response *r, void *ud)
{
    us_check *ck = ud;
    upstream *u = ck->u;
    upstream_peer *p = ck->peer;
    p->checking = 0;
    if (!u->freeing && p->in_set && err != HC_ECANCELED) {
        if (err == HC_OK && r->status >= 200 && r->status < 400) {
            p->fall_n = 0;
            if (p->active_down && ++p->rise_n >= u->opts.rise) {
                p->active_down = 0;
                p->rise_n = 0;
                log_info(NULL, "upstream %s: instance %s is up (health check)", u->name, p->text);
            }
        } else {
            p->rise_n = 0;
            if (!p->active_down && ++p->fall_n >= u->opts.fall) {
                p->active_down = 1;
                p->fall_n = 0;
                log_warn(NULL, "upstream %s: instance %s is down (health check: %s)", u->name,
                         p->text, err == HC_OK ? "bad status" : hc_strerror(err));
            }
        }
    }
    upstream_peer_release(p);
    free(ck);
    us_unpend(u);
}

static void us_health_tick(uv_timer_t *t)
{
    upstream *u = t->data;
    for (size_t i = 0; i < u->npeers; i++) {
        upstream_peer *p = u->peers[i];
        us_check *ck;
        if (p->checking)
            continue;
        ck = xcalloc(1, sizeof *ck);
        ck->u = u;
        ck->peer = p;
        p->refs++;
        p->checking = 1;
        u->pending++;
        http_client_fetch(u->client, upstream_peer_addr(p), "GET", u->health_path, NULL, 0, NULL, 0,
                          u->opts.health_timeout_ms, us_check_cb, ck);
    }
}

/* ---- public ---- */

upstream *upstream_new(uv_loop_t *loop, http_client *client, const char *name, const char *servers,
                       const upstream_opts *opts)
{
    upstream *u;
    const char *s;
    size_t count = 1;
    if (!servers || !*servers)
        return NULL;
    for (s = servers; *s; s++)
        count += *s == ',';
    u = xcalloc(1, sizeof *u);
    u->loop = loop;
    u->client = client;
    u->name = xstrdup(name ? name : "upstream");
    if (opts)
        u->opts = *opts;
    else
        upstream_opts_default(&u->opts);
    if (u->opts.health_path)
        u->health_path = xstrdup(u->opts.health_path);
    u->opts.health_path = u->health_path;
    u->hosts = xcalloc(1, count * sizeof *u->hosts);
    s = servers;
    for (size_t i = 0; i < count; i++) {
        const char *end = strchr(s, ',');
        size_t n = end ? (size_t)(end - s) : strlen(s);
        u->hosts[i].u = u;
        u->nhosts = i + 1;
        if (us_parse_item(s, n, &u->hosts[i]) != 0) {
            us_destroy(u);
            return NULL;
        }
        s += n + 1;
    }
    us_sync_peers(u);

    uv_timer_init(loop, &u->resolve_timer);
    uv_timer_init(loop, &u->health_timer);
    uv_timer_init(loop, &u->defer_timer);
    u->resolve_timer.data = u->health_timer.data = u->defer_timer.data = u;
    u->pending = 3;
    if (u->opts.resolve_every_ms > 0)
        uv_timer_start(&u->resolve_timer, us_resolve_tick, u->opts.resolve_every_ms,
                       u->opts.resolve_every_ms);
    if (u->health_path && u->opts.health_interval_ms > 0)
        uv_timer_start(&u->health_timer, us_health_tick, u->opts.health_interval_ms,
                       u->opts.health_interval_ms);
    us_resolve(u);
    return u;
}

const char *upstream_name(const upstream *u)
{
    return u->name;
}

void upstream_counts(const upstream *u, unsigned *healthy, unsigned *total)
{
    uint64_t now = uv_now(u->loop);
    unsigned h = 0;
    for (size_t i = 0; i < u->npeers; i++)
        h += (unsigned)us_healthy(u, u->peers[i], now);
    if (healthy)
        *healthy = h;
    if (total)
        *total = (unsigned)u->npeers;
}

void upstream_each(const upstream *u, void (*fn)(const upstream_peer *p, int healthy, void *ud),
                   void *ud)
{
    uint64_t now = uv_now(u->loop);
    for (size_t i = 0; i < u->npeers; i++)
        fn(u->peers[i], us_healthy(u, u->peers[i], now), ud);
}

void upstream_free(upstream *u)
{
    if (!u || u->freeing)
        return;
    u->freeing = 1;
    while (u->waiting || u->deferred) {
        us_fetch *f = u->waiting ? u->waiting : u->deferred;
        if (f == u->waiting)
            u->waiting = f->next;
        else
            u->deferred = f->next;
        us_fetch_end(f, HC_ECANCELED, NULL);
    }
    for (size_t i = 0; i < u->nhosts; i++)
        if (u->hosts[i].resolving)
            uv_cancel((uv_req_t *)&u->hosts[i].req);
    uv_close((uv_handle_t *)&u->resolve_timer, us_close_cb);
    uv_close((uv_handle_t *)&u->health_timer, us_close_cb);
    uv_close((uv_handle_t *)&u->defer_timer, us_close_cb);
}

/* ---- buffered requests ---- */

int upstream_method_idempotent(const char *m)
{
    static const char *const idem[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
    for (size_t i = 0; i < sizeof idem / sizeof *idem; i++)
        if (strcmp(m, idem[i]) == 0)
            return 1;
    return 0;
}

/* A failure of the instance (5xx answers are answers; a malformed one is the peer's fault). */
static int us_is_failure(hc_err err)
{
    return err == HC_ECONNECT || err == HC_ETIMEOUT || err == HC_ERESET || err == HC_EPROTO;
}

static int us_retryable(hc_err err, const upstream_try *t)
{
    if (t->final || t->tries >= UPSTREAM_MAX_TRIES)
        return 0;
    if (err != HC_ECONNECT && err != HC_ETIMEOUT && err != HC_ERESET)
        return 0;
    return err == HC_ECONNECT || !t->sent ||
           (upstream_method_idempotent(t->method) && t->body_replayable);
}

/* The end of one try on p with err: reports it to passive health (HC_OK a success; refused,
 * timeout, reset and HC_EPROTO a failure), then, when the policy allows another try, returns
 * another healthy peer (the caller releases p); NULL when err is final. */
static upstream_peer *us_try_done(upstream *u, upstream_peer *p, hc_err err, const upstream_try *t)
{
    if (u->freeing)
        return NULL;
    if (err == HC_OK)
        upstream_peer_succeeded(u, p);
    else if (us_is_failure(err))
        upstream_peer_failed(u, p);
    if (!us_retryable(err, t))
        return NULL;
    upstream_peer *q = upstream_pick(u, p);
    if (q == p) {
        upstream_peer_release(q);
        return NULL;
    }
    return q;
}

static void us_req_copy(us_req *q, const char *method, const char *target,
                        const http_header *headers, size_t nheaders, const void *body,
                        size_t body_len)
{
    size_t ml = strlen(method) + 1, tl = strlen(target) + 1, size = ml + tl + body_len + 1;
    char *blob;
    for (size_t i = 0; i < nheaders; i++)
        size += strlen(headers[i].name) + strlen(headers[i].value) + 2;
    /* One block: method, target, body, then the header strings. */
    blob = q->method = xcalloc(1, size);
    memcpy(blob, method, ml);
    q->target = blob + ml;
    memcpy(q->target, target, tl);
    q->body = q->target + tl;
    if (body_len)
        memcpy(q->body, body, body_len);
    q->body_len = body_len;
    blob = q->body + body_len + 1;
    q->headers = xcalloc(1, (nheaders ? nheaders : 1) * sizeof *q->headers);
    q->nheaders = nheaders;
    for (size_t i = 0; i < nheaders; i++) {
        size_t nl = strlen(headers[i].name) + 1, vl = strlen(headers[i].value) + 1;
        memcpy(blob, headers[i].name, nl);
        q->headers[i].name = blob;
        blob += nl;
        memcpy(blob, headers[i].value, vl);
        q->headers[i].value = blob;
        blob += vl;
    }
}

static void us_req_free(us_req *q)
{
    free(q->headers);
    free(q->method);
}

static void us_fetch_end(us_fetch *f, hc_err err, const http_response *r)
{
    upstream *u = f->u;
    f->cb(err, r, f->ud);
    upstream_peer_release(f->peer);
    us_req_free(&f->r);
    free(f);
    us_unpend(u);
}

static void us_fetch_cb(hc_err err, const http_response *r, void *ud);

static void us_fetch_send(us_fetch *f, upstream_peer *p)
{
    f->peer = p;
    f->tries++;
    http_client_fetch(f->u->client, upstream_peer_addr(p), f->r.method, f->r.target, f->r.headers,
                      f->r.nheaders, f->r.body, f->r.body_len, f->timeout_ms, us_fetch_cb, f);
}

static void us_fetch_cb(hc_err err, const http_response *r, void *ud)
{
    us_fetch *f = ud;
    /* a buffered body is whole: an idempotent request may go again */
    upstream_try t = {f->r.method, (unsigned)f->tries, 1, 1, 0};
    upstream_peer *q = us_try_done(f->u, f->peer, err, &t);
    if (q) {
        upstream_peer_release(f->peer);
        us_fetch_send(f, q);
        return;
    }
    us_fetch_end(f, err, r);
}

/* Ends the deferred fetches, and the waiting ones whose time is up (the name did not resolve
 * in time: nothing was sent), with HC_ECONNECT. */
static void us_defer_tick(uv_timer_t *t)
{
    upstream *u = t->data;
    uint64_t now = uv_now(u->loop);
    us_fetch **pp = &u->waiting;
    while (*pp) {
        us_fetch *f = *pp;
        if (f->wait_until > now) {
            pp = &f->next;
            continue;
        }
        *pp = f->next;
        f->next = u->deferred;
        u->deferred = f;
    }
    while (u->deferred) {
        us_fetch *f = u->deferred;
        u->deferred = f->next;
        us_fetch_end(f, HC_ECONNECT, NULL);
    }
    if (!u->freeing)
        us_defer_arm(u);
}

static void us_defer_arm(upstream *u)
{
    uint64_t now = uv_now(u->loop), next = UINT64_MAX;
    if (u->deferred) {
        uv_timer_start(&u->defer_timer, us_defer_tick, 0, 0);
        return;
    }
    for (us_fetch *f = u->waiting; f; f = f->next)
        if (f->wait_until < next)
            next = f->wait_until;
    if (next == UINT64_MAX)
        uv_timer_stop(&u->defer_timer);
    else
        uv_timer_start(&u->defer_timer, us_defer_tick, next > now ? next - now : 0, 0);
}

/* No healthy instance: HC_ECONNECT from the loop (never inside the caller's call). */
static void us_fetch_defer(us_fetch *f)
{
    upstream *u = f->u;
    f->next = u->deferred;
    u->deferred = f;
    us_defer_arm(u);
}

static void us_fetch_go(us_fetch *f)
{
    upstream_peer *p = upstream_pick(f->u, NULL);
    if (p)
        us_fetch_send(f, p);
    else
        us_fetch_defer(f);
}

void upstream_fetch(upstream *u, const char *method, const char *target, const http_header *headers,
                    size_t nheaders, const void *body, size_t body_len, unsigned timeout_ms,
                    http_fetch_fn cb, void *ud)
{
    us_fetch *f = xcalloc(1, sizeof *f);
    us_req_copy(&f->r, method, target, headers, nheaders, body, body_len);
    f->u = u;
    f->timeout_ms = timeout_ms;
    f->cb = cb;
    f->ud = ud;
    u->pending++;
    if (!u->first_round_done) {
        f->wait_until = uv_now(u->loop) + (timeout_ms ? timeout_ms : 30000);
        f->next = u->waiting;
        u->waiting = f;
        us_defer_arm(u);
        return;
    }
    us_fetch_go(f);
}

/* ---- streamed requests ---- */

typedef struct us_xch {
    upstream *u;
    /* the request, borrowed from the caller until on_done */
    const char *method, *target;
    const http_header *headers;
    size_t nheaders;
    int64_t body_len;
    const upstream_exchange_cbs *cbs;
    void *ud;
    upstream_peer *peer;
    unsigned tries;
} us_xch;

static const http_exchange_cbs us_xch_cbs;

static void us_xch_end(us_xch *s, http_exchange *x, hc_err err)
{
    upstream *u = s->u;
    s->cbs->x.on_done(x, err, s->ud);
    upstream_peer_release(s->peer);
    free(s);
    us_unpend(u);
}

/* A try on p; 0, or -1 when the client is being freed (nothing started). */
static int us_xch_try(us_xch *s, upstream_peer *p)
{
    s->peer = p;
    s->tries++;
    http_exchange *x =
        http_exchange_start(s->u->client, upstream_peer_addr(p), s->method, s->target, s->headers,
                            s->nheaders, s->body_len, &us_xch_cbs, s);
    if (!x)
        return -1;
    s->cbs->on_try(x, p, s->ud);
    return 0;
}

static void us_xch_sent_head(http_exchange *x, void *ud)
{
    us_xch *s = ud;
    if (s->cbs->x.on_sent_head)
        s->cbs->x.on_sent_head(x, s->ud);
}

static int us_xch_response(http_exchange *x, int status, const http_header *h, size_t n, void *ud)
{
    us_xch *s = ud;
    return s->cbs->x.on_response ? s->cbs->x.on_response(x, status, h, n, s->ud) : 0;
}

static void us_xch_data(http_exchange *x, const char *data, size_t len, void *ud)
{
    us_xch *s = ud;
    if (s->cbs->x.on_data)
        s->cbs->x.on_data(x, data, len, s->ud);
}

static void us_xch_done(http_exchange *x, hc_err err, void *ud)
{
    us_xch *s = ud;
    upstream_try t = {s->method, s->tries, http_exchange_sent_any(x), s->body_len == 0,
                      s->cbs->no_retry(s->ud)};
    upstream_peer *q = us_try_done(s->u, s->peer, err, &t);
    if (!q) {
        us_xch_end(s, x, err);
        return;
    }
    upstream_peer_release(s->peer);
    if (us_xch_try(s, q) != 0)
        us_xch_end(s, NULL, HC_ECANCELED);
}

static const http_exchange_cbs us_xch_cbs = {us_xch_sent_head, us_xch_response, us_xch_data,
                                             us_xch_done};

int upstream_exchange_start(upstream *u, const char *method, const char *target,
                            const http_header *headers, size_t nheaders, int64_t body_len,
                            const upstream_exchange_cbs *cbs, void *ud)
{
    upstream_peer *p = upstream_pick(u, NULL);
    if (!p)
        return UPSTREAM_ENOPEER;
    us_xch *s = xcalloc(1, sizeof *s);
    s->method = method;
    s->target = target;
    s->headers = headers;
    s->nheaders = nheaders;
    s->u = u;
    s->body_len = body_len;
    s->cbs = cbs;
    s->ud = ud;
    if (us_xch_try(s, p) != 0) {
        upstream_peer_release(p);
        free(s);
        return UPSTREAM_ECLOSING;
    }
    u->pending++;
    return 0;
}
