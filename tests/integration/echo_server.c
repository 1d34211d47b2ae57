/* echo_server: a small server on common/http_server + router for tests/integration/
 * test_http_server.py. Usage: echo_server PORT [--name=value ...] with the limits
 *   --header-timeout --body-timeout --idle-timeout --send-timeout --drain-timeout (ms),
 *   --max-connections --max-pipeline --max-body (bytes).
 * SIGTERM drains (in-flight requests finish, new connections are refused) and exits 0.
 * Routes:
 *   GET  /hello                    "hello\n"
 *   POST /echo, PUT /echo          the body back (buffered, the server's max body)
 *   POST /small                    the body back, max body 16 bytes
 *   POST /json                     http_req_json: the object back
 *   GET  /slow?ms=N&id=X           "X" after N ms (out-of-order completion when pipelined)
 *   POST /stream-sink?rate=B&for=MS  streams the body, consuming B bytes/s (pause/resume)
 *                                  for the first MS ms (all along without for), then at
 *                                  full speed; answers {"bytes": n}
 *   POST /refuse                   403 without reading the body
 *   GET  /big?size=N[&chunked=1]   N bytes (streamed, 64 KiB per write, next on callback)
 *   GET  /chunked                  a chunked response in three pieces
 *   GET  /items/{id}               {"id": "<decoded id>"}
 *   GET  /headers                  {"request_id", "headers": {...}}
 *   GET  /metrics                  Prometheus text */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "http_server.h"
#include "metrics.h"
#include "router.h"
#include "test_routes.h"

static uv_loop_t *loop;
static http_server *server;
static uv_signal_t sigterm;
static unsigned drain_timeout_ms = 10000;

/* Value of key in a query string ("a=1&b=2"), copied into out; NULL when absent. */
static const char *query_get(const char *query, const char *key, char *out, size_t cap)
{
    size_t klen = strlen(key);
    const char *p = query;
    while (*p) {
        size_t n = strcspn(p, "&");
        if (n > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            size_t vlen = n - klen - 1;
            if (vlen >= cap)
                vlen = cap - 1;
            memcpy(out, p + klen + 1, vlen);
            out[vlen] = '\0';
            return out;
        }
        p += n;
        if (*p == '&')
            p++;
    }
    return NULL;
}

static double query_num(http_req *req, const char *key, double dflt)
{
    char buf[64];
    return query_get(http_req_query(req), key, buf, sizeof buf) ? atof(buf) : dflt;
}

static void on_hello(http_req *req)
{
    http_reply(req, 200, "text/plain", "hello\n", 6);
}

static void on_echo(http_req *req)
{
    size_t len;
    const char *body = http_req_body(req, &len);
    char n[32];
    snprintf(n, sizeof n, "%zu", len);
    http_resp_header(req, "X-Body-Length", n);
    http_reply(req, 200, "application/octet-stream", body, len);
}

static void on_json(http_req *req)
{
    json_t *j = http_req_json(req);
    if (!j)
        return;
    http_reply_json(req, 200, j);
}

/* ---- /slow */

typedef struct slow_req {
    uv_timer_t timer;
    http_req *req;
    char id[64];
} slow_req;

static void slow_closed(uv_handle_t *h)
{
    free(h->data);
}

static void slow_fire(uv_timer_t *t)
{
    slow_req *s = t->data;
    http_reply(s->req, 200, "text/plain", s->id, strlen(s->id));
    uv_close((uv_handle_t *)t, slow_closed);
}

static void on_slow(http_req *req)
{
    slow_req *s = calloc(1, sizeof *s);
    s->req = req;
    if (!query_get(http_req_query(req), "id", s->id, sizeof s->id))
        strcpy(s->id, "-");
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, slow_fire, (uint64_t)query_num(req, "ms", 100), 0);
}

/* ---- /stream-sink: consumes the body at a given rate by pausing the request */

typedef struct sink {
    uv_timer_t timer;
    http_req *req;
    double rate;
    uint64_t bytes;
    uint64_t start_ms;
    uint64_t slow_until_ms; /* 0: the rate applies all along */
} sink;

static void sink_closed(uv_handle_t *h)
{
    free(h->data);
}

static void sink_finish(sink *s)
{
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, sink_closed);
}

static void sink_resume(uv_timer_t *t)
{
    sink *s = t->data;
    http_req_resume(s->req);
}

static void sink_data(http_req *req, const char *data, size_t len)
{
    sink *s = http_req_data(req);
    (void)data;
    s->bytes += len;
    uint64_t now = uv_now(loop);
    if (s->rate <= 0 || (s->slow_until_ms && now >= s->slow_until_ms))
        return;
    /* when this many bytes are due at the rate, relative to the start */
    uint64_t due = s->start_ms + (uint64_t)((double)s->bytes * 1000.0 / s->rate);
    if (due > now) {
        http_req_pause(req);
        uv_timer_start(&s->timer, sink_resume, due - now, 0);
    }
}

static void sink_end(http_req *req)
{
    sink *s = http_req_data(req);
    http_reply_json(req, 200, json_pack("{s:I}", "bytes", (json_int_t)s->bytes));
    sink_finish(s);
}

static void sink_gone(http_req *req)
{
    sink *s = http_req_data(req);
    sink_finish(s);
    http_reply(req, 499, NULL, NULL, 0); /* owed even though nobody listens */
}

static void on_stream_sink(http_req *req)
{
    sink *s = calloc(1, sizeof *s);
    s->req = req;
    s->rate = query_num(req, "rate", 0);
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    s->start_ms = uv_now(loop);
    double slow_ms = query_num(req, "for", 0);
    if (slow_ms > 0)
        s->slow_until_ms = s->start_ms + (uint64_t)slow_ms;
    http_req_set_data(req, s);
    http_req_on_close(req, sink_gone);
    http_req_stream_body(req, sink_data, sink_end);
}

static void on_refuse(http_req *req)
{
    http_reply_error(req, 403, "forbidden", "Refused before reading the body.");
}

/* ---- /big: a large streamed response, one 64 KiB write after the other */

typedef struct big {
    uint64_t left;
    char chunk[65536];
} big;

static void big_next(http_req *req, int status, void *ud)
{
    big *b = ud;
    if (status < 0 || b->left == 0) {
        free(b);
        http_resp_end(req);
        return;
    }
    size_t n = b->left < sizeof b->chunk ? (size_t)b->left : sizeof b->chunk;
    b->left -= n;
    if (http_resp_write(req, b->chunk, n, big_next, b) != 0) {
        free(b); /* the client is gone: big_next will not be called */
        http_resp_end(req);
    }
}

static void on_big(http_req *req)
{
    big *b = malloc(sizeof *b);
    b->left = (uint64_t)query_num(req, "size", 1048576);
    memset(b->chunk, 'x', sizeof b->chunk);
    int chunked = query_num(req, "chunked", 0) != 0;
    http_resp_header(req, "Content-Type", "application/octet-stream");
    http_resp_start(req, 200, chunked ? -1 : (int64_t)b->left);
    big_next(req, 0, b);
}

static void on_chunked(http_req *req)
{
    http_resp_header(req, "Content-Type", "text/plain");
    http_resp_start(req, 200, -1);
    http_resp_write(req, "a", 1, NULL, NULL);
    http_resp_write(req, "bb", 2, NULL, NULL);
    http_resp_write(req, "ccc", 3, NULL, NULL);
    http_resp_end(req);
}

static void on_item(http_req *req)
{
    http_reply_json(req, 200, json_pack("{s:s}", "id", http_req_param(req, "id")));
}

static void on_headers(http_req *req)
{
    json_t *h = json_object();
    for (size_t i = 0; i < http_req_header_count(req); i++) {
        const char *name, *value;
        http_req_header_at(req, i, &name, &value);
        json_object_set_new(h, name, json_string(value));
    }
    http_reply_json(req, 200,
                    json_pack("{s:s,s:o,s:s,s:s}", "request_id", http_req_id(req), "headers", h,
                              "peer", http_req_peer_ip(req), "target", http_req_target(req)));
}

static void on_metrics(http_req *req)
{
    size_t len;
    char *text = metrics_render(&len);
    http_reply(req, 200, "text/plain; version=0.0.4", text, len);
    free(text);
}

static void drained(http_server *srv, void *ud)
{
    (void)srv;
    (void)ud;
    uv_close((uv_handle_t *)&sigterm, NULL);
}

static void on_sigterm(uv_signal_t *h, int signum)
{
    (void)signum;
    uv_signal_stop(h);
    http_server_drain(server, drain_timeout_ms, drained, NULL);
}

static unsigned long opt_num(const char *arg, const char *name, unsigned long cur)
{
    size_t n = strlen(name);
    if (strncmp(arg, name, n) == 0 && arg[n] == '=')
        return strtoul(arg + n + 1, NULL, 10);
    return cur;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: echo_server PORT [--name=value ...]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (crypto_init() != 0) {
        fprintf(stderr, "echo_server: crypto_init failed\n");
        return 1;
    }
    http_server_opts o = {0};
    http_limits_default(&o.limits);
    http_limits *l = &o.limits;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        l->header_timeout_ms = (unsigned)opt_num(a, "--header-timeout", l->header_timeout_ms);
        l->body_timeout_ms = (unsigned)opt_num(a, "--body-timeout", l->body_timeout_ms);
        l->idle_timeout_ms = (unsigned)opt_num(a, "--idle-timeout", l->idle_timeout_ms);
        l->send_timeout_ms = (unsigned)opt_num(a, "--send-timeout", l->send_timeout_ms);
        l->max_connections = (unsigned)opt_num(a, "--max-connections", l->max_connections);
        l->max_pipeline = (unsigned)opt_num(a, "--max-pipeline", l->max_pipeline);
        l->max_body = (size_t)opt_num(a, "--max-body", l->max_body);
        drain_timeout_ms = (unsigned)opt_num(a, "--drain-timeout", drain_timeout_ms);
    }

    loop = uv_default_loop();
    router *r = router_new();
    test_echo_handlers echo = {on_echo, 16, on_json, on_slow, on_big, on_refuse, on_item};
    test_echo_routes(r, &echo);
    router_add(r, "GET", "/hello", on_hello, 0);
    router_add(r, "PUT", "/echo", on_echo, 0);
    router_add_stream(r, "POST", "/stream-sink", on_stream_sink);
    router_add(r, "GET", "/chunked", on_chunked, 0);
    router_add(r, "GET", "/headers", on_headers, 0);
    router_add(r, "GET", "/metrics", on_metrics, 0);

    o.handler = router_dispatch;
    o.handler_ud = r;
    o.server_name = "echo";
    server = http_server_new(loop, &o);
    int rc = http_server_listen(server, "127.0.0.1", atoi(argv[1]), 0);
    if (rc != 0) {
        fprintf(stderr, "echo_server: listen: %s\n", uv_strerror(rc));
        return 1;
    }
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigterm, on_sigterm, SIGTERM);
    fprintf(stderr, "echo_server: listening on %s\n", argv[1]);
    uv_run(loop, UV_RUN_DEFAULT);

    http_server_free(server);
    uv_run(loop, UV_RUN_DEFAULT);
    router_free(r);
    metrics_reset();
    int busy = uv_loop_close(loop);
    fprintf(stderr, "echo_server: stopped%s\n", busy ? " (handles left)" : "");
    return busy ? 1 : 0;
}
