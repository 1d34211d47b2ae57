/* gw_upstream: the tiny upstream service of the gateway's tests and benchmarks.
 * Usage: gw_upstream PORT NAME [HOST]. Routes match the last path segment (so /api/sink is
 * /sink), whatever the gateway's prefix. Every answer names the instance (X-Instance header and
 * "instance" in JSON bodies). Routes:
 *   GET /health              200 {"status":"ok"}
 *   /sink                    streams the request body, answers {"bytes":N}
 *   /echo                    streams the request body back (Content-Type kept)
 *   GET /big?n=BYTES         a text/plain body of n bytes, streamed
 *   GET /json?n=BYTES        an application/json body of about n bytes
 *   GET /cut?n=BYTES         a chunked text/plain body that breaks off after n bytes
 *   GET /slow?ms=N           answers after N ms
 *   GET /status?code=N       answers with that status
 *   GET /hello               "hello" (text/plain, 5 bytes: the benchmark's request)
 *   /crash                   the process exits at once (a request that reached an upstream)
 *   anything else            {"instance","method","path","query","headers":{...}} */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_server.h"

static const char *instance = "?";

typedef struct sink {
    int64_t bytes;
    int64_t left; /* /big: bytes still to send */
    uv_timer_t timer;
} sink;

static long query_num(http_req *req, const char *key, long def)
{
    const char *q = http_req_query(req);
    size_t n = strlen(key);
    while (q && *q) {
        if (strncmp(q, key, n) == 0 && q[n] == '=')
            return strtol(q + n + 1, NULL, 10);
        q = strchr(q, '&');
        if (q)
            q++;
    }
    return def;
}

static void sink_data(http_req *req, const char *data, size_t len)
{
    (void)data;
    sink *s = http_req_data(req);
    s->bytes += (int64_t)len;
}

static void sink_end(http_req *req)
{
    sink *s = http_req_data(req);
    http_reply_json(req, 200,
                    json_pack("{s:s,s:I}", "instance", instance, "bytes", (json_int_t)s->bytes));
    free(s);
}

static void echo_written(http_req *req, int status, void *ud)
{
    (void)status;
    free(ud);
    http_req_resume(req);
}

/* The response starts with the first piece of the body (or at its end). */
static void echo_start(http_req *req)
{
    if (http_req_data(req))
        return;
    http_req_set_data(req, req);
    http_resp_start(req, 200, http_req_content_length(req));
}

static void echo_data(http_req *req, const char *data, size_t len)
{
    echo_start(req);
    char *copy = malloc(len);
    memcpy(copy, data, len);
    http_req_pause(req);
    if (http_resp_write(req, copy, len, echo_written, copy) != 0) {
        free(copy); /* the client is gone: echo_written will not be called */
        http_req_resume(req);
    }
}

static void echo_end(http_req *req)
{
    echo_start(req);
    http_resp_end(req);
}

static char chunk[65536];

static void big_more(http_req *req, int status, void *ud)
{
    sink *s = ud;
    if (status < 0 || s->left <= 0) {
        http_resp_end(req);
        free(s);
        return;
    }
    size_t n = s->left > (int64_t)sizeof chunk ? sizeof chunk : (size_t)s->left;
    s->left -= (int64_t)n;
    if (http_resp_write(req, chunk, n, big_more, s) != 0) {
        http_resp_end(req);
        free(s);
    }
}

static void cut_written(http_req *req, int status, void *ud)
{
    (void)status;
    (void)ud;
    http_resp_abort(req); /* the source fails midway: no last chunk, the connection closes */
}

static void slow_fire(uv_timer_t *t)
{
    http_req *req = t->data;
    http_reply(req, 200, "text/plain", instance, strlen(instance));
    uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static void handle(http_req *req, void *ud)
{
    (void)ud;
    /* Dispatch on the last segment, so any gateway route prefix reaches these. */
    const char *full = http_req_path(req);
    const char *path = strrchr(full, '/');
    if (!path)
        path = full;
    http_resp_header(req, "X-Instance", instance);
    if (strcmp(path, "/health") == 0) {
        http_reply_json(req, 200, json_pack("{s:s,s:s}", "status", "ok", "instance", instance));
    } else if (strcmp(path, "/hello") == 0) {
        http_reply(req, 200, "text/plain", "hello", 5);
    } else if (strcmp(path, "/sink") == 0) {
        sink *s = calloc(1, sizeof *s);
        http_req_set_data(req, s);
        http_req_stream_body(req, sink_data, sink_end);
    } else if (strcmp(path, "/echo") == 0) {
        const char *ct = http_req_header(req, "Content-Type");
        if (ct)
            http_resp_header(req, "Content-Type", ct);
        http_req_stream_body(req, echo_data, echo_end);
    } else if (strcmp(path, "/big") == 0) {
        sink *s = calloc(1, sizeof *s);
        s->left = query_num(req, "n", 1 << 20);
        http_resp_header(req, "Content-Type", "text/plain");
        http_resp_start(req, 200, s->left);
        big_more(req, 0, s);
    } else if (strcmp(path, "/cut") == 0) {
        size_t n = (size_t)query_num(req, "n", 1000);
        if (n > sizeof chunk)
            n = sizeof chunk;
        memset(chunk, 'x', n);
        http_resp_header(req, "Content-Type", "text/plain");
        http_resp_start(req, 200, -1);
        if (http_resp_write(req, chunk, n, cut_written, NULL) != 0)
            http_resp_abort(req);
    } else if (strcmp(path, "/json") == 0) {
        long n = query_num(req, "n", 4096);
        json_t *items = json_array();
        for (long i = 0; i * 24 < n; i++)
            json_array_append_new(items, json_pack("{s:i,s:s}", "n", (int)i, "v", "value"));
        http_reply_json(req, 200, json_pack("{s:s,s:o}", "instance", instance, "items", items));
    } else if (strcmp(path, "/slow") == 0) {
        uv_timer_t *t = malloc(sizeof *t);
        uv_timer_init(http_req_loop(req), t);
        t->data = req;
        uv_timer_start(t, slow_fire, (uint64_t)query_num(req, "ms", 1000), 0);
    } else if (strcmp(path, "/crash") == 0) {
        _exit(3); /* dies with the request read: the gateway must not retry a POST */
    } else if (strcmp(path, "/status") == 0) {
        int code = (int)query_num(req, "code", 200);
        http_reply_error(req, code, "test", instance);
    } else {
        json_t *h = json_object();
        for (size_t i = 0; i < http_req_header_count(req); i++) {
            const char *name, *value;
            http_req_header_at(req, i, &name, &value);
            char lower[256];
            size_t k = 0;
            for (; name[k] && k < sizeof lower - 1; k++)
                lower[k] = (char)(name[k] >= 'A' && name[k] <= 'Z' ? name[k] + 32 : name[k]);
            lower[k] = '\0';
            json_object_set_new(h, lower, json_string(value));
        }
        http_reply_json(req, 200,
                        json_pack("{s:s,s:s,s:s,s:s,s:o}", "instance", instance, "method",
                                  http_req_method(req), "path", full, "query", http_req_query(req),
                                  "headers", h));
    }
}

/* A test upstream stops at once: requests in flight (a /slow one) are simply dropped. */
static void on_term(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    _exit(0);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: gw_upstream PORT NAME [HOST]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    memset(chunk, 'x', sizeof chunk);
    instance = argv[2];
    uv_loop_t *loop = uv_default_loop();
    http_server_opts o;
    memset(&o, 0, sizeof o);
    http_limits_default(&o.limits);
    o.limits.max_body = (size_t)1 << 40;
    o.limits.max_headers += HTTP_PROXY_ADDED_HEADERS; /* as a service (common/service.c) */
    o.handler = handle;
    http_server *srv = http_server_new(loop, &o);
    int rc = http_server_listen(srv, argc > 3 ? argv[3] : "127.0.0.1", atoi(argv[1]), 0);
    if (rc != 0) {
        fprintf(stderr, "gw_upstream: listen: %s\n", uv_strerror(rc));
        return 1;
    }
    uv_signal_t term;
    uv_signal_init(loop, &term);
    uv_signal_start(&term, on_term, SIGTERM);
    printf("gw_upstream %s listening on %s\n", instance, argv[1]);
    fflush(stdout);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}
