/* http_request: the request object of the HTTP server: its lifetime (the one hold/release
 * rule, req_hold), its place in the connection's queue, and the handler-facing request API
 * (accessors, reading or streaming the body, 100-continue, JSON). */
#include "http_server_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "queue.h"

/* ---------------------------------------------------------------- requests */

/* Case-insensitive comparison of [s, s+n) trimmed of OWS with a lowercase word. */
int http_token_equals(const char *s, size_t n, const char *word)
{
    while (n && is_ows(*s)) {
        s++;
        n--;
    }
    while (n && is_ows(s[n - 1]))
        n--;
    return n == strlen(word) && strncasecmp(s, word, n) == 0;
}

/* A server keeps up to REQ_SPARE freed requests with the room of their head buffers, so that
 * a keep-alive request allocates nothing for its head, headers or response head. */
#define REQ_SPARE 64

http_req *req_new(http_conn *c)
{
    http_server *srv = c->srv;
    http_req *r = srv->spare;
    if (r) {
        xalloc_revive(r, sizeof *r);
        srv->spare = r->next;
        srv->nspare--;
        buf target = r->target, hbuf = r->hbuf, rhdrs = r->rhdrs;
        http_hdr *hdrs = r->hdrs;
        size_t hcap = r->hcap;
        memset(r, 0, sizeof *r);
        buf *keep[] = {&target, &hbuf, &rhdrs};
        for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
            xalloc_revive(keep[i]->p, keep[i]->cap);
            keep[i]->len = 0;
            keep[i]->p[0] = '\0';
        }
        xalloc_revive(hdrs, hcap * sizeof *hdrs);
        r->target = target;
        r->hbuf = hbuf;
        r->rhdrs = rhdrs;
        r->hdrs = hdrs;
        r->hcap = hcap;
    } else {
        r = xcalloc(1, sizeof *r);
    }
    r->conn = c;
    r->srv = srv;
    r->loop = srv->loop;
    r->query = "";
    r->method = "";
    r->version_minor = 1;
    r->keep_alive = 1;
    r->resp_cl = -1;
    memcpy(r->peer, c->peer, sizeof r->peer);
    return r;
}

static void req_free(http_req *r)
{
    buf_free(&r->body);
    free(r->path);
    for (size_t i = 0; i < r->nparams; i++) {
        free(r->params[i].name);
        free(r->params[i].value);
    }
    free(r->params);
    http_server *srv = r->srv;
    /* kept while its connection, and so the server, is alive; with each buffer allocated */
    if (r->conn && !srv->freeing && srv->nspare < REQ_SPARE && r->target.p && r->hbuf.p &&
        r->rhdrs.p && r->hdrs) {
        r->next = srv->spare;
        srv->spare = r;
        srv->nspare++;
        xalloc_retire(r->target.p, r->target.cap);
        xalloc_retire(r->hbuf.p, r->hbuf.cap);
        xalloc_retire(r->rhdrs.p, r->rhdrs.cap);
        xalloc_retire(r->hdrs, r->hcap * sizeof *r->hdrs);
        xalloc_retire(r, sizeof *r);
        return;
    }
    buf_free(&r->target);
    buf_free(&r->hbuf);
    buf_free(&r->rhdrs);
    free(r->hdrs);
    free(r);
}

void req_spare_free(http_server *srv)
{
    while (srv->spare) {
        http_req *r = srv->spare;
        xalloc_revive(r, sizeof *r);
        srv->spare = r->next;
        xalloc_revive(r->target.p, r->target.cap);
        xalloc_revive(r->hbuf.p, r->hbuf.cap);
        xalloc_revive(r->rhdrs.p, r->rhdrs.cap);
        buf_free(&r->target);
        buf_free(&r->hbuf);
        buf_free(&r->rhdrs);
        free(r->hdrs);
        free(r);
    }
    srv->nspare = 0;
}

/* Frees the request once nothing refers to it any more. */
void req_maybe_free(http_req *r)
{
    if (r->pins || r->in_queue || r->parsing || r->handler_owes || r->writes_inflight || r->out)
        return;
    req_free(r);
}

/* The one rule of the request's lifetime: code that calls out (a user callback, or anything
 * that can write, close the connection or end the reply: conn_flush, conn_close, the reply
 * functions) and still uses r afterwards holds r around it. Every other reference (queue,
 * parser, handler, output) may be dropped inside the call; req_release() then frees r, so
 * the caller must not touch r after its release. The connection itself is never freed
 * inside a call: only from the close callbacks of its handles, after every write callback. */
void req_hold(http_req *r)
{
    r->pins++;
}

void req_release(http_req *r)
{
    r->pins--;
    req_maybe_free(r);
}

/* Callers hold r. */
void req_fire_done(http_req *r, int status)
{
    if (r->done_fired)
        return;
    r->done_fired = 1;
    if (r->on_done) {
        double secs = r->t_start ? (double)(uv_hrtime() - r->t_start) / 1e9 : 0.0;
        r->on_done(r, status, secs, r->done_ud);
    }
}

void queue_append(http_conn *c, http_req *r)
{
    r->in_queue = 1;
    SQ_PUSH(c->head, c->tail, r, next);
    c->nreqs++;
}

void queue_pop(http_conn *c)
{
    http_req *r;
    SQ_POP(c->head, c->tail, r, next);
    r->in_queue = 0;
    c->nreqs--;
}

/* Generated request ids: 32 hex digits, a random prefix drawn once per process (64 bits)
 * then a per-process counter, so unique across processes and restarts without a random draw
 * per request. A child of fork() draws its own prefix. */
static char id_prefix[17];
static uint64_t id_counter;
static pthread_once_t id_once = PTHREAD_ONCE_INIT;

static void id_forget(void)
{
    id_prefix[0] = '\0';
    id_counter = 0;
}

static void id_register_atfork(void)
{
    pthread_atfork(NULL, NULL, id_forget);
}

static void req_new_id(char *out)
{
    static const char hex[] = "0123456789abcdef";
    if (!id_prefix[0]) {
        pthread_once(&id_once, id_register_atfork);
        uint8_t rnd[8];
        if (crypto_random(rnd, sizeof rnd) != 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t v = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^
                         ((uint64_t)getpid() << 40);
            memcpy(rnd, &v, sizeof rnd);
        }
        crypto_hex(rnd, sizeof rnd, id_prefix);
    }
    memcpy(out, id_prefix, 16);
    uint64_t n = ++id_counter;
    for (int i = 31; i >= 16; i--, n >>= 4)
        out[i] = hex[n & 15];
    out[32] = '\0';
}

/* X-Request-ID: kept when 1..128 visible ASCII characters, else generated (req_new_id). */
void req_set_id(http_req *r)
{
    const char *v = http_req_header(r, "X-Request-ID");
    if (v) {
        size_t n = strlen(v);
        int ok = n > 0 && n <= HTTP_MAX_ID;
        for (size_t i = 0; ok && i < n; i++)
            ok = v[i] > 0x20 && v[i] < 0x7f;
        if (ok) {
            memcpy(r->id, v, n + 1);
            return;
        }
    }
    req_new_id(r->id);
}

/* ---------------------------------------------------------------- the request API */

const char *http_req_method(const http_req *r)
{
    return r->method;
}
const char *http_req_target(const http_req *r)
{
    return r->target.p ? r->target.p : "";
}
const char *http_req_path(const http_req *r)
{
    return r->path ? r->path : "";
}
const char *http_req_query(const http_req *r)
{
    return r->query;
}
int http_req_version_minor(const http_req *r)
{
    return r->version_minor;
}
int64_t http_req_content_length(const http_req *r)
{
    return r->content_length;
}
const char *http_req_peer_ip(const http_req *r)
{
    return r->peer;
}
const char *http_req_id(const http_req *r)
{
    return r->id;
}
int http_req_is_tls(const http_req *r)
{
    return r->srv && r->srv->tls != NULL;
}
http_server *http_req_server(const http_req *r)
{
    return r->srv;
}
uv_loop_t *http_req_loop(const http_req *r)
{
    return r->loop;
}
void http_req_set_data(http_req *r, void *data)
{
    r->data = data;
}
void *http_req_data(const http_req *r)
{
    return r->data;
}
int http_req_closed(const http_req *r)
{
    return r->closed;
}
void http_req_on_close(http_req *r, http_req_fn fn)
{
    r->on_close = fn;
}
int http_resp_status(const http_req *r)
{
    return r->status;
}

void http_req_on_done(http_req *r, http_done_fn fn, void *ud)
{
    r->on_done = fn;
    r->done_ud = ud;
}

size_t http_req_header_count(const http_req *r)
{
    return r->nhdrs;
}

void http_req_header_at(const http_req *r, size_t i, const char **name, const char **value)
{
    if (i >= r->nhdrs) {
        *name = *value = NULL;
        return;
    }
    *name = r->hbuf.p + r->hdrs[i].name;
    *value = r->hbuf.p + r->hdrs[i].value;
}

const char *http_req_header(const http_req *r, const char *name)
{
    for (size_t i = 0; i < r->nhdrs; i++)
        if (strcasecmp(r->hbuf.p + r->hdrs[i].name, name) == 0)
            return r->hbuf.p + r->hdrs[i].value;
    return NULL;
}

void http_req_set_param(http_req *r, const char *name, const char *value)
{
    for (size_t i = 0; i < r->nparams; i++) {
        if (strcmp(r->params[i].name, name) == 0) {
            free(r->params[i].value);
            r->params[i].value = xstrndup(value, strlen(value));
            return;
        }
    }
    http_param *p = realloc(r->params, (r->nparams + 1) * sizeof *p);
    if (!p)
        abort();
    r->params = p;
    p[r->nparams].name = xstrndup(name, strlen(name));
    p[r->nparams].value = xstrndup(value, strlen(value));
    r->nparams++;
}

const char *http_req_param(const http_req *r, const char *name)
{
    for (size_t i = 0; i < r->nparams; i++)
        if (strcmp(r->params[i].name, name) == 0)
            return r->params[i].value;
    return NULL;
}

const char *http_req_body(const http_req *r, size_t *len)
{
    if (len)
        *len = r->body.len;
    return r->body.p ? r->body.p : "";
}

/* "100 Continue" goes out (in order, before this request's response) when the handler first
 * asks for the body. */
static void req_send_continue(http_req *r)
{
    if (!r->expect_continue || r->continue_sent || r->body_done || !r->conn)
        return;
    r->continue_sent = 1;
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    http_out *o = out_new(r, sizeof cont - 1);
    memcpy(o->data, cont, sizeof cont - 1);
    req_enqueue(r, o);
    conn_flush(r->conn);
}

void http_req_read_body(http_req *r, size_t max, http_req_fn done)
{
    if (r->body_mode != BODY_NONE || r->srv_replied || r->head_composed)
        return;
    if (!r->conn) {
        if (r->body_done) {
            r->body_mode = BODY_READ;
            done(r); /* whatever it answers is dropped */
        } else {
            r->handler_owes = 0; /* the connection is gone: done never comes */
            req_maybe_free(r);
        }
        return;
    }
    r->body_mode = BODY_READ;
    r->body_max = max ? max : r->srv->limits.max_body;
    r->read_done = done;
    if (r->content_length > 0 && (uint64_t)r->content_length > r->body_max) {
        req_error_reply(r, 413, "The request body is too large.");
        return;
    }
    if (r->body_done) {
        done(r);
        return;
    }
    if (r->content_length > 0 && !r->body.p)
        buf_reserve(&r->body, (size_t)r->content_length);
    req_hold(r); /* a failed write of the 100 closes the connection: done never comes */
    req_send_continue(r);
    conn_kick(r->conn);
    req_release(r);
}

void http_req_stream_body(http_req *r, http_data_fn on_data, http_req_fn on_end)
{
    if (r->body_mode != BODY_NONE || r->srv_replied)
        return;
    r->body_mode = BODY_STREAM;
    r->on_data = on_data;
    r->on_end = on_end;
    if (r->body_done) {
        if (on_end)
            on_end(r);
        return;
    }
    if (!r->conn)
        return; /* on_close already told the handler */
    req_hold(r);
    req_send_continue(r);
    conn_kick(r->conn);
    req_release(r);
}

void http_req_pause(http_req *r)
{
    if (r->body_mode != BODY_STREAM || r->body_done)
        return;
    r->paused = 1;
    if (r->conn && !r->conn->in_feed)
        conn_update(r->conn);
}

void http_req_resume(http_req *r)
{
    if (!r->paused)
        return;
    r->paused = 0;
    if (r->conn)
        conn_kick(r->conn);
}

json_t *http_req_json(http_req *r)
{
    const char *ct = http_req_header(r, "Content-Type");
    if (ct) {
        size_t n = strcspn(ct, ";");
        if (!http_token_equals(ct, n, "application/json")) {
            http_reply_error(r, 415, "unsupported_media_type",
                             "The request body must be application/json.");
            return NULL;
        }
    }
    size_t len;
    const char *body = http_req_body(r, &len);
    json_error_t err;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    if (!j || !json_is_object(j)) {
        char msg[256];
        if (!j)
            snprintf(msg, sizeof msg, "The request body is not valid JSON: %s.", err.text);
        else
            snprintf(msg, sizeof msg, "The request body must be a JSON object.");
        json_decref(j);
        http_reply_error(r, 400, "invalid_json", msg);
        return NULL;
    }
    return j;
}
