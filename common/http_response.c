/* http_response: the response of a request and the output queue. A response is composed
 * into pieces (http_out) queued on its request; only the head of the connection's queue of
 * requests writes to the socket (through the connection's transport), so responses leave in
 * request order. Also the server's own error replies (framing errors, limits, timeouts). */
#include "http_server_int.h"
#include "queue.h"
#include "uvbufs.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---------------------------------------------------------------- status texts */

/* The Date header value, formatted once per second. */
static const char *http_date(void)
{
    static time_t cached;
    static char text[64];
    time_t now = time(NULL);
    if (now != cached || !text[0]) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cached = now;
    }
    return text;
}

const char *http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return status >= 500 ? "Error" : status >= 400 ? "Client Error" : "Unknown";
    }
}

static const char *http_error_code(int status)
{
    switch (status) {
    case 400: return "bad_request";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 408: return "request_timeout";
    case 413: return "payload_too_large";
    case 414: return "uri_too_long";
    case 415: return "unsupported_media_type";
    case 417: return "expectation_failed";
    case 431: return "header_fields_too_large";
    case 505: return "http_version_not_supported";
    default: return status >= 500 ? "internal_error" : "bad_request";
    }
}

/* ---------------------------------------------------------------- output */

static http_out *out_new_room(http_req *r, size_t len, size_t cap);

http_out *out_new(http_req *r, size_t len)
{
    return out_new_room(r, len, len);
}

/* An output of len bytes with room for cap (>= len). Only the header is zeroed. */
static http_out *out_new_room(http_req *r, size_t len, size_t cap)
{
    http_out *o = xmalloc(sizeof *o + cap);
    memset(o, 0, sizeof *o);
    o->req = r;
    o->len = len;
    o->cap = cap;
    return o;
}

void req_enqueue(http_req *r, http_out *o)
{
    SQ_PUSH(r->out, r->out_tail, o, next);
}

/* Fires the callbacks of output never handed to the socket (the connection is gone). */
void req_cancel_out(http_req *r)
{
    while (r->out) {
        http_out *o;
        SQ_POP(r->out, r->out_tail, o, next);
        if (o->cb)
            o->cb(r, UV_ECANCELED, o->ud);
        free(o);
    }
}

/* No write completed for send_timeout_ms: close, unless the socket took some bytes. */
static void conn_send_timer_cb(uv_timer_t *t)
{
    http_conn *c = t->data;
    size_t queued = c->tcp.write_queue_size;
    if (queued < c->send_queued) {
        c->send_queued = queued;
        uv_timer_start(&c->send_timer, conn_send_timer_cb, c->srv->limits.send_timeout_ms, 0);
        return;
    }
    conn_close(c);
}

static void conn_send_arm(http_conn *c)
{
    c->send_queued = c->tcp.write_queue_size;
    uv_timer_start(&c->send_timer, conn_send_timer_cb, c->srv->limits.send_timeout_ms, 0);
}

/* A batch of outputs of one request (linked by next) left for the socket (status 0) or
 * failed: their callbacks, in order. */
static void conn_write_done(http_out *o, int status)
{
    http_conn *c = o->conn;
    while (o) {
        http_out *next = o->next;
        http_req *r = o->req;
        req_hold(r); /* the callback and conn_close may drop every other reference */
        c->writes_inflight--;
        r->writes_inflight--;
        if (!c->closing) {
            if (c->writes_inflight)
                conn_send_arm(c);
            else
                uv_timer_stop(&c->send_timer);
        }
        if (o->cb)
            o->cb(r, status, o->ud);
        free(o->tls_data);
        free(o);
        if (status < 0)
            conn_close(c);
        req_release(r);
        o = next;
    }
}

/* One uv_write carries a batch (see conn_flush). */
static void conn_on_write(uv_write_t *wr, int status)
{
    http_out *o = wr->data;
    http_conn *c = o->conn;
    conn_write_done(o, status);
    if (!c->closing)
        conn_update(c);
}

/* The completions of the batches the socket took at once, as libuv would report them: from
 * the loop (the kick), or before the connection is freed. */
void conn_write_completions(http_conn *c)
{
    while (c->wdone) {
        http_out *first;
        SQ_POP(c->wdone, c->wdone_tail, first, batch_next);
        conn_write_done(first, 0);
    }
}

/* The one place bytes go to the socket (encrypted first on a TLS connection). The socket is
 * offered the batch at once (uv_try_write: no write request, and no change to what the
 * event loop watches); what it does not take is handed to uv_write. 0 or a uv error. */
static int conn_write_raw(http_conn *c, http_out *first)
{
    uv_buf_t bufs[HTTP_WRITE_BATCH];
    http_out *o;
    int nb = c->tp->encode(c, first, bufs);
    if (nb < 0)
        return nb;
    size_t total = 0;
    for (int i = 0; i < nb; i++)
        total += bufs[i].len;
    int n = uv_try_write((uv_stream_t *)&c->tcp, bufs, (unsigned)nb);
    for (o = first; o; o = o->next) {
        o->conn = c;
        c->writes_inflight++;
        o->req->writes_inflight++;
    }
    if (n >= 0 && (size_t)n == total) {
        SQ_PUSH(c->wdone, c->wdone_tail, first, batch_next);
        conn_kick(c);
        return 0;
    }
    /* the rest (all of it after an error: libuv reports that from the loop) */
    unsigned nrest = (unsigned)nb;
    uv_buf_t *rest = uvbufs_skip(bufs, &nrest, n > 0 ? (size_t)n : 0);
    first->wr.data = first;
    int rc = uv_write(&first->wr, (uv_stream_t *)&c->tcp, rest, nrest, conn_on_write);
    if (rc != 0) {
        for (o = first; o; o = o->next) {
            c->writes_inflight--;
            o->req->writes_inflight--;
            o->conn = NULL;
        }
        return rc;
    }
    if (!uv_is_active((uv_handle_t *)&c->send_timer))
        conn_send_arm(c);
    return 0;
}

/* Hands the head request's output to the socket; pops requests whose response ended. */
void conn_flush(http_conn *c)
{
    http_req *r;
    while (!c->closing && !c->shutting && (r = c->head) != NULL) {
        while (r->out) {
            /* up to HTTP_WRITE_BATCH pieces in one write: a response head and its body
             * queued in the same loop iteration leave together */
            http_out *first = r->out, *last = first;
            for (unsigned k = 1; last->next && k < HTTP_WRITE_BATCH; k++)
                last = last->next;
            http_out *rest = last->next;
            last->next = NULL;
            if (conn_write_raw(c, first) != 0) {
                last->next = rest;
                conn_close(c);
                return;
            }
            r->out = rest;
            if (!rest)
                r->out_tail = NULL;
        }
        if (!r->resp_ended)
            break;
        queue_pop(c);
        if (r->close_after)
            c->shutting = 1;
        req_maybe_free(r);
    }
}

/* ---------------------------------------------------------------- the response */

static int status_has_body(int status)
{
    return !(status < 200 || status == 204 || status == 304);
}

/* The handler replies while the request body is still arriving: swallow a small rest and
 * keep the connection, or close after the response. */
static void req_settle_body(http_req *r, int at_end)
{
    http_conn *c = r->conn;
    if (!c || r->body_done || !r->has_body || r->parsing == 0)
        return;
    if (r->body_mode == BODY_DISCARD || r->body_mode == BODY_ABANDON)
        return;
    if (!at_end && r->body_mode != BODY_NONE)
        return;
    int can_discard = r->content_length >= 0 &&
                      (uint64_t)r->content_length - r->body_received <= HTTP_DISCARD_MAX &&
                      !(r->expect_continue && !r->continue_sent);
    if (can_discard) {
        r->body_mode = BODY_DISCARD;
        r->paused = 0;
        conn_kick(c);
    } else {
        r->body_mode = BODY_ABANDON;
        r->close_after = 1;
        c->no_more = 1;
    }
}

static char *put_mem(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static char *put_str(char *p, const char *s)
{
    return put_mem(p, s, strlen(s));
}

static char *put_u64(char *p, uint64_t v)
{
    char t[24];
    size_t i = sizeof t;
    do {
        t[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return put_mem(p, t + i, sizeof t - i);
}

/* Writes the status line and headers into a new output with room for `room` more bytes (a
 * small body that may follow at once); chooses the framing. */
static http_out *req_compose_head(http_req *r, int status, const char *ctype, int64_t clen,
                                  size_t room)
{
    http_server *srv = r->srv;
    http_conn *c = r->conn;
    r->status = status;
    r->head_composed = 1;
    r->no_body = r->is_head || !status_has_body(status);
    if (!r->keep_alive || (srv && srv->draining) || !c || c->eof)
        r->close_after = 1;

    const char *text = http_status_text(status);
    const char *date = http_date();
    const char *server = srv ? srv->server_name : NULL;
    size_t bound = 9 + 11 + 1 + strlen(text) + 2 + 6 + strlen(date) + 2 + 14 + strlen(r->id) + 2 +
                   (server ? 8 + strlen(server) + 2 : 0) + (ctype ? 14 + strlen(ctype) + 2 : 0) +
                   r->rhdrs.len + 16 + 20 + 2 + 28 + 19 + 24 + 2;
    http_out *o = out_new_room(r, 0, bound + room);
    char *p = o->data;
    p = put_mem(p, "HTTP/1.1 ", 9);
    p = put_u64(p, (uint64_t)(status < 0 ? 0 : status));
    *p++ = ' ';
    p = put_str(p, text);
    p = put_mem(p, "\r\nDate: ", 8);
    p = put_str(p, date);
    p = put_mem(p, "\r\n", 2);
    if (server) {
        p = put_mem(p, "Server: ", 8);
        p = put_str(p, server);
        p = put_mem(p, "\r\n", 2);
    }
    p = put_mem(p, "X-Request-ID: ", 14);
    p = put_str(p, r->id);
    p = put_mem(p, "\r\n", 2);
    if (ctype) {
        p = put_mem(p, "Content-Type: ", 14);
        p = put_str(p, ctype);
        p = put_mem(p, "\r\n", 2);
    }
    if (r->rhdrs.len)
        p = put_mem(p, r->rhdrs.p, r->rhdrs.len);
    if (status_has_body(status)) {
        if (clen >= 0) {
            p = put_mem(p, "Content-Length: ", 16);
            p = put_u64(p, (uint64_t)clen);
            p = put_mem(p, "\r\n", 2);
            r->resp_cl = clen;
        } else if (r->version_minor >= 1) {
            p = put_mem(p, "Transfer-Encoding: chunked\r\n", 28);
            r->chunked = 1;
        } else {
            r->close_after = 1; /* HTTP/1.0 without a length: the close ends the body */
        }
    }
    if (r->close_after)
        p = put_mem(p, "Connection: close\r\n", 19);
    else if (r->version_minor == 0)
        p = put_mem(p, "Connection: keep-alive\r\n", 24);
    p = put_mem(p, "\r\n", 2);
    o->len = (size_t)(p - o->data);
    return o;
}

/* A whole response, queued at once. */
static void req_reply_internal(http_req *r, int status, const char *ctype, const void *body,
                               size_t len)
{
    req_settle_body(r, 1); /* the handler is done with this request, body included */
    http_out *o = req_compose_head(r, status, ctype, status_has_body(status) ? (int64_t)len : -1,
                                   status_has_body(status) && !r->is_head ? len : 0);
    if (!r->no_body && len) {
        memcpy(o->data + o->len, body, len);
        o->len += len;
    }
    r->resp_sent = r->no_body ? 0 : len;
    r->resp_ended = 1;
    if (r->conn)
        req_enqueue(r, o);
    else
        free(o);
    req_fire_done(r, status);
    if (r->conn) {
        conn_flush(r->conn);
        conn_update(r->conn);
    }
}

static char *error_body(const char *code, const char *message, size_t *len)
{
    json_t *j = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) {
        static const char fallback[] =
            "{\"error\":{\"code\":\"internal_error\",\"message\":\"error\"}}";
        s = xstrndup(fallback, sizeof fallback - 1);
    }
    *len = strlen(s);
    return s;
}

/* The server answers in the handler's place (or for a request never dispatched) and closes
 * the connection after it. */
void req_error_reply(http_req *r, int status, const char *msg)
{
    http_conn *c = r->conn;
    r->close_after = 1;
    if (c)
        c->no_more = 1;
    if (r->head_composed || r->srv_replied) {
        if (!r->resp_ended && c)
            conn_close(c); /* the response already began: nothing sane can follow */
        return;
    }
    if (r->body_mode == BODY_READ && r->handler_owes)
        r->handler_owes = 0; /* done is never called: the server owns the reply */
    if (!r->body_done)
        r->body_mode = BODY_ABANDON;
    if (r->srv && r->srv->error_headers)
        for (const char *const *h = r->srv->error_headers; h[0] && h[1]; h += 2)
            http_resp_header(r, h[0], h[1]);
    r->srv_replied = 1;
    size_t len;
    char *body = error_body(http_error_code(status), msg, &len);
    req_hold(r);
    req_reply_internal(r, status, "application/json", body, len);
    free(body);
    if (r->handler_owes) {
        /* the handler still waits (streaming): this request is over for it */
        r->closed = 1;
        if (r->on_close) {
            http_req_fn fn = r->on_close;
            r->on_close = NULL;
            fn(r);
        }
    }
    req_release(r);
}

/* Handler-facing calls on a request whose response can no longer be written. Returns 1
 * when the call must be ignored. */
static int req_reply_void(http_req *r)
{
    return r->srv_replied || r->resp_ended || !r->conn;
}

/* The headers the server writes itself. */
static int header_reserved(const char *name)
{
    switch (name[0]) {
    case 'D':
    case 'd': return strcasecmp(name, "Date") == 0;
    case 'C':
    case 'c': return strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Connection") == 0;
    case 'T':
    case 't': return strcasecmp(name, "Transfer-Encoding") == 0;
    case 'X':
    case 'x': return strcasecmp(name, "X-Request-ID") == 0;
    default: return 0;
    }
}

int http_resp_header(http_req *r, const char *name, const char *value)
{
    if (r->head_composed || r->srv_replied || !name || !value || !*name)
        return -1;
    size_t nl = strcspn(name, "\r\n:"), vl = strcspn(value, "\r\n");
    if (name[nl] || value[vl] || header_reserved(name))
        return -1;
    buf_reserve(&r->rhdrs, nl + vl + 4);
    char *p = r->rhdrs.p + r->rhdrs.len;
    p = put_mem(p, name, nl);
    p = put_mem(p, ": ", 2);
    p = put_mem(p, value, vl);
    p = put_mem(p, "\r\n", 2);
    *p = '\0';
    r->rhdrs.len = (size_t)(p - r->rhdrs.p);
    return 0;
}

void http_reply(http_req *r, int status, const char *content_type, const void *body, size_t len)
{
    if (r->head_composed && !r->srv_replied)
        return; /* a second reply: ignored */
    int owed = r->handler_owes;
    req_hold(r);
    r->handler_owes = 0;
    if (req_reply_void(r)) {
        if (owed && !r->srv_replied)
            req_fire_done(r, status);
    } else {
        req_reply_internal(r, status, content_type, body, len);
    }
    req_release(r);
}

void http_reply_json(http_req *r, int status, json_t *body)
{
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!s) {
        http_reply_error(r, 500, "internal_error", "The response could not be encoded.");
        return;
    }
    http_reply(r, status, "application/json", s, strlen(s));
    free(s);
}

void http_reply_error(http_req *r, int status, const char *code, const char *message)
{
    size_t len;
    char *s = error_body(code, message, &len);
    http_reply(r, status, "application/json", s, len);
    free(s);
}

void http_resp_start(http_req *r, int status, int64_t content_length)
{
    if (r->head_composed)
        return;
    if (req_reply_void(r)) {
        r->head_composed = 1; /* writes are dropped until http_resp_end */
        if (!r->srv_replied)
            r->status = status;
        return;
    }
    req_settle_body(r, 0);
    /* room for a small body (or the first chunks) to leave with the head in one write */
    size_t room = r->is_head || !status_has_body(status) ? 0
                  : content_length < 0                   ? 1024
                  : content_length <= 16384              ? (size_t)content_length
                                                         : 0;
    http_out *o = req_compose_head(r, status, NULL, content_length, room);
    req_enqueue(r, o);
    conn_kick(r->conn); /* the head leaves with the first body piece */
}

int http_resp_write(http_req *r, const void *data, size_t len, http_write_fn cb, void *ud)
{
    if (!r->head_composed)
        http_resp_start(r, 200, -1);
    if (req_reply_void(r) || r->resp_ended)
        return UV_ECANCELED; /* cb is not called: never a callback inside the caller's call */
    if (r->no_body)
        len = 0;
    if (r->resp_cl >= 0 && r->resp_sent + len > (uint64_t)r->resp_cl)
        len = (size_t)((uint64_t)r->resp_cl - r->resp_sent); /* never more than announced */
    char hdr[24];
    size_t hlen = 0;
    if (r->chunked && len)
        hlen = (size_t)snprintf(hdr, sizeof hdr, "%zx\r\n", len);
    size_t total = hlen + len + (r->chunked && len ? 2 : 0);
    /* added to the last piece not yet handed to the socket when it has room (one callback a
     * piece), else a piece of its own */
    http_out *o = r->out_tail;
    if (!o || o->cap - o->len < total || (o->cb && cb)) {
        o = out_new_room(r, 0, total);
        req_enqueue(r, o);
    }
    char *p = o->data + o->len;
    p = put_mem(p, hdr, hlen);
    if (len)
        p = put_mem(p, data, len);
    if (r->chunked && len)
        p = put_mem(p, "\r\n", 2);
    o->len = (size_t)(p - o->data);
    if (cb) {
        o->cb = cb;
        o->ud = ud;
    }
    r->resp_sent += len;
    conn_kick(r->conn); /* flushed from the loop: pieces queued together leave together */
    return 0;
}

void http_resp_end(http_req *r)
{
    if (r->resp_ended && !r->srv_replied)
        return;
    int owed = r->handler_owes;
    req_hold(r);
    r->handler_owes = 0;
    if (req_reply_void(r)) {
        if (owed && !r->srv_replied)
            req_fire_done(r, r->status ? r->status : 200);
        req_release(r);
        return;
    }
    if (!r->head_composed)
        http_resp_start(r, 200, 0);
    if (r->chunked && !r->no_body && !r->truncated) {
        http_out *o = r->out_tail;
        if (!o || o->cap - o->len < 5) {
            o = out_new_room(r, 0, 5);
            req_enqueue(r, o);
        }
        memcpy(o->data + o->len, "0\r\n\r\n", 5);
        o->len += 5;
    }
    if (r->resp_cl >= 0 && r->resp_sent < (uint64_t)r->resp_cl && !r->no_body)
        r->close_after = 1; /* fewer bytes than announced: only a close can end it */
    r->resp_ended = 1;
    req_settle_body(r, 1);
    req_fire_done(r, r->status);
    conn_flush(r->conn);
    conn_update(r->conn); /* NULL when conn_flush closed it */
    req_release(r);
}

void http_resp_abort(http_req *r)
{
    r->truncated = 1;
    r->close_after = 1;
    http_resp_end(r);
}

void http_resp_close_after(http_req *r)
{
    r->close_after = 1;
    if (r->conn)
        r->conn->no_more = 1;
}
