/* upstream_driver: the C driver of tests/integration/test_http_client.py. It runs one scenario
 * (argv[1]) of the HTTP client / upstream pool against the instances that the Python side
 * started, asks its control server (TU_CTL) what the instances saw, and prints
 * "PASS client/<scenario>" or "FAIL ..." lines. Environment: TU_CTL, TU_PORTS (a,b,c),
 * TU_DEAD (a port nobody listens on), TU_DNS_NAME and TU_DNS_PORT (DNS scenario).
 * Without arguments (tests/run starts every build/tests/test_* as a unit test) it runs the
 * scenario that needs no server: parse. */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <zlib.h>

#include "http_client.h"
#include "test.h"
#include "upstream.h"

static uv_loop_t loop_s, *loop = &loop_s;
static int ctl_port, ports[3], dead_port, dns_port;
static const char *dns_name;
static http_client *ctl_client;

/* ---- the loop ---- */

static void flag_cb(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

static void closed_cb(uv_handle_t *h)
{
    *(int *)h->data = 1;
}

/* Runs the loop until *flag or ms elapsed; returns *flag. */
static int run_until(const int *flag, unsigned ms)
{
    int expired = 0, closed = 0;
    uv_timer_t t;
    uv_timer_init(loop, &t);
    t.data = &expired;
    uv_timer_start(&t, flag_cb, ms, 0);
    while (!*flag && !expired)
        uv_run(loop, UV_RUN_ONCE);
    t.data = &closed;
    uv_close((uv_handle_t *)&t, closed_cb);
    while (!closed)
        uv_run(loop, UV_RUN_NOWAIT);
    return *flag;
}

static void sleep_ms(unsigned ms)
{
    int never = 0;
    run_until(&never, ms);
}

static double now_ms(void)
{
    return (double)uv_hrtime() / 1e6;
}

static const struct sockaddr *addr_port(const char *ip, int port)
{
    static struct sockaddr_in a[8];
    static int next;
    struct sockaddr_in *s = &a[next++ % 8];
    uv_ip4_addr(ip, port, s);
    return (const struct sockaddr *)s;
}

static const struct sockaddr *inst(int i)
{
    return addr_port("127.0.0.1", ports[i]);
}

/* ---- buffered fetches, waited for ---- */

typedef struct fres {
    int done, calls;
    hc_err err;
    int status;
    char *body;
    size_t len;
    char instance[32], crc[32], clen[32];
} fres;

static void fres_cb(hc_err err, const http_response *r, void *ud)
{
    fres *f = ud;
    const char *v;
    f->done = 1;
    f->calls++;
    f->err = err;
    if (!r)
        return;
    f->status = r->status;
    f->len = r->body_len;
    f->body = malloc(r->body_len + 1);
    memcpy(f->body, r->body, r->body_len + 1);
    if ((v = http_response_header(r, "x-instance")))
        snprintf(f->instance, 32, "%s", v);
    if ((v = http_response_header(r, "X-CRC32")))
        snprintf(f->crc, 32, "%s", v);
    if ((v = http_response_header(r, "content-length")))
        snprintf(f->clen, 32, "%s", v);
}

static void fres_clear(fres *f)
{
    free(f->body);
    memset(f, 0, sizeof *f);
}

static fres fetch_at(http_client *c, const struct sockaddr *a, const char *method,
                     const char *target, const char *body, size_t len, unsigned timeout_ms)
{
    fres f = {0};
    http_client_fetch(c, a, method, target, NULL, 0, body, len, timeout_ms, fres_cb, &f);
    if (!run_until(&f.done, 20000))
        printf("  fetch %s %s did not end\n", method, target);
    return f;
}

static fres ufetch(upstream *u, const char *method, const char *target)
{
    fres f = {0};
    upstream_fetch(u, method, target, NULL, 0, method[0] == 'P' ? "x" : NULL,
                   method[0] == 'P' ? 1 : 0, 5000, fres_cb, &f);
    if (!run_until(&f.done, 20000))
        printf("  upstream fetch %s did not end\n", target);
    return f;
}

/* ---- the control server ---- */

static json_t *ctl(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *ctl(const char *fmt, ...)
{
    char path[256];
    va_list ap;
    json_t *j = NULL;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    fres f = fetch_at(ctl_client, addr_port("127.0.0.1", ctl_port), "GET", path, NULL, 0, 10000);
    if (f.err == HC_OK && f.status == 200)
        j = json_loads(f.body, 0, NULL);
    if (!j)
        printf("  control %s failed: %s %d\n", path, hc_strerror(f.err), f.status);
    fres_clear(&f);
    return j;
}

static void ctl_do(const char *what, const char *name)
{
    json_decref(ctl("/%s?name=%s", what, name));
}

static long stat_conns(const char *name)
{
    json_t *j = ctl("/stats");
    long n = j ? (long)json_integer_value(json_object_get(json_object_get(j, name), "conns")) : -1;
    json_decref(j);
    return n;
}

static long stat_path(const char *name, const char *key)
{
    json_t *j = ctl("/stats");
    json_t *paths = j ? json_object_get(json_object_get(j, name), "paths") : NULL;
    long n = j ? (long)json_integer_value(json_object_get(paths, key)) : -1;
    json_decref(j);
    return n;
}

static http_client *client_with(unsigned read_ms, unsigned idle_ms, unsigned max_idle,
                                size_t max_response)
{
    http_client_opts o;
    http_client_opts_default(&o);
    if (read_ms)
        o.read_timeout_ms = read_ms;
    if (idle_ms)
        o.idle_timeout_ms = idle_ms;
    o.max_idle_per_peer = max_idle;
    if (max_response)
        o.max_response = max_response;
    return http_client_new(loop, &o);
}

static http_client *client_default(void)
{
    return http_client_new(loop, NULL);
}

/* ---- client scenarios ---- */

static void fetch_get(void)
{
    http_client *c = client_default();
    fres f = fetch_at(c, inst(0), "GET", "/whoami", NULL, 0, 0);
    CHECK_INT(f.err, HC_OK);
    CHECK_INT(f.status, 200);
    CHECK_STR(f.body, "a");
    CHECK_STR(f.instance, "a");
    CHECK_INT(f.calls, 1);
    fres_clear(&f);
    f = fetch_at(c, inst(0), "GET", "/nowhere", NULL, 0, 0);
    CHECK_INT(f.err, HC_OK);
    CHECK_INT(f.status, 404);
    fres_clear(&f);
    http_client_free(c);
}

static void fetch_post(void)
{
    http_client *c = client_default();
    size_t n = 200 * 1024;
    char *body = malloc(n);
    for (size_t i = 0; i < n; i++)
        body[i] = (char)('a' + i % 26);
    fres f = fetch_at(c, inst(0), "POST", "/echo", body, n, 0);
    CHECK_INT(f.err, HC_OK);
    CHECK_INT(f.status, 200);
    CHECK_INT(f.len, n);
    CHECK(f.body && memcmp(f.body, body, n) == 0);
    fres_clear(&f);
    f = fetch_at(c, inst(0), "POST", "/echo", NULL, 0, 0); /* Content-Length: 0 */
    CHECK_INT(f.err, HC_OK);
    CHECK_INT(f.status, 200);
    CHECK_INT(f.len, 0);
    fres_clear(&f);
    free(body);
    http_client_free(c);
}

static void keepalive(void)
{
    http_client *c = client_default();
    for (int i = 0; i < 5; i++) {
        fres f = fetch_at(c, inst(0), "GET", "/whoami", NULL, 0, 0);
        CHECK_INT(f.err, HC_OK);
        CHECK_STR(f.body, "a");
        fres_clear(&f);
    }
    CHECK_INT(stat_path("a", "GET /whoami"), 5);
    CHECK_INT(stat_conns("a"), 1);
    http_client_free(c);
}

static void chunked(void)
{
    http_client *c = client_default();
    char want[4096] = "";
    for (int i = 0; i < 50; i++)
        snprintf(want + strlen(want), 32, "chunk-%d\n", i);
    fres f = fetch_at(c, inst(0), "GET", "/chunked?n=50", NULL, 0, 0);
    CHECK_INT(f.err, HC_OK);
    CHECK_INT(f.status, 200);
    CHECK_STR(f.body, want);
    fres_clear(&f);
    /* The trailer was consumed: the connection serves the next request. */
    f = fetch_at(c, inst(0), "GET", "/whoami", NULL, 0, 0);
    CHECK_STR(f.body, "a");
    fres_clear(&f);
    CHECK_INT(stat_conns("a"), 1);
    http_client_free(c);
}

static void head(void)
{
    http_client *c = client_default();
    fres f = fetch_at(c, inst(0), "HEAD", "/whoami", NULL, 0, 2000);
    CHECK_INT(f.err, HC_OK);
    CHECK_INT(f.status, 200);
    CHECK_INT(f.len, 0);
    CHECK_STR(f.clen, "1");
    fres_clear(&f);
    f = fetch_at(c, inst(0), "GET", "/whoami", NULL, 0, 2000);
    CHECK_INT(f.err, HC_OK);
    CHECK_STR(f.body, "a");
    fres_clear(&f);
    CHECK_INT(stat_conns("a"), 1);
    http_client_free(c);
}

static void no_body_status(void)
{
    http_client *c = client_default();
    fres f = fetch_at(c, inst(0), "GET", "/status?code=204", NULL, 0, 2000);
    CHECK_INT(f.err, HC_OK);
    CHECK_INT(f.status, 204);
    CHECK_INT(f.len, 0);
    fres_clear(&f);
    f = fetch_at(c, inst(0), "GET", "/status?code=304", NULL, 0, 2000);
    CHECK_INT(f.err, HC_OK);
    CHECK_INT(f.status, 304);
    CHECK_INT(f.len, 0);
    fres_clear(&f);
    f = fetch_at(c, inst(0), "GET", "/whoami", NULL, 0, 2000);
    CHECK_STR(f.body, "a");
    fres_clear(&f);
    CHECK_INT(stat_conns("a"), 1);
    http_client_free(c);
}

static void too_big(void)
{
    http_client *c = client_with(0, 0, 32, 1 << 20);
    fres f = fetch_at(c, inst(0), "GET", "/big?size=2097152", NULL, 0, 0);
    CHECK_INT(f.err, HC_ETOOBIG);
    CHECK(f.body == NULL);
    fres_clear(&f);
    f = fetch_at(c, inst(0), "GET", "/big?size=2097152&chunked=1", NULL, 0, 0);
    CHECK_INT(f.err, HC_ETOOBIG);
    fres_clear(&f);
    f = fetch_at(c, inst(0), "GET", "/big?size=524288", NULL, 0, 0);
    CHECK_INT(f.err, HC_OK);
    CHECK_INT(f.len, 524288);
    if (f.body) {
        char crc[32];
        snprintf(crc, sizeof crc, "%lu", crc32(0, (const Bytef *)f.body, (uInt)f.len));
        CHECK_STR(crc, f.crc);
    }
    fres_clear(&f);
    http_client_free(c);
}

static void connect_refused(void)
{
    http_client *c = client_default();
    double t0 = now_ms();
    fres f = fetch_at(c, addr_port("127.0.0.1", dead_port), "GET", "/", NULL, 0, 0);
    CHECK_INT(f.err, HC_ECONNECT);
    CHECK(now_ms() - t0 < 500);
    fres_clear(&f);

    /* Through an upstream: tried once and marked down, then no instance is healthy and the
     * answer comes without trying, from the loop. */
    char spec[64];
    snprintf(spec, sizeof spec, "127.0.0.1:%d", dead_port);
    upstream *u = upstream_new(loop, c, "dead", spec, NULL);
    CHECK(u != NULL);
    f = ufetch(u, "GET", "/");
    CHECK_INT(f.err, HC_ECONNECT);
    fres_clear(&f);
    unsigned healthy = 9, total = 9;
    upstream_counts(u, &healthy, &total);
    CHECK_INT(healthy, 0);
    CHECK_INT(total, 1);
    upstream_fetch(u, "GET", "/", NULL, 0, NULL, 0, 1000, fres_cb, &f);
    CHECK_INT(f.done, 0);
    run_until(&f.done, 2000);
    CHECK_INT(f.err, HC_ECONNECT);
    fres_clear(&f);
    upstream_free(u);
    http_client_free(c);
}

static void read_timeout(void)
{
    http_client *c = client_with(300, 0, 32, 0);
    double t0 = now_ms(), el;
    fres f = fetch_at(c, inst(0), "GET", "/slow?ms=3000", NULL, 0, 0);
    el = now_ms() - t0;
    CHECK_INT(f.err, HC_ETIMEOUT);
    CHECK(el >= 250 && el < 1500);
    fres_clear(&f);
    http_client_free(c);

    /* fetch's own timeout bounds the whole exchange. */
    c = client_default();
    t0 = now_ms();
    f = fetch_at(c, inst(0), "GET", "/slow?ms=3000", NULL, 0, 200);
    el = now_ms() - t0;
    CHECK_INT(f.err, HC_ETIMEOUT);
    CHECK(el >= 150 && el < 1200);
    fres_clear(&f);
    http_client_free(c);
}

static void stale_retry(void)
{
    http_client *c = client_default();
    fres f = fetch_at(c, inst(0), "GET", "/whoami", NULL, 0, 0);
    CHECK_STR(f.body, "a");
    fres_clear(&f);
    /* Sent on the pooled connection, which the server closes without answering: sent again on
     * a fresh one. */
    f = fetch_at(c, inst(0), "GET", "/drop-reused", NULL, 0, 0);
    CHECK_INT(f.err, HC_OK);
    CHECK_STR(f.body, "fresh:");
    fres_clear(&f);
    CHECK_INT(stat_path("a", "GET /drop-reused"), 2);
    /* The same with a body, which is sent again. */
    f = fetch_at(c, inst(0), "POST", "/drop-reused", "hello", 5, 0);
    CHECK_INT(f.err, HC_OK);
    CHECK_STR(f.body, "fresh:hello");
    fres_clear(&f);
    CHECK_INT(stat_path("a", "POST /drop-reused"), 2);
    CHECK_INT(stat_conns("a"), 3);
    http_client_free(c);
}

static void idle_close(void)
{
    http_client *c = client_with(0, 200, 32, 0);
    fres f = fetch_at(c, inst(0), "GET", "/whoami", NULL, 0, 0);
    CHECK_INT(f.err, HC_OK);
    fres_clear(&f);
    sleep_ms(500); /* past the idle timeout: closed by us */
    f = fetch_at(c, inst(0), "GET", "/whoami", NULL, 0, 0);
    CHECK_INT(f.err, HC_OK);
    fres_clear(&f);
    CHECK_INT(stat_conns("a"), 2);
    http_client_free(c);

    /* The server closes the idle connection: noticed while idle, the next request is fine. */
    c = client_default();
    f = fetch_at(c, inst(0), "GET", "/whoami", NULL, 0, 0);
    fres_clear(&f);
    ctl_do("dropconns", "a");
    sleep_ms(100);
    f = fetch_at(c, inst(0), "GET", "/whoami", NULL, 0, 0);
    CHECK_INT(f.err, HC_OK);
    CHECK_STR(f.body, "a");
    fres_clear(&f);
    CHECK_INT(stat_conns("a"), 4);
    CHECK_INT(stat_path("a", "GET /whoami"), 4);
    http_client_free(c);
}

static void max_idle(void)
{
    http_client *c = client_with(0, 0, 1, 0);
    for (int round = 0; round < 2; round++) {
        fres f[3] = {{0}};
        int all = 0;
        for (int i = 0; i < 3; i++)
            http_client_fetch(c, inst(0), "GET", "/slow?ms=100", NULL, 0, NULL, 0, 0, fres_cb,
                              &f[i]);
        for (int i = 0; i < 3; i++) {
            run_until(&f[i].done, 5000);
            all += f[i].err == HC_OK && f[i].status == 200;
            fres_clear(&f[i]);
        }
        CHECK_INT(all, 3);
    }
    /* 3 connections, one kept; the second round reuses it and opens 2. */
    CHECK_INT(stat_conns("a"), 5);
    http_client_free(c);
}

static void bad_request(void)
{
    http_client *c = client_default();
    fres f = {0};
    http_header h[1] = {{"X-Bad", "a\r\nInjected: yes"}};
    http_client_fetch(c, inst(0), "GET", "/whoami", h, 1, NULL, 0, 0, fres_cb, &f);
    CHECK_INT(f.done, 0); /* reported from the loop */
    run_until(&f.done, 2000);
    CHECK_INT(f.err, HC_EPROTO);
    fres_clear(&f);
    http_client_fetch(c, inst(0), "GET", "/who ami", NULL, 0, NULL, 0, 0, fres_cb, &f);
    run_until(&f.done, 2000);
    CHECK_INT(f.err, HC_EPROTO);
    fres_clear(&f);
    CHECK_INT(stat_conns("a"), 0);
    /* A caller's Host is kept; a good request still works. */
    http_header host[1] = {{"Host", "svc-auth:3000"}};
    http_client_fetch(c, inst(0), "GET", "/whoami", host, 1, NULL, 0, 0, fres_cb, &f);
    run_until(&f.done, 2000);
    CHECK_INT(f.err, HC_OK);
    CHECK_STR(f.body, "a");
    fres_clear(&f);
    http_client_free(c);
}

/* ---- streaming ---- */

typedef struct xst {
    int done, dones, heads, status, writes_ok, writes_bad;
    hc_err err;
    char body[4096];
    size_t blen;
    int abort_on_response;
} xst;

static void xst_head(http_exchange *x, void *ud)
{
    (void)x;
    ((xst *)ud)->heads++;
}

static int xst_response(http_exchange *x, int status, const http_header *h, size_t n, void *ud)
{
    xst *s = ud;
    (void)x, (void)h, (void)n;
    s->status = status;
    return s->abort_on_response ? -1 : 0;
}

static void xst_data(http_exchange *x, const char *d, size_t n, void *ud)
{
    xst *s = ud;
    (void)x;
    if (s->blen + n < sizeof s->body)
        memcpy(s->body + s->blen, d, n);
    s->blen += n;
    if (s->blen < sizeof s->body)
        s->body[s->blen] = '\0';
}

static void xst_done(http_exchange *x, hc_err err, void *ud)
{
    xst *s = ud;
    (void)x;
    s->done = 1;
    s->dones++;
    s->err = err;
}

static void xst_wrote(http_exchange *x, int status, void *ud)
{
    xst *s = ud;
    (void)x;
    if (status == 0)
        s->writes_ok++;
    else
        s->writes_bad++;
}

static const http_exchange_cbs xst_cbs = {xst_head, xst_response, xst_data, xst_done};

static void exchange_length(void)
{
    http_client *c = client_default();
    xst s = {0};
    http_exchange *x = http_exchange_start(c, inst(0), "POST", "/echo", NULL, 0, 11, &xst_cbs, &s);
    CHECK(x != NULL);
    CHECK_INT(http_exchange_write(x, "hello ", 6, xst_wrote, &s), 0);
    CHECK_INT(http_exchange_write(x, "world", 5, xst_wrote, &s), 0);
    CHECK(http_exchange_write(x, "!", 1, xst_wrote, &s) != 0); /* past Content-Length */
    http_exchange_end_body(x);
    run_until(&s.done, 5000);
    CHECK_INT(s.err, HC_OK);
    CHECK_INT(s.status, 200);
    CHECK_STR(s.body, "hello world");
    CHECK_INT(s.heads, 1);
    CHECK_INT(s.writes_ok, 2);
    CHECK_INT(s.dones, 1);

    /* Chunked, the body written after the head went out. */
    memset(&s, 0, sizeof s);
    x = http_exchange_start(c, inst(0), "POST", "/echo", NULL, 0, -1, &xst_cbs, &s);
    sleep_ms(50);
    CHECK_INT(s.heads, 1);
    CHECK(http_exchange_sent_any(x));
    CHECK_INT(http_exchange_write(x, "abc", 3, xst_wrote, &s), 0);
    CHECK_INT(http_exchange_write(x, "def", 3, xst_wrote, &s), 0);
    http_exchange_end_body(x);
    run_until(&s.done, 5000);
    CHECK_INT(s.err, HC_OK);
    CHECK_STR(s.body, "abcdef");
    CHECK_INT(s.writes_ok, 2);
    CHECK_INT(stat_conns("a"), 1);
    http_client_free(c);
}

static void exchange_abort(void)
{
    http_client *c = client_default();
    xst s = {0};
    http_exchange *x =
        http_exchange_start(c, inst(0), "GET", "/slow?ms=3000", NULL, 0, 0, &xst_cbs, &s);
    sleep_ms(100);
    http_exchange_abort(x);
    CHECK_INT(s.done, 1); /* on_done before abort returns */
    CHECK_INT(s.err, HC_ECANCELED);
    sleep_ms(100);
    CHECK_INT(s.dones, 1);

    /* on_response returning -1 aborts too. */
    memset(&s, 0, sizeof s);
    s.abort_on_response = 1;
    http_exchange_start(c, inst(0), "GET", "/whoami", NULL, 0, 0, &xst_cbs, &s);
    run_until(&s.done, 5000);
    CHECK_INT(s.err, HC_ECANCELED);
    CHECK_INT(s.status, 200);
    CHECK_INT(s.dones, 1);

    /* Writes not yet done when the exchange ends get their callback first. */
    memset(&s, 0, sizeof s);
    x = http_exchange_start(c, addr_port("127.0.0.1", dead_port), "POST", "/", NULL, 0, -1,
                            &xst_cbs, &s);
    http_exchange_write(x, "abc", 3, xst_wrote, &s);
    run_until(&s.done, 5000);
    CHECK_INT(s.err, HC_ECONNECT);
    CHECK_INT(s.writes_bad, 1);
    http_client_free(c);
}

static void free_inflight(void)
{
    http_client *c = client_default();
    fres f = {0}, g = {0};
    http_client_fetch(c, inst(0), "GET", "/slow?ms=3000", NULL, 0, NULL, 0, 0, fres_cb, &f);
    http_client_fetch(c, inst(1), "GET", "/whoami", NULL, 0, NULL, 0, 0, fres_cb, &g);
    run_until(&g.done, 5000); /* g's connection is now idle in the pool */
    sleep_ms(100);
    http_client_free(c);
    CHECK_INT(f.calls, 1);
    CHECK_INT(f.err, HC_ECANCELED);
    CHECK_INT(g.err, HC_OK);
    fres_clear(&f);
    fres_clear(&g);
}

typedef struct up_state {
    http_exchange *x;
    char *buf;
    size_t chunk, total, sent, acked;
    unsigned inflight;
    int ended, bad, done;
    hc_err err;
    int status;
    char body[256];
    size_t blen;
    uLong crc;
} up_state;

static void up_pump(up_state *u);

static void up_wrote(http_exchange *x, int status, void *ud)
{
    up_state *u = ud;
    (void)x;
    u->inflight--;
    if (status != 0) {
        u->bad++;
        return;
    }
    u->acked += u->chunk;
    up_pump(u);
}

static void up_pump(up_state *u)
{
    while (u->inflight < 2 && u->sent < u->total) {
        if (http_exchange_write(u->x, u->buf, u->chunk, up_wrote, u) != 0) {
            u->bad++;
            return;
        }
        u->crc = crc32(u->crc, (const Bytef *)u->buf, (uInt)u->chunk);
        u->sent += u->chunk;
        u->inflight++;
    }
    if (u->sent == u->total && !u->ended) {
        u->ended = 1;
        http_exchange_end_body(u->x);
    }
}

static int up_response(http_exchange *x, int status, const http_header *h, size_t n, void *ud)
{
    (void)x, (void)h, (void)n;
    ((up_state *)ud)->status = status;
    return 0;
}

static void up_data(http_exchange *x, const char *d, size_t n, void *ud)
{
    up_state *u = ud;
    (void)x;
    if (u->blen + n < sizeof u->body)
        memcpy(u->body + u->blen, d, n);
    u->blen += n;
}

static void up_done(http_exchange *x, hc_err err, void *ud)
{
    up_state *u = ud;
    (void)x;
    u->done = 1;
    u->err = err;
}

static void stream_upload(void)
{
    static const http_exchange_cbs cbs = {NULL, up_response, up_data, up_done};
    http_client *c = client_default();
    up_state u = {0};
    json_t *j;
    u.chunk = 256 * 1024;
    u.total = 50u << 20;
    u.buf = malloc(u.chunk);
    for (size_t i = 0; i < u.chunk; i++)
        u.buf[i] = (char)(i * 7 + i / 251);
    u.crc = crc32(0, NULL, 0);
    /* The server sleeps 1.5 s before reading: writes must stall, not pile up. */
    u.x = http_exchange_start(c, inst(0), "POST", "/count?stall_ms=1500", NULL, 0, -1, &cbs, &u);
    up_pump(&u);
    sleep_ms(1000);
    printf("  acknowledged while the server was not reading: %zu bytes\n", u.acked);
    CHECK(u.acked < (24u << 20));
    CHECK(u.sent <= u.acked + 2 * u.chunk);
    run_until(&u.done, 120000);
    CHECK_INT(u.err, HC_OK);
    CHECK_INT(u.status, 200);
    CHECK_INT(u.bad, 0);
    CHECK_INT(u.acked, u.total);
    u.body[u.blen < sizeof u.body ? u.blen : sizeof u.body - 1] = '\0';
    j = json_loads(u.body, 0, NULL);
    CHECK(j != NULL);
    CHECK_INT(json_integer_value(json_object_get(j, "bytes")), u.total);
    CHECK_INT(json_integer_value(json_object_get(j, "crc")), u.crc);
    json_decref(j);
    free(u.buf);
    http_client_free(c);
}

typedef struct dl_state {
    http_exchange *x;
    uv_timer_t t;
    size_t got, since, every;
    uLong crc;
    int paused, pauses, while_paused, done, status;
    hc_err err;
    char crc_hdr[32];
} dl_state;

static void dl_resume(uv_timer_t *t)
{
    dl_state *d = t->data;
    if (d->done)
        return;
    d->paused = 0;
    http_exchange_resume(d->x);
}

static int dl_response(http_exchange *x, int status, const http_header *h, size_t n, void *ud)
{
    dl_state *d = ud;
    (void)x;
    d->status = status;
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(h[i].name, "x-crc32") == 0)
            snprintf(d->crc_hdr, 32, "%s", h[i].value);
    return 0;
}

static void dl_data(http_exchange *x, const char *p, size_t n, void *ud)
{
    dl_state *d = ud;
    if (d->paused)
        d->while_paused++;
    d->got += n;
    d->since += n;
    d->crc = crc32(d->crc, (const Bytef *)p, (uInt)n);
    if (d->since >= d->every) {
        d->since = 0;
        d->paused = 1;
        d->pauses++;
        http_exchange_pause(x);
        uv_timer_start(&d->t, dl_resume, 5, 0);
    }
}

static void dl_done(http_exchange *x, hc_err err, void *ud)
{
    dl_state *d = ud;
    (void)x;
    d->done = 1;
    d->err = err;
    uv_timer_stop(&d->t);
}

/* Downloads size bytes pausing every `every` bytes for 5 ms; checks what arrived. */
static void download(http_client *c, size_t size, size_t every, const char *how)
{
    static const http_exchange_cbs cbs = {NULL, dl_response, dl_data, dl_done};
    dl_state d = {0};
    int closed = 0;
    char path[80], crc[32];
    double t0 = now_ms();
    uv_timer_init(loop, &d.t);
    d.t.data = &d;
    d.every = every;
    d.crc = crc32(0, NULL, 0);
    snprintf(path, sizeof path, "/big?size=%zu%s", size, how);
    d.x = http_exchange_start(c, inst(0), "GET", path, NULL, 0, 0, &cbs, &d);
    run_until(&d.done, 60000);
    printf("  %zu bytes, %d pauses, %.0f ms\n", d.got, d.pauses, now_ms() - t0);
    CHECK_INT(d.err, HC_OK);
    CHECK_INT(d.status, 200);
    CHECK_INT(d.got, size);
    snprintf(crc, sizeof crc, "%lu", d.crc);
    CHECK_STR(crc, d.crc_hdr);
    CHECK(d.pauses >= (every == 1 ? 3 : (int)(size / every) / 2));
    CHECK_INT(d.while_paused, 0);
    d.t.data = &closed;
    uv_close((uv_handle_t *)&d.t, closed_cb);
    run_until(&closed, 1000);
}

static void stream_download(void)
{
    http_client *c = client_with(5000, 0, 32, 0); /* a stall fails in 5 s, not 30 */
    download(c, 32u << 20, 1u << 20, "");
    /* Paused after every piece, so also right after the last byte of the body. */
    download(c, 300000, 1, "");
    download(c, 300000, 1, "&chunked=1");
    /* After all that, the connection went back to the pool. */
    fres f = fetch_at(c, inst(0), "GET", "/whoami", NULL, 0, 0);
    CHECK_STR(f.body, "a");
    fres_clear(&f);
    CHECK_INT(stat_conns("a"), 1);
    http_client_free(c);
}

/* ---- upstream scenarios ---- */

static upstream *three(http_client *c, const upstream_opts *o)
{
    char spec[128];
    snprintf(spec, sizeof spec, "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", ports[0], ports[1],
             ports[2]);
    return upstream_new(loop, c, "three", spec, o);
}

/* n GET /whoami through u; counts answers per instance a/b/c; returns failures. */
static int spread(upstream *u, int n, int count[3])
{
    int failed = 0;
    for (int i = 0; i < n; i++) {
        fres f = ufetch(u, "GET", "/whoami");
        if (f.err != HC_OK || f.status != 200 || !f.body || strlen(f.body) != 1 ||
            f.body[0] < 'a' || f.body[0] > 'c') {
            printf("  request %d failed: %s %d\n", i, hc_strerror(f.err), f.status);
            failed++;
        } else {
            count[f.body[0] - 'a']++;
        }
        fres_clear(&f);
    }
    return failed;
}

static void parse(void)
{
    static const char *bad[] = {
        "",         "host",    "host:",    ":80",      "host:0",     "host:65536",
        "host:80x", "host:-1", "[::1]",    "[::1]:",   "[::1:80",    "::1:80",
        "a:1,",     ",a:1",    "a:1,,b:2", "ho st:80", "[notip]:80", "a:b:80"};
    http_client *c = client_default();
    unsigned healthy, total;
    upstream *u;
    CHECK(upstream_new(loop, c, "x", NULL, NULL) == NULL);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        u = upstream_new(loop, c, "x", bad[i], NULL);
        if (u)
            printf("  accepted \"%s\"\n", bad[i]);
        CHECK(u == NULL);
    }
    /* Literal addresses are peers at once; duplicates count once. */
    u = upstream_new(loop, c, "lit", " 127.0.0.1:5 , [::1]:6,127.0.0.1:5", NULL);
    CHECK(u != NULL);
    upstream_counts(u, &healthy, &total);
    CHECK_INT(total, 2);
    CHECK_INT(healthy, 2);
    upstream_peer *p = upstream_pick(u, NULL), *q = upstream_pick(u, NULL);
    CHECK_STR(upstream_peer_text(p), "127.0.0.1:5");
    CHECK_STR(upstream_peer_text(q), "[::1]:6");
    CHECK(upstream_pick(u, p) == q); /* avoid p */
    upstream_peer_release(q);
    CHECK(upstream_pick(u, p) == q);
    upstream_peer_release(q);
    CHECK_STR(upstream_name(u), "lit");
    upstream_free(u);
    sleep_ms(50); /* the upstream is gone now */
    /* Picked peers outlive their upstream until released. */
    CHECK_STR(upstream_peer_text(p), "127.0.0.1:5");
    upstream_peer_release(p);
    upstream_peer_release(q);
    http_client_free(c);
}

static void round_robin(void)
{
    http_client *c = client_default();
    upstream *u = three(c, NULL);
    int count[3] = {0};
    unsigned healthy, total;
    CHECK_INT(spread(u, 30, count), 0);
    CHECK_INT(count[0], 10);
    CHECK_INT(count[1], 10);
    CHECK_INT(count[2], 10);
    upstream_counts(u, &healthy, &total);
    CHECK_INT(healthy, 3);
    CHECK_INT(total, 3);
    CHECK_INT(stat_path("b", "GET /whoami"), 10);
    upstream_free(u);
    http_client_free(c);
}

static void failover(void)
{
    http_client *c = client_default();
    upstream *u = three(c, NULL);
    int count[3] = {0};
    unsigned healthy, total;
    CHECK_INT(spread(u, 3, count), 0); /* connections to every instance are pooled */
    ctl_do("kill", "b");
    memset(count, 0, sizeof count);
    CHECK_INT(spread(u, 30, count), 0);
    CHECK_INT(count[1], 0);
    CHECK_INT(count[0] + count[2], 30);
    CHECK(count[0] >= 14 && count[2] >= 14);
    upstream_counts(u, &healthy, &total);
    CHECK_INT(healthy, 2);
    CHECK_INT(total, 3);
    upstream_free(u);
    http_client_free(c);
}

static void passive_comeback(void)
{
    http_client *c = client_default();
    upstream_opts o;
    upstream_opts_default(&o);
    o.fail_timeout_ms = 500;
    upstream *u = three(c, &o);
    int count[3] = {0};
    unsigned healthy;
    ctl_do("kill", "b");
    CHECK_INT(spread(u, 6, count), 0);
    CHECK_INT(count[1], 0);
    upstream_counts(u, &healthy, NULL);
    CHECK_INT(healthy, 2);
    ctl_do("start", "b");
    sleep_ms(600);
    upstream_counts(u, &healthy, NULL);
    CHECK_INT(healthy, 3);
    memset(count, 0, sizeof count);
    CHECK_INT(spread(u, 30, count), 0);
    CHECK(count[1] >= 8);
    upstream_free(u);
    http_client_free(c);
}

static int wait_healthy(upstream *u, unsigned want, unsigned ms)
{
    double t0 = now_ms();
    unsigned h = 99;
    while (now_ms() - t0 < ms) {
        upstream_counts(u, &h, NULL);
        if (h == want)
            return 1;
        sleep_ms(20);
    }
    printf("  healthy: %u, wanted %u\n", h, want);
    return 0;
}

static void active_health(void)
{
    http_client *c = client_default();
    upstream_opts o;
    upstream_opts_default(&o);
    o.max_fails = 0; /* only the active checks */
    o.health_path = "/health";
    o.health_interval_ms = 100;
    o.health_timeout_ms = 300;
    o.rise = 2;
    o.fall = 2;
    upstream *u = three(c, &o);
    int count[3] = {0};
    double t0;
    sleep_ms(350);
    CHECK(stat_path("b", "GET /health") >= 2);
    CHECK(wait_healthy(u, 3, 100));
    ctl_do("health", "b&status=503");
    t0 = now_ms();
    CHECK(wait_healthy(u, 2, 2000));
    printf("  down after %.0f ms\n", now_ms() - t0);
    CHECK_INT(spread(u, 20, count), 0);
    CHECK_INT(count[1], 0);
    ctl_do("health", "b&status=200");
    t0 = now_ms();
    CHECK(wait_healthy(u, 3, 2000));
    printf("  up after %.0f ms\n", now_ms() - t0);
    memset(count, 0, sizeof count);
    CHECK_INT(spread(u, 30, count), 0);
    CHECK(count[1] >= 8);
    /* A dead instance goes down through the checks alone (passive marking is off). */
    ctl_do("kill", "c");
    CHECK(wait_healthy(u, 2, 2000));
    upstream_free(u);
    http_client_free(c);
}

static void post_not_retried(void)
{
    http_client *c = client_with(0, 0, 0, 0);
    upstream_opts o;
    char spec[96];
    upstream_opts_default(&o);
    o.max_fails = 10;
    snprintf(spec, sizeof spec, "127.0.0.1:%d,127.0.0.1:%d", ports[0], ports[1]);
    upstream *u = upstream_new(loop, c, "two", spec, &o);
    fres f = ufetch(u, "POST", "/readclose");
    CHECK_INT(f.err, HC_ERESET);
    fres_clear(&f);
    CHECK_INT(stat_path("a", "POST /readclose") + stat_path("b", "POST /readclose"), 1);
    f = ufetch(u, "GET", "/readclose");
    CHECK_INT(f.err, HC_ERESET);
    fres_clear(&f);
    CHECK_INT(stat_path("a", "GET /readclose"), 1);
    CHECK_INT(stat_path("b", "GET /readclose"), 1);
    /* TRACE is idempotent (RFC 9110 §9.2.2): retried on the other instance as GET */
    f = ufetch(u, "TRACE", "/readclose");
    CHECK_INT(f.err, HC_ERESET);
    fres_clear(&f);
    CHECK_INT(stat_path("a", "TRACE /readclose"), 1);
    CHECK_INT(stat_path("b", "TRACE /readclose"), 1);
    upstream_free(u);
    http_client_free(c);
}

static void localhost(void)
{
    http_client *c = client_default();
    char spec[64], want[64];
    unsigned total;
    int found = 0;
    snprintf(spec, sizeof spec, "localhost:%d", ports[0]);
    upstream *u = upstream_new(loop, c, "lh", spec, NULL);
    CHECK(u != NULL);
    fres f = ufetch(u, "GET", "/whoami"); /* waits for the first resolution */
    CHECK_INT(f.err, HC_OK);
    CHECK_STR(f.body, "a");
    fres_clear(&f);
    upstream_counts(u, NULL, &total);
    CHECK(total >= 1);
    snprintf(want, sizeof want, "127.0.0.1:%d", ports[0]);
    for (unsigned i = 0; i < total; i++) {
        upstream_peer *p = upstream_pick(u, NULL);
        if (p && strcmp(upstream_peer_text(p), want) == 0)
            found = 1;
        upstream_peer_release(p);
    }
    CHECK(found);
    upstream_free(u);

    /* A name that does not resolve: no instance, HC_ECONNECT within the fetch's time. */
    u = upstream_new(loop, c, "nx", "no-such-host.invalid:80", NULL);
    CHECK(u != NULL);
    double t0 = now_ms();
    f = (fres){0};
    upstream_fetch(u, "GET", "/", NULL, 0, NULL, 0, 2000, fres_cb, &f);
    run_until(&f.done, 5000);
    CHECK_INT(f.err, HC_ECONNECT);
    CHECK(now_ms() - t0 < 2500);
    upstream_counts(u, NULL, &total);
    CHECK_INT(total, 0);
    upstream_free(u);
    http_client_free(c);
}

typedef struct peer_list {
    char text[8][64];
    int n;
} peer_list;

static void peer_list_fn(const upstream_peer *p, int healthy, void *ud)
{
    peer_list *l = ud;
    (void)healthy;
    if (l->n < 8)
        snprintf(l->text[l->n++], 64, "%s", upstream_peer_text(p));
}

static int cmp_text(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The peers' texts, sorted, joined with spaces. */
static void peer_texts(upstream *u, char *out, size_t size)
{
    peer_list l = {0};
    upstream_each(u, peer_list_fn, &l);
    qsort(l.text, (size_t)l.n, sizeof l.text[0], cmp_text);
    out[0] = '\0';
    for (int i = 0; i < l.n; i++)
        snprintf(out + strlen(out), size - strlen(out), "%s%s", i ? " " : "", l.text[i]);
}

static int wait_peers(upstream *u, const char *want, unsigned ms, double *took)
{
    double t0 = now_ms();
    char have[512];
    do {
        peer_texts(u, have, sizeof have);
        if (strcmp(have, want) == 0) {
            if (took)
                *took = now_ms() - t0;
            return 1;
        }
        sleep_ms(10);
    } while (now_ms() - t0 < ms);
    printf("  peers \"%s\", wanted \"%s\"\n", have, want);
    return 0;
}

static void dns(void)
{
    http_client *c = client_default();
    upstream_opts o;
    char spec[256], p2[64], p3[64], both[160];
    double took = 0;
    if (!dns_name) {
        printf("  TU_DNS_NAME not set\n");
        CHECK(0);
        return;
    }
    snprintf(spec, sizeof spec, "%s:%d", dns_name, dns_port);
    snprintf(p2, sizeof p2, "127.0.0.2:%d", dns_port);
    snprintf(p3, sizeof p3, "127.0.0.3:%d", dns_port);
    snprintf(both, sizeof both, "%s %s", p2, p3);
    upstream_opts_default(&o);
    o.resolve_every_ms = 250;
    json_decref(ctl("/hosts?ip=127.0.0.2"));
    upstream *u = upstream_new(loop, c, "dns", spec, &o);
    CHECK(wait_peers(u, p2, 2000, NULL));
    fres f = ufetch(u, "GET", "/whoami");
    CHECK_STR(f.instance, "dns2");
    fres_clear(&f);
    upstream_peer *held = upstream_pick(u, NULL);

    json_decref(ctl("/hosts?ip=127.0.0.3"));
    CHECK(wait_peers(u, p3, 3000, &took));
    printf("  127.0.0.2 -> 127.0.0.3 seen after %.0f ms (resolve every 250 ms)\n", took);
    CHECK(took < 1000);
    f = ufetch(u, "GET", "/whoami");
    CHECK_STR(f.instance, "dns3");
    fres_clear(&f);
    CHECK_STR(upstream_peer_text(held), p2); /* removed, but alive while held */
    upstream_peer_release(held);

    json_decref(ctl("/hosts?ip=127.0.0.2,127.0.0.3"));
    CHECK(wait_peers(u, both, 3000, NULL)); /* the union of the addresses */

    json_decref(ctl("/hosts?ip=127.0.0.3"));
    CHECK(wait_peers(u, p3, 3000, NULL));

    json_decref(ctl("/hosts?ip=")); /* the name is gone: keep what we had */
    sleep_ms(800);
    CHECK(wait_peers(u, p3, 0, NULL));
    f = ufetch(u, "GET", "/whoami");
    CHECK_STR(f.instance, "dns3");
    fres_clear(&f);
    upstream_free(u);
    http_client_free(c);
}

/* ---- main ---- */

static int env_int(const char *name)
{
    const char *v = getenv(name);
    return v ? atoi(v) : 0;
}

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "parse";
    const char *p = getenv("TU_PORTS");
    int found = 0, closed_all;
    test_suite = "client";
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(170); /* bounded even if the loop hangs */
    if (strcmp(name, "parse") != 0 &&
        (!p || sscanf(p, "%d,%d,%d", &ports[0], &ports[1], &ports[2]) != 3)) {
        fprintf(stderr, "TU_PORTS missing\n");
        return 2;
    }
    ctl_port = env_int("TU_CTL");
    dead_port = env_int("TU_DEAD");
    dns_port = env_int("TU_DNS_PORT");
    dns_name = getenv("TU_DNS_NAME");
    uv_loop_init(loop);
    ctl_client = client_default();

#define SCENARIO(fn)                                                                               \
    if (strcmp(name, #fn) == 0) {                                                                  \
        found = 1;                                                                                 \
        RUN(fn);                                                                                   \
    }
    SCENARIO(fetch_get);
    SCENARIO(fetch_post);
    SCENARIO(keepalive);
    SCENARIO(chunked);
    SCENARIO(head);
    SCENARIO(no_body_status);
    SCENARIO(too_big);
    SCENARIO(connect_refused);
    SCENARIO(read_timeout);
    SCENARIO(stale_retry);
    SCENARIO(idle_close);
    SCENARIO(max_idle);
    SCENARIO(bad_request);
    SCENARIO(exchange_length);
    SCENARIO(exchange_abort);
    SCENARIO(free_inflight);
    SCENARIO(stream_upload);
    SCENARIO(stream_download);
    SCENARIO(parse);
    SCENARIO(round_robin);
    SCENARIO(failover);
    SCENARIO(passive_comeback);
    SCENARIO(active_health);
    SCENARIO(post_not_retried);
    SCENARIO(localhost);
    SCENARIO(dns);
    if (!found) {
        fprintf(stderr, "unknown scenario %s\n", name);
        return 2;
    }

    /* Everything was freed: the loop must come to rest with no handle left. */
    http_client_free(ctl_client);
    for (int i = 0; i < 200 && uv_loop_alive(loop); i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    closed_all = uv_loop_close(loop) == 0;
    if (!closed_all)
        printf("FAIL client/%s_cleanup: handles left open\n", name);
    return TEST_EXIT() || !closed_all;
}
