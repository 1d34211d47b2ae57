/* http_server: the suite's HTTP/1.1 server on libuv + llhttp (contract in http_server.h).
 *
 * Structure:
 *   - http_server: the listener, the list of connections, drain and free.
 *   - http_conn: one TCP connection. Bytes come in through conn_on_read() into a 64 KiB read
 *     buffer and are parsed by conn_process(); bytes go out through conn_write_raw() only.
 *     On a TLS listener (opts.tls, common/tls.c) the socket's bytes are fed to the connection's
 *     tls_conn and conn_tls_pull() decrypts them into the read buffer when it is empty;
 *     conn_write_raw() encrypts; handshake output is sent by conn_tls_flush(). When parsing must
 *     stop (a handler paused, has not asked for the body yet, too many requests in flight),
 *     the unparsed rest stays in the read buffer and reading stops: that is the backpressure.
 *   - http_req: one request and its response. Requests of a connection form a queue in
 *     arrival order; only the head of the queue writes to the socket, a later response is
 *     kept (with its write callbacks) until the earlier ones ended.
 *
 * llhttp 8.1 is used without any lenient flag. What it lets through is rejected here:
 * obs-fold and the head's size (a scan of the raw head bytes), whitespace before a colon
 * (the raw field name ends with it), an empty field name, a duplicate or missing Host,
 * Transfer-Encoding on HTTP/1.0 or other than exactly "chunked", HTTP/0.9, and chunk data
 * not followed by CRLF (the two bytes after each chunk's data are checked in the raw input,
 * by absolute stream offset, across reads). llhttp is built in strict mode where it is
 * compiled here, and the syntax is checked again whatever the build (http_syntax.h): field
 * names are tokens, field values and the request-target carry no control character, Host is
 * an authority. Chunk extensions are bounded per chunk (HTTP_CHUNK_EXT_MAX, then 400) and
 * count against the body limit (413).
 *
 * User callbacks are never called from inside a user call on the same request, except the
 * body callbacks of read_body/stream_body when the body is already complete. Parsing that
 * can continue after a user call (resume, read_body, a response that ended) is restarted
 * from an idle handle ("kick"), never re-entrantly. */
#include "http_server.h"
#include "tls.h"

#include <errno.h>
#include <inttypes.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "http_syntax.h"
#include "xalloc.h"

#define HTTP_WRITE_BATCH 16     /* response pieces handed to one uv_write */
#define HTTP_READ_SIZE 65536    /* one read; also the largest body piece given to a handler */
#define HTTP_DISCARD_MAX 65536  /* unread request body still swallowed to keep the connection */
#define HTTP_LINGER_MS 2000     /* reading (and dropping) after our last response, before close */
#define HTTP_MAX_ID 128         /* X-Request-ID kept up to this length */

typedef struct http_conn http_conn;
typedef struct http_out http_out;

/* A growable byte buffer, always NUL-terminated when non-empty. */
typedef struct http_buf {
    char *p;
    size_t len, cap;
} http_buf;

/* A piece of output (a response head, body bytes with their chunk framing) of one request. */
struct http_out {
    http_out *next;
    uv_write_t wr;
    http_conn *conn;
    http_req *req;
    http_write_fn cb;
    void *ud;
    size_t len;
    char *tls_data;          /* the ciphertext of data on a TLS connection, freed after */
    char data[];
};

typedef enum {
    BODY_NONE = 0, /* the handler has not asked for the body (yet) */
    BODY_READ,     /* buffered for http_req_read_body */
    BODY_STREAM,   /* handed to on_data */
    BODY_DISCARD,  /* replied without reading: small rest swallowed */
    BODY_ABANDON,  /* replied without reading: the connection closes after the response */
} body_mode;

typedef enum { TIMER_NONE = 0, TIMER_HEADER, TIMER_BODY, TIMER_IDLE, TIMER_LINGER } timer_kind;

typedef struct http_hdr {
    size_t name, value; /* offsets into req->hbuf */
} http_hdr;

typedef struct http_param {
    char *name, *value;
} http_param;

struct http_req {
    http_conn *conn;     /* NULL once the connection is gone */
    http_server *srv;
    uv_loop_t *loop;
    http_req *next;      /* in the connection's queue */

    /* the head */
    const char *method;
    http_buf target;
    char *path;
    const char *query;
    http_buf hbuf;
    http_hdr *hdrs;
    size_t nhdrs, hcap;
    size_t field_start;  /* offset of the header being parsed */
    size_t value_start;
    int version_minor;
    int64_t content_length;
    int keep_alive;
    int is_head;
    int expect_continue;
    int host_count, te_count, expect_count;
    char id[HTTP_MAX_ID + 1];
    char peer[INET6_ADDRSTRLEN];
    http_param *params;
    size_t nparams;
    void *data;

    /* the body */
    body_mode body_mode;
    int has_body, headers_done, body_done;
    size_t body_max;
    uint64_t body_received;
    uint64_t ext_received;   /* chunk extension bytes, counted against the body limit */
    http_buf body;
    http_req_fn read_done;
    http_data_fn on_data;
    http_req_fn on_end;
    int paused;
    int continue_sent;

    /* the response */
    int status;
    http_buf rhdrs;
    int head_composed;   /* the response head is queued */
    int resp_ended;      /* the whole response is queued */
    int srv_replied;     /* the server answered in the handler's place (error, timeout) */
    int no_body;         /* HEAD, 1xx, 204, 304: body bytes are not written */
    int chunked;
    int64_t resp_cl;     /* -1: chunked or close-delimited */
    uint64_t resp_sent;
    int close_after;
    int truncated;          /* http_resp_abort: no last chunk, the close tells the client */
    http_out *out, *out_tail; /* queued, not yet handed to the socket */
    unsigned writes_inflight;

    /* lifetime: the request is freed (req_maybe_free) once none of these refer to it */
    int handler_owes;    /* dispatched, the handler has not ended its reply */
    int in_queue;        /* in the connection's response queue */
    int parsing;         /* the parser still delivers to this request */
    int pins;            /* req_hold: code up the stack still uses it (see req_hold) */
    int closed;
    http_req_fn on_close;
    http_done_fn on_done;
    void *done_ud;
    int done_fired;
    uint64_t t_start;
};

struct http_conn {
    http_server *srv;
    http_conn *prev, *next;  /* the server's list */
    http_conn *kick_next;
    uv_tcp_t tcp;
    uv_timer_t timer;        /* header, body, idle and linger timeouts */
    uv_timer_t send_timer;
    uv_shutdown_t shutdown_req;
    int handles_open;
    llhttp_t parser;

    char *rbuf;              /* HTTP_READ_SIZE bytes while needed */
    size_t roff, rlen;       /* unparsed bytes kept in rbuf */
    uint64_t in_total;       /* bytes consumed by the parser so far */
    const char *feed_ptr;    /* the slice being parsed, and its absolute offset */
    size_t feed_len;
    uint64_t feed_abs;

    http_req *head, *tail;   /* requests in arrival order */
    unsigned nreqs;
    http_req *cur;           /* the request being parsed */
    unsigned served;         /* requests begun on this connection */

    int reading, closing, shutting, lingering, eof, kicked, in_feed, llhttp_paused;
    int no_more;             /* parse no further request */
    unsigned writes_inflight;
    size_t send_queued;      /* bytes queued in libuv when the send timer was armed */
    timer_kind tkind;
    char peer[INET6_ADDRSTRLEN];

    /* raw scan of the request head */
    int scan;                /* 0 waiting for the method, 1 scanning, 2 done */
    const char *scan_ptr;    /* where to resume in the current slice (NULL: its start) */
    int scan_line_start, scan_cr, scan_reqline;
    size_t head_bytes;

    /* chunk framing: the CRLF expected after a chunk's data */
    uint64_t chunk_left;
    size_t chunk_ext;        /* extension bytes of the chunk whose size line is parsed */
    uint64_t crlf_abs;
    int crlf_left;           /* bytes of that CRLF not checked yet */

    int err_status;          /* set by a parser callback that rejects the request */
    const char *err_msg;

    tls_conn *tls;           /* TLS between the socket and the parser (https listeners) */
    int tls_closed;          /* the peer sent close_notify */
    int hooked;              /* conn_hook accepted it: told again at close */
};

struct http_server {
    uv_loop_t *loop;
    http_limits limits;
    http_handler_fn handler;
    void *handler_ud;
    char *server_name;
    uv_tcp_t listener;
    int listener_state;      /* 0 none, 1 listening, 2 closing or closed */
    uv_idle_t kick;
    uv_timer_t drain_timer;
    int handles_open;
    http_conn *conns;
    http_conn *kick_list;
    unsigned nconns;         /* open connections */
    unsigned nalive;         /* connection structures not freed yet */
    int draining, drain_fired, freeing;
    void (*drain_done)(http_server *, void *);
    void *drain_ud;
    struct tls_server *tls;
    int (*conn_hook)(void *ud, const char *peer_ip, int open);
    const char *const *error_headers;
    char *tls_rbuf;          /* ciphertext read buffer, shared (fed to TLS at once) */
};

static llhttp_settings_t http_parser_settings;
static int http_settings_ready;

static void conn_close(http_conn *c);
static void conn_process(http_conn *c);
static void conn_update(http_conn *c);
static void conn_flush(http_conn *c);
static void conn_kick(http_conn *c);
static void conn_fail(http_conn *c, int status, const char *msg);
static void req_maybe_free(http_req *r);
static void req_error_reply(http_req *r, int status, const char *msg);
static void srv_check_done(http_server *srv);

/* ---------------------------------------------------------------- small helpers */

static void buf_append(http_buf *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            fprintf(stderr, "http_server: out of memory\n");
            abort();
        }
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_printf(http_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(http_buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        buf_append(b, tmp, (size_t)n);
        return;
    }
    char *big = xcalloc(1, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    buf_append(b, big, (size_t)n);
    free(big);
}

static void buf_free(http_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static int is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Case-insensitive comparison of [s, s+n) trimmed of OWS with a lowercase word. */
static int token_equals(const char *s, size_t n, const char *word)
{
    while (n && is_ows(*s)) {
        s++;
        n--;
    }
    while (n && is_ows(s[n - 1]))
        n--;
    return n == strlen(word) && strncasecmp(s, word, n) == 0;
}

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

void http_limits_default(http_limits *l)
{
    l->max_request_line = 8192;
    l->max_header_line = 8192;
    l->max_headers_size = 32768;
    l->max_headers = 100;
    l->max_body = 1024 * 1024;
    l->header_timeout_ms = 60000;
    l->body_timeout_ms = 60000;
    l->idle_timeout_ms = 75000;
    l->send_timeout_ms = 60000;
    l->max_pipeline = 16;
    l->max_connections = 10000;
}

/* ---------------------------------------------------------------- requests */

static http_req *req_new(http_conn *c)
{
    http_req *r = xcalloc(1, sizeof *r);
    r->conn = c;
    r->srv = c->srv;
    r->loop = c->srv->loop;
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
    buf_free(&r->target);
    buf_free(&r->hbuf);
    buf_free(&r->body);
    buf_free(&r->rhdrs);
    free(r->path);
    free(r->hdrs);
    for (size_t i = 0; i < r->nparams; i++) {
        free(r->params[i].name);
        free(r->params[i].value);
    }
    free(r->params);
    free(r);
}

/* Frees the request once nothing refers to it any more. */
static void req_maybe_free(http_req *r)
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
static void req_hold(http_req *r)
{
    r->pins++;
}

static void req_release(http_req *r)
{
    r->pins--;
    req_maybe_free(r);
}

/* Callers hold r. */
static void req_fire_done(http_req *r, int status)
{
    if (r->done_fired)
        return;
    r->done_fired = 1;
    if (r->on_done) {
        double secs = r->t_start ? (double)(uv_hrtime() - r->t_start) / 1e9 : 0.0;
        r->on_done(r, status, secs, r->done_ud);
    }
}

static void queue_append(http_conn *c, http_req *r)
{
    r->in_queue = 1;
    r->next = NULL;
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->nreqs++;
}

static void queue_pop(http_conn *c)
{
    http_req *r = c->head;
    c->head = r->next;
    if (!c->head)
        c->tail = NULL;
    r->next = NULL;
    r->in_queue = 0;
    c->nreqs--;
}

/* X-Request-ID: kept when 1..128 visible ASCII characters, else 16 random bytes in hex. */
static void req_set_id(http_req *r)
{
    static unsigned long long counter;
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
    uint8_t rnd[16];
    if (crypto_random(rnd, sizeof rnd) == 0)
        crypto_hex(rnd, sizeof rnd, r->id);
    else
        snprintf(r->id, sizeof r->id, "%08x%016llx", (unsigned)getpid(), ++counter);
}

/* ---------------------------------------------------------------- output */

static http_out *out_new(http_req *r, size_t len)
{
    http_out *o = xcalloc(1, sizeof *o + len);
    o->req = r;
    o->len = len;
    return o;
}

static void req_enqueue(http_req *r, http_out *o)
{
    if (r->out_tail)
        r->out_tail->next = o;
    else
        r->out = o;
    r->out_tail = o;
}

/* Fires the callbacks of output never handed to the socket (the connection is gone). */
static void req_cancel_out(http_req *r)
{
    while (r->out) {
        http_out *o = r->out;
        r->out = o->next;
        if (!r->out)
            r->out_tail = NULL;
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

/* One write carries a batch of outputs of one request, linked by next (see conn_flush). */
static void conn_on_write(uv_write_t *wr, int status)
{
    http_out *o = wr->data;
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
    if (!c->closing)
        conn_update(c);
}

/* TLS output not tied to a response (handshake, alerts, close_notify). */
typedef struct tls_write {
    uv_write_t wr;
    char *data;
} tls_write;

static void conn_tls_on_write(uv_write_t *wr, int status)
{
    tls_write *w = wr->data;
    (void)status;
    free(w->data);
    free(w);
}

/* Sends what TLS produced on its own. 0 or a uv error. */
static int conn_tls_flush(http_conn *c)
{
    char *out;
    size_t n = tls_conn_take_out(c->tls, &out);
    if (n == 0)
        return 0;
    tls_write *w = xcalloc(1, sizeof *w);
    w->data = out;
    w->wr.data = w;
    uv_buf_t b = uv_buf_init(out, (unsigned)n);
    int rc = uv_write(&w->wr, (uv_stream_t *)&c->tcp, &b, 1, conn_tls_on_write);
    if (rc != 0) {
        free(out);
        free(w);
    }
    return rc;
}

/* The one place bytes go to the socket (encrypted first on a TLS connection). 0 or a uv
 * error. */
static int conn_write_raw(http_conn *c, http_out *first)
{
    uv_buf_t bufs[HTTP_WRITE_BATCH];
    unsigned nb = 0;
    http_out *o;
    if (c->tls) {
        /* the whole batch in one run of records, one write */
        if (conn_tls_flush(c) != 0)
            return UV_EPROTO;
        for (o = first; o; o = o->next)
            if (tls_conn_write(c->tls, o->data, o->len) != 0)
                return UV_EPROTO;
        size_t n = tls_conn_take_out(c->tls, &first->tls_data);
        bufs[nb++] = uv_buf_init(first->tls_data ? first->tls_data : first->data, (unsigned)n);
    } else {
        for (o = first; o; o = o->next)
            bufs[nb++] = uv_buf_init(o->data, (unsigned)o->len);
    }
    first->wr.data = first;
    int rc = uv_write(&first->wr, (uv_stream_t *)&c->tcp, bufs, nb, conn_on_write);
    if (rc != 0)
        return rc;
    for (o = first; o; o = o->next) {
        o->conn = c;
        c->writes_inflight++;
        o->req->writes_inflight++;
    }
    if (!uv_is_active((uv_handle_t *)&c->send_timer))
        conn_send_arm(c);
    return 0;
}

/* Hands the head request's output to the socket; pops requests whose response ended. */
static void conn_flush(http_conn *c)
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

/* Writes the status line and headers; chooses the framing. */
static void req_compose_head(http_req *r, http_buf *b, int status, const char *ctype,
                             int64_t clen)
{
    http_server *srv = r->srv;
    http_conn *c = r->conn;
    r->status = status;
    r->head_composed = 1;
    r->no_body = r->is_head || !status_has_body(status);
    if (!r->keep_alive || (srv && srv->draining) || !c || c->eof)
        r->close_after = 1;

    buf_printf(b, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, http_status_text(status), http_date());
    if (srv && srv->server_name)
        buf_printf(b, "Server: %s\r\n", srv->server_name);
    buf_printf(b, "X-Request-ID: %s\r\n", r->id);
    if (ctype)
        buf_printf(b, "Content-Type: %s\r\n", ctype);
    if (r->rhdrs.len)
        buf_append(b, r->rhdrs.p, r->rhdrs.len);
    if (status_has_body(status)) {
        if (clen >= 0) {
            buf_printf(b, "Content-Length: %" PRId64 "\r\n", clen);
            r->resp_cl = clen;
        } else if (r->version_minor >= 1) {
            buf_append(b, "Transfer-Encoding: chunked\r\n", 28);
            r->chunked = 1;
        } else {
            r->close_after = 1; /* HTTP/1.0 without a length: the close ends the body */
        }
    }
    if (r->close_after)
        buf_append(b, "Connection: close\r\n", 19);
    else if (r->version_minor == 0)
        buf_append(b, "Connection: keep-alive\r\n", 24);
    buf_append(b, "\r\n", 2);
}

/* A whole response, queued at once. */
static void req_reply_internal(http_req *r, int status, const char *ctype, const void *body,
                               size_t len)
{
    http_buf b = {0};
    req_settle_body(r, 1); /* the handler is done with this request, body included */
    req_compose_head(r, &b, status, ctype, status_has_body(status) ? (int64_t)len : -1);
    if (!r->no_body && len)
        buf_append(&b, body, len);
    r->resp_sent = r->no_body ? 0 : len;
    r->resp_ended = 1;
    if (r->conn) {
        http_out *o = out_new(r, b.len);
        memcpy(o->data, b.p, b.len);
        req_enqueue(r, o);
    }
    buf_free(&b);
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
        static const char fallback[] = "{\"error\":{\"code\":\"internal_error\",\"message\":\"error\"}}";
        s = xstrndup(fallback, sizeof fallback - 1);
    }
    *len = strlen(s);
    return s;
}

/* The server answers in the handler's place (or for a request never dispatched) and closes
 * the connection after it. */
static void req_error_reply(http_req *r, int status, const char *msg)
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

int http_resp_header(http_req *r, const char *name, const char *value)
{
    static const char *reserved[] = {"Date", "Content-Length", "Transfer-Encoding",
                                     "Connection", "X-Request-ID"};
    if (r->head_composed || r->srv_replied || !name || !value || !*name)
        return -1;
    if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
        return -1;
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strcasecmp(name, reserved[i]) == 0)
            return -1;
    buf_printf(&r->rhdrs, "%s: %s\r\n", name, value);
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
    http_buf b = {0};
    req_settle_body(r, 0);
    req_compose_head(r, &b, status, NULL, content_length);
    http_out *o = out_new(r, b.len);
    memcpy(o->data, b.p, b.len);
    buf_free(&b);
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
    http_out *o = out_new(r, total);
    memcpy(o->data, hdr, hlen);
    if (len)
        memcpy(o->data + hlen, data, len);
    if (r->chunked && len)
        memcpy(o->data + hlen + len, "\r\n", 2);
    o->cb = cb;
    o->ud = ud;
    r->resp_sent += len;
    req_enqueue(r, o);
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
        http_out *o = out_new(r, 5);
        memcpy(o->data, "0\r\n\r\n", 5);
        req_enqueue(r, o);
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

/* ---------------------------------------------------------------- the request API */

const char *http_req_method(const http_req *r) { return r->method; }
const char *http_req_target(const http_req *r) { return r->target.p ? r->target.p : ""; }
const char *http_req_path(const http_req *r) { return r->path ? r->path : ""; }
const char *http_req_query(const http_req *r) { return r->query; }
int http_req_version_minor(const http_req *r) { return r->version_minor; }
int64_t http_req_content_length(const http_req *r) { return r->content_length; }
const char *http_req_peer_ip(const http_req *r) { return r->peer; }
const char *http_req_id(const http_req *r) { return r->id; }
int http_req_is_tls(const http_req *r) { return r->srv && r->srv->tls != NULL; }
http_server *http_req_server(const http_req *r) { return r->srv; }
uv_loop_t *http_req_loop(const http_req *r) { return r->loop; }
void http_req_set_data(http_req *r, void *data) { r->data = data; }
void *http_req_data(const http_req *r) { return r->data; }
int http_req_closed(const http_req *r) { return r->closed; }
void http_req_on_close(http_req *r, http_req_fn fn) { r->on_close = fn; }
int http_resp_status(const http_req *r) { return r->status; }

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
    if (r->content_length > 0 && !r->body.p) {
        r->body.p = malloc((size_t)r->content_length + 1);
        if (!r->body.p)
            abort();
        r->body.cap = (size_t)r->content_length + 1;
        r->body.p[0] = '\0';
    }
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
        if (!token_equals(ct, n, "application/json")) {
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

/* ---------------------------------------------------------------- timers */

static void conn_timer_cb(uv_timer_t *t)
{
    http_conn *c = t->data;
    timer_kind kind = c->tkind;
    c->tkind = TIMER_NONE;
    switch (kind) {
    case TIMER_HEADER:
        if (c->cur && !c->cur->headers_done) {
            conn_fail(c, 408, "The request head did not arrive in time.");
            conn_update(c);
        } else {
            conn_close(c); /* nothing was sent: close silently */
        }
        break;
    case TIMER_BODY:
        if (c->cur) {
            conn_fail(c, 408, "The request body did not arrive in time.");
            conn_update(c);
        } else {
            conn_close(c);
        }
        break;
    case TIMER_IDLE:
    case TIMER_LINGER:
        conn_close(c);
        break;
    case TIMER_NONE:
        break;
    }
}

static void conn_arm(http_conn *c, timer_kind kind, unsigned ms)
{
    c->tkind = kind;
    uv_timer_start(&c->timer, conn_timer_cb, ms, 0);
}

static void conn_disarm(http_conn *c)
{
    c->tkind = TIMER_NONE;
    uv_timer_stop(&c->timer);
}

/* ---------------------------------------------------------------- parsing */

/* 1 when the parser must not go on for now. */
static int conn_blocked(http_conn *c)
{
    if (c->closing || c->shutting)
        return 1;
    http_req *r = c->cur;
    if (r) {
        if (!r->headers_done)
            return 0;
        switch (r->body_mode) {
        case BODY_NONE: return r->has_body;
        case BODY_STREAM: return r->paused;
        case BODY_ABANDON: return 1;
        default: return 0;
        }
    }
    return c->no_more || c->nreqs >= c->srv->limits.max_pipeline;
}

static int parse_error(http_conn *c, int status, const char *msg)
{
    if (!c->err_status) {
        c->err_status = status;
        c->err_msg = msg;
    }
    return HPE_USER;
}

/* Scans raw head bytes up to the empty line: rejects obs-fold (a line starting with SP or
 * HTAB) and bounds the head's size. Returns 0, or -1 with c->err_status set. */
static int conn_scan_head(http_conn *c, const char *p, const char *end)
{
    const http_limits *l = &c->srv->limits;
    for (; p < end && c->scan == 1; p++) {
        char ch = *p;
        c->head_bytes++;
        if (c->scan_cr) {
            c->scan_cr = 0;
            if (ch == '\n') {
                c->scan = 2;
                break;
            }
            c->scan_line_start = 0;
        } else if (c->scan_line_start) {
            if (is_ows(ch)) {
                parse_error(c, 400, "Obsolete header line folding is not accepted.");
                return -1;
            }
            if (ch == '\r') {
                c->scan_cr = 1;
                continue;
            }
            if (ch == '\n') {
                c->scan = 2;
                break;
            }
            c->scan_line_start = 0;
        }
        if (ch == '\n') {
            c->scan_line_start = 1;
            c->scan_reqline = 0;
        }
    }
    if (c->scan_reqline && c->head_bytes > l->max_request_line) {
        parse_error(c, 414, "The request line is too long.");
        return -1;
    }
    if (c->head_bytes > l->max_request_line + l->max_headers_size + 4) {
        parse_error(c, 431, "The request headers are too large.");
        return -1;
    }
    return 0;
}

/* Checks the CRLF that must follow a chunk's data, for its bytes inside [abs, abs+len). */
static int conn_check_crlf(http_conn *c, const char *data, size_t len, uint64_t abs)
{
    while (c->crlf_left > 0) {
        uint64_t pos = c->crlf_abs + (uint64_t)(2 - c->crlf_left);
        if (pos < abs || pos >= abs + len)
            return 0;
        char want = c->crlf_left == 2 ? '\r' : '\n';
        if (data[pos - abs] != want) {
            parse_error(c, 400, "Chunk data is not followed by CRLF.");
            return -1;
        }
        c->crlf_left--;
    }
    return 0;
}

static int cb_message_begin(llhttp_t *p)
{
    http_conn *c = p->data;
    if (c->no_more || c->closing)
        return parse_error(c, 400, "No further request is accepted on this connection.");
    http_req *r = req_new(c);
    queue_append(c, r);
    r->parsing = 1;
    c->cur = r;
    c->served++;
    c->scan = 0;
    c->scan_ptr = NULL;
    c->head_bytes = 0;
    c->crlf_left = 0;
    c->chunk_ext = 0;
    c->err_status = 0;
    if (c->tkind != TIMER_HEADER)
        conn_arm(c, TIMER_HEADER, c->srv->limits.header_timeout_ms);
    return 0;
}

static int cb_method(llhttp_t *p, const char *at, size_t len)
{
    http_conn *c = p->data;
    (void)len;
    if (c->scan == 0) {
        c->scan = 1;
        c->scan_ptr = at;
        c->scan_line_start = 0;
        c->scan_cr = 0;
        c->scan_reqline = 1;
    }
    return 0;
}

static int cb_url(llhttp_t *p, const char *at, size_t len)
{
    http_conn *c = p->data;
    http_req *r = c->cur;
    if (r->target.len + len + 16 > c->srv->limits.max_request_line)
        return parse_error(c, 414, "The request line is too long.");
    if (!http_syntax_target(at, len))
        return parse_error(c, 400, "The request-target has a character that is not allowed.");
    buf_append(&r->target, at, len);
    return 0;
}

static int header_sizes_ok(http_conn *c, http_req *r)
{
    const http_limits *l = &c->srv->limits;
    if (r->hbuf.len - r->field_start > l->max_header_line)
        return parse_error(c, 431, "A request header line is too long.");
    if (r->hbuf.len > l->max_headers_size)
        return parse_error(c, 431, "The request headers are too large.");
    return 0;
}

static int cb_header_field(llhttp_t *p, const char *at, size_t len)
{
    http_conn *c = p->data;
    http_req *r = c->cur;
    buf_append(&r->hbuf, at, len);
    return header_sizes_ok(c, r);
}

static int cb_header_field_complete(llhttp_t *p)
{
    http_conn *c = p->data;
    http_req *r = c->cur;
    size_t n = r->hbuf.len - r->field_start;
    if (n == 0)
        return parse_error(c, 400, "A request header has an empty name.");
    if (is_ows(r->hbuf.p[r->hbuf.len - 1]))
        return parse_error(c, 400, "Whitespace between a header name and its colon.");
    if (!http_syntax_token(r->hbuf.p + r->field_start, n))
        return parse_error(c, 400, "A request header name is not a token.");
    if (!r->headers_done && r->nhdrs >= c->srv->limits.max_headers)
        return parse_error(c, 431, "Too many request headers.");
    buf_append(&r->hbuf, "", 1); /* the name's NUL */
    r->value_start = r->hbuf.len;
    return 0;
}

static int cb_header_value(llhttp_t *p, const char *at, size_t len)
{
    http_conn *c = p->data;
    http_req *r = c->cur;
    if (!http_syntax_field_value(at, len))
        return parse_error(c, 400, "A request header value has a control character.");
    buf_append(&r->hbuf, at, len);
    return header_sizes_ok(c, r);
}

static int cb_header_value_complete(llhttp_t *p)
{
    http_conn *c = p->data;
    http_req *r = c->cur;
    while (r->hbuf.len > r->value_start && is_ows(r->hbuf.p[r->hbuf.len - 1]))
        r->hbuf.len--;
    r->hbuf.p[r->hbuf.len] = '\0';
    const char *name = r->hbuf.p + r->field_start;
    const char *value = r->hbuf.p + r->value_start;
    size_t vlen = r->hbuf.len - r->value_start;
    if (r->headers_done) {
        /* a trailer field: checked for size above, not kept */
        r->hbuf.len = r->field_start;
        r->hbuf.p[r->hbuf.len] = '\0';
        return 0;
    }
    if (strcasecmp(name, "Host") == 0) {
        r->host_count++;
    } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
        r->te_count++;
        if (!token_equals(value, vlen, "chunked"))
            return parse_error(c, 400, "Transfer-Encoding must be exactly \"chunked\".");
    } else if (strcasecmp(name, "Expect") == 0) {
        r->expect_count++;
        if (token_equals(value, vlen, "100-continue"))
            r->expect_continue = 1;
        else
            r->expect_continue = -1;
    }
    if (r->nhdrs == r->hcap) {
        r->hcap = r->hcap ? r->hcap * 2 : 16;
        http_hdr *h = realloc(r->hdrs, r->hcap * sizeof *h);
        if (!h)
            abort();
        r->hdrs = h;
    }
    r->hdrs[r->nhdrs].name = r->field_start;
    r->hdrs[r->nhdrs].value = r->value_start;
    r->nhdrs++;
    buf_append(&r->hbuf, "", 1);
    r->field_start = r->hbuf.len;
    return 0;
}

/* Splits the target into path and query. */
static void req_split_target(http_req *r)
{
    const char *t = r->target.p ? r->target.p : "";
    size_t n = strcspn(t, "?");
    r->path = xstrndup(t, n);
    r->query = t[n] == '?' ? t + n + 1 : "";
}

static int cb_headers_complete(llhttp_t *p)
{
    http_conn *c = p->data;
    http_req *r = c->cur;

    /* finish the raw scan: the rest of the head is in this slice */
    if (c->scan == 1) {
        const char *from = c->scan_ptr ? c->scan_ptr : c->feed_ptr;
        if (conn_scan_head(c, from, c->feed_ptr + c->feed_len) < 0)
            return -1;
    }
    c->scan = 2;
    if (p->http_major != 1 || p->http_minor > 1)
        return parse_error(c, p->http_major == 0 ? 400 : 505, "Only HTTP/1.0 and 1.1 are served.");
    r->version_minor = p->http_minor;
    if (p->method == HTTP_CONNECT)
        return parse_error(c, 400, "CONNECT is not supported.");
    if (r->host_count > 1)
        return parse_error(c, 400, "More than one Host header.");
    if (r->host_count == 0 && r->version_minor == 1)
        return parse_error(c, 400, "An HTTP/1.1 request needs a Host header.");
    const char *host = http_req_header(r, "Host");
    if (host && !http_syntax_host(host, strlen(host)))
        return parse_error(c, 400, "The Host header is not a valid host[:port].");
    if ((p->flags & F_TRANSFER_ENCODING) || r->te_count) {
        if (r->version_minor == 0)
            return parse_error(c, 400, "Transfer-Encoding is not allowed in HTTP/1.0.");
        if (r->te_count != 1 || !(p->flags & F_CHUNKED))
            return parse_error(c, 400, "Transfer-Encoding must be exactly \"chunked\".");
    }
    if (r->version_minor == 0)
        r->expect_continue = 0; /* HTTP/1.0: Expect is ignored */
    else if (r->expect_count > 1 || r->expect_continue < 0)
        return parse_error(c, 417, "Only \"Expect: 100-continue\" is supported.");

    r->method = llhttp_method_name((llhttp_method_t)p->method);
    r->is_head = p->method == HTTP_HEAD;
    req_split_target(r);
    if (p->flags & F_CHUNKED)
        r->content_length = -1;
    else if (p->flags & F_CONTENT_LENGTH)
        r->content_length = (int64_t)p->content_length;
    r->has_body = r->content_length != 0;
    r->keep_alive = llhttp_should_keep_alive(p);
    req_set_id(r);
    r->headers_done = 1;
    r->t_start = uv_hrtime();
    conn_disarm(c);
    if (!r->keep_alive)
        c->no_more = 1;

    http_server *srv = c->srv;
    r->handler_owes = 1;
    req_hold(r);
    srv->handler(r, srv->handler_ud);
    int stop = c->closing || conn_blocked(c);
    if (!stop && r->has_body && !r->body_done && c->tkind != TIMER_BODY)
        conn_arm(c, TIMER_BODY, srv->limits.body_timeout_ms);
    req_release(r); /* freed here when the handler's reply closed the connection */
    return stop ? HPE_PAUSED : 0;
}

static int cb_chunk_header(llhttp_t *p)
{
    http_conn *c = p->data;
    c->chunk_left = p->content_length;
    c->chunk_ext = 0;
    return 0;
}

/* n bytes of a chunk's extensions (a name or value piece, or its ';' or '='): they carry
 * nothing we use, so at most HTTP_CHUNK_EXT_MAX per chunk, and they count against the body
 * limit (the handler's for a buffered body, the server's default otherwise). */
static int conn_chunk_ext(http_conn *c, size_t n)
{
    http_req *r = c->cur;
    c->chunk_ext += n;
    r->ext_received += n;
    if (c->chunk_ext > HTTP_CHUNK_EXT_MAX)
        return parse_error(c, 400, "A chunk extension is too long.");
    int buffered = r->body_mode == BODY_READ;
    uint64_t max = buffered ? r->body_max : c->srv->limits.max_body;
    if (r->ext_received + (buffered ? r->body_received : 0) > max)
        return parse_error(c, 413, "The request body is too large.");
    return 0;
}

static int cb_chunk_ext_piece(llhttp_t *p, const char *at, size_t len)
{
    (void)at;
    return conn_chunk_ext(p->data, len);
}

static int cb_chunk_ext_delim(llhttp_t *p)
{
    return conn_chunk_ext(p->data, 1);
}

static int cb_body(llhttp_t *p, const char *at, size_t len)
{
    http_conn *c = p->data;
    http_req *r = c->cur;
    if (r->content_length < 0) {
        c->chunk_left -= len;
        if (c->chunk_left == 0) {
            c->crlf_abs = c->feed_abs + (uint64_t)(at + len - c->feed_ptr);
            c->crlf_left = 2;
            if (conn_check_crlf(c, c->feed_ptr, c->feed_len, c->feed_abs) < 0)
                return HPE_USER;
        }
    }
    r->body_received += len;
    switch (r->body_mode) {
    case BODY_READ:
        if (r->body_received + r->ext_received > r->body_max)
            return parse_error(c, 413, "The request body is too large.");
        buf_append(&r->body, at, len);
        break;
    case BODY_STREAM: {
        if (!r->on_data || !len)
            return r->paused ? HPE_PAUSED : 0;
        req_hold(r);
        r->on_data(r, at, len);
        int stop = c->closing || r->paused;
        req_release(r);
        return stop ? HPE_PAUSED : 0;
    }
    case BODY_DISCARD: /* a known rest of at most HTTP_DISCARD_MAX bytes */
        break;
    case BODY_NONE:
    case BODY_ABANDON:
        return HPE_PAUSED;
    }
    return 0;
}

static int cb_message_complete(llhttp_t *p)
{
    http_conn *c = p->data;
    http_req *r = c->cur;
    c->cur = NULL;
    c->scan = 0;
    if (c->tkind == TIMER_BODY)
        conn_disarm(c);
    r->body_done = 1;
    req_hold(r);
    if (r->body_mode == BODY_READ && r->read_done && !r->srv_replied) {
        r->read_done(r);
    } else if (r->body_mode == BODY_STREAM && r->on_end) {
        r->on_end(r);
    }
    r->parsing = 0;
    req_release(r);
    if (c->closing || conn_blocked(c))
        return HPE_PAUSED;
    return 0;
}

static void http_settings_init(void)
{
    if (http_settings_ready)
        return;
    llhttp_settings_init(&http_parser_settings);
    http_parser_settings.on_message_begin = cb_message_begin;
    http_parser_settings.on_method = cb_method;
    http_parser_settings.on_url = cb_url;
    http_parser_settings.on_header_field = cb_header_field;
    http_parser_settings.on_header_field_complete = cb_header_field_complete;
    http_parser_settings.on_header_value = cb_header_value;
    http_parser_settings.on_header_value_complete = cb_header_value_complete;
    http_parser_settings.on_headers_complete = cb_headers_complete;
    http_parser_settings.on_chunk_header = cb_chunk_header;
    http_parser_settings.on_chunk_extension_name = cb_chunk_ext_piece;
    http_parser_settings.on_chunk_extension_value = cb_chunk_ext_piece;
    http_parser_settings.on_chunk_extension_name_complete = cb_chunk_ext_delim;
    http_parser_settings.on_chunk_extension_value_complete = cb_chunk_ext_delim;
    http_parser_settings.on_body = cb_body;
    http_parser_settings.on_message_complete = cb_message_complete;
    http_settings_ready = 1;
}

/* A request the parser cannot go on with: answered (in order) and the connection closes. */
static void conn_fail(http_conn *c, int status, const char *msg)
{
    http_req *r = c->cur;
    c->no_more = 1;
    if (c->closing)
        return;
    if (!r) {
        r = req_new(c);
        queue_append(c, r);
    }
    c->cur = NULL;
    r->parsing = 0;
    if (!r->id[0])
        req_set_id(r);
    req_hold(r);
    req_error_reply(r, status, msg);
    req_release(r);
}

/* Parses one slice of input; returns the bytes consumed, or -1 when the connection failed. */
static long conn_parse(http_conn *c, const char *data, size_t len)
{
    if (c->llhttp_paused) {
        llhttp_resume(&c->parser);
        c->llhttp_paused = 0;
    }
    c->feed_ptr = data;
    c->feed_len = len;
    c->feed_abs = c->in_total;
    c->err_status = 0;
    if (conn_check_crlf(c, data, len, c->in_total) < 0) {
        conn_fail(c, c->err_status, c->err_msg);
        return -1;
    }
    llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
    size_t used = len;
    if (err == HPE_PAUSED) {
        used = (size_t)(llhttp_get_error_pos(&c->parser) - data);
        c->llhttp_paused = 1;
    } else if (err == HPE_PAUSED_UPGRADE) {
        /* an Upgrade request answered as plain HTTP: go on with HTTP */
        used = (size_t)(llhttp_get_error_pos(&c->parser) - data);
        llhttp_resume_after_upgrade(&c->parser);
    } else if (err != HPE_OK) {
        if (c->closing)
            return -1;
        int status = c->err_status ? c->err_status : 400;
        const char *msg = c->err_status ? c->err_msg : "The request is malformed.";
        conn_fail(c, status, msg);
        return -1;
    }
    if (c->closing)
        return -1;
    if (c->scan == 1) {
        const char *from = c->scan_ptr ? c->scan_ptr : data;
        if (from < data + used && conn_scan_head(c, from, data + used) < 0) {
            conn_fail(c, c->err_status, c->err_msg);
            return -1;
        }
        c->scan_ptr = NULL;
    }
    c->in_total += used;
    return (long)used;
}

static void conn_input_end(http_conn *c, ssize_t nread);

/* TLS: decrypts what was fed into the empty read buffer (and runs the handshake), sends what
 * TLS has to send. Returns 0, or -1 when the connection was closed or ended. */
static int conn_tls_pull(http_conn *c)
{
    if (c->tls_closed || c->lingering)
        return 0;
    if (!c->rbuf)
        c->rbuf = xmalloc(HTTP_READ_SIZE);
    c->roff = 0;
    int n = TLS_AGAIN;
    while (c->rlen < HTTP_READ_SIZE) {
        n = tls_conn_read(c->tls, c->rbuf + c->rlen, HTTP_READ_SIZE - c->rlen);
        if (n <= 0)
            break;
        c->rlen += (size_t)n;
    }
    if (conn_tls_flush(c) != 0 || n == TLS_ERROR) {
        conn_close(c);
        return -1;
    }
    if (n == TLS_CLOSED) {
        c->tls_closed = 1;
        if (c->rlen == 0) {
            int was = c->in_feed;
            c->in_feed = 0;
            conn_input_end(c, UV_EOF);
            c->in_feed = was;
            return -1;
        }
    }
    return 0;
}

/* Parses the kept input as far as allowed, then reads more (or not). */
static void conn_process(http_conn *c)
{
    static const char nothing[1];
    if (c->in_feed)
        return; /* already parsing further up the stack */
    c->in_feed = 1;
    if (c->tls && c->rlen == 0 && conn_tls_pull(c) < 0) {
        c->in_feed = 0;
        return;
    }
    /* a paused parser may have callbacks to run without any new byte (the end of a
     * Content-Length body reached in the piece that paused): it is resumed even when empty */
    while (!c->closing && !conn_blocked(c) && (c->rlen > 0 || c->llhttp_paused)) {
        int was_empty = c->rlen == 0;
        long used = conn_parse(c, was_empty ? nothing : c->rbuf + c->roff, c->rlen);
        if (used < 0) {
            c->rlen = 0;
            break;
        }
        c->roff += (size_t)used;
        c->rlen -= (size_t)used;
        if (c->tls && c->rlen == 0 && !conn_blocked(c)) {
            c->roff = 0;
            if (conn_tls_pull(c) < 0)
                break;
        }
        if (used == 0 && (was_empty || conn_blocked(c)))
            break;
    }
    c->in_feed = 0;
    if (c->rlen == 0)
        c->roff = 0;
    if (!c->closing) {
        conn_flush(c);
        conn_update(c);
    }
}

static void conn_kick_cb(uv_idle_t *h)
{
    http_server *srv = h->data;
    uv_idle_stop(h);
    http_conn *c = srv->kick_list;
    srv->kick_list = NULL;
    while (c) {
        http_conn *next = c->kick_next;
        c->kick_next = NULL;
        c->kicked = 0;
        if (!c->closing)
            conn_process(c);
        c = next;
    }
}

/* Parsing may go on: do it from the loop, not inside the caller. */
static void conn_kick(http_conn *c)
{
    if (!c || c->closing || c->kicked)
        return;
    c->kicked = 1;
    c->kick_next = c->srv->kick_list;
    c->srv->kick_list = c;
    uv_idle_start(&c->srv->kick, conn_kick_cb);
}

static void conn_unkick(http_conn *c)
{
    if (!c->kicked)
        return;
    for (http_conn **pp = &c->srv->kick_list; *pp; pp = &(*pp)->kick_next) {
        if (*pp == c) {
            *pp = c->kick_next;
            break;
        }
    }
    c->kicked = 0;
    c->kick_next = NULL;
}

/* ---------------------------------------------------------------- connection I/O */

static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    http_conn *c = h->data;
    (void)suggested;
    if (c->tls) {
        if (!c->srv->tls_rbuf)
            c->srv->tls_rbuf = xmalloc(HTTP_READ_SIZE);
        *buf = uv_buf_init(c->srv->tls_rbuf, HTTP_READ_SIZE);
        return;
    }
    if (!c->rbuf)
        c->rbuf = xmalloc(HTTP_READ_SIZE);
    *buf = uv_buf_init(c->rbuf, HTTP_READ_SIZE);
}

/* The end of the input (EOF or an error). */
static void conn_input_end(http_conn *c, ssize_t nread)
{
    int working = 0;
    for (http_req *r = c->head; r; r = r->next)
        working |= r->handler_owes && !r->srv_replied;
    if (nread == UV_EOF && !c->lingering && !c->cur && c->nreqs > 0 && !working) {
        /* every answer is ready: let them go out, then close */
        c->eof = 1;
        c->no_more = 1;
        conn_update(c);
        return;
    }
    /* idle, a request cut short, or the client left while handlers work (as nginx, an
     * end of input then is the client going away: handlers are told by on_close) */
    conn_close(c);
}

static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    http_conn *c = s->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        conn_input_end(c, nread);
        return;
    }
    if (c->lingering)
        return; /* our last response went out: what follows is dropped */
    if (c->tls) {
        tls_conn_feed(c->tls, buf->base, (size_t)nread);
        if (c->tkind == TIMER_BODY)
            conn_arm(c, TIMER_BODY, c->srv->limits.body_timeout_ms);
        conn_process(c);
        return;
    }
    c->roff = 0;
    c->rlen = (size_t)nread;
    if (c->tkind == TIMER_BODY)
        conn_arm(c, TIMER_BODY, c->srv->limits.body_timeout_ms);
    conn_process(c);
}

/* Reads while the buffer is empty, even when the parser is blocked: one buffer of input is
 * the most kept (backpressure), and an end of input (client gone) is seen meanwhile. */
static void conn_update_reading(http_conn *c)
{
    int want = !c->closing && !c->eof &&
               (c->lingering || (!c->shutting && c->rlen == 0 &&
                                 !(c->tls && tls_conn_pending(c->tls))));
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_on_read) == 0)
            c->reading = 1;
        else
            conn_close(c);
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void conn_on_shutdown(uv_shutdown_t *req, int status)
{
    http_conn *c = req->data;
    if (c->closing)
        return;
    if (status < 0 || c->eof) {
        conn_close(c);
        return;
    }
    c->lingering = 1;
    c->rlen = 0;
    conn_arm(c, TIMER_LINGER, HTTP_LINGER_MS);
    conn_update_reading(c);
}

/* After any change: output, reading, timers, and whether the connection is done. */
static void conn_update(http_conn *c)
{
    if (!c || c->closing)
        return;
    http_server *srv = c->srv;
    conn_flush(c);
    if (c->closing)
        return;
    int idle = c->nreqs == 0 && !c->cur;
    if (idle && (c->eof || c->no_more || (srv->draining && c->served > 0)))
        c->shutting = 1; /* nothing more will be answered here: close once the output left */
    if (c->shutting) {
        if (c->writes_inflight == 0 && !c->lingering && !c->shutdown_req.data) {
            if (c->tls && tls_conn_handshake_done(c->tls) && !c->tls_closed) {
                tls_conn_close_notify(c->tls);
                conn_tls_flush(c);
            }
            c->shutdown_req.data = c;
            if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, conn_on_shutdown) != 0) {
                conn_close(c);
                return;
            }
        }
        conn_update_reading(c);
        return;
    }
    if (!c->in_feed && (c->rlen > 0 || c->llhttp_paused || (c->tls && tls_conn_pending(c->tls))) &&
        !conn_blocked(c))
        conn_kick(c);
    conn_update_reading(c);
    if (c->closing)
        return;

    /* timers */
    if (c->cur && !c->cur->headers_done) {
        if (c->tkind != TIMER_HEADER)
            conn_arm(c, TIMER_HEADER, srv->limits.header_timeout_ms);
    } else if (c->cur && c->cur->has_body && !c->cur->body_done && !conn_blocked(c)) {
        if (c->tkind != TIMER_BODY)
            conn_arm(c, TIMER_BODY, srv->limits.body_timeout_ms);
    } else if (idle && c->rlen == 0 && c->writes_inflight == 0) {
        if (c->served == 0) {
            if (c->tkind != TIMER_HEADER)
                conn_arm(c, TIMER_HEADER, srv->limits.header_timeout_ms);
        } else if (c->tkind != TIMER_IDLE) {
            conn_arm(c, TIMER_IDLE, srv->limits.idle_timeout_ms);
        }
        if (c->rbuf && !c->in_feed) {
            free(c->rbuf); /* idle keep-alive connections hold no buffer */
            c->rbuf = NULL;
        }
    } else if (c->tkind != TIMER_NONE) {
        conn_disarm(c);
    }
}

static void conn_free(http_conn *c)
{
    http_server *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c->rbuf);
    tls_conn_free(c->tls);
    free(c);
    srv->nalive--;
    srv_check_done(srv);
}

static void conn_on_handle_closed(uv_handle_t *h)
{
    http_conn *c = h->data;
    if (--c->handles_open == 0)
        conn_free(c);
}

/* Closes at once. Requests still waiting for their handler are told (on_close) and stay
 * valid until their reply; output not sent is dropped (callbacks with UV_ECANCELED). */
static void conn_close(http_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->srv->nconns--;
    if (c->hooked)
        c->srv->conn_hook(c->srv->handler_ud, c->peer, 0);
    conn_unkick(c);
    if (c->reading)
        uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
    uv_timer_stop(&c->timer);
    uv_timer_stop(&c->send_timer);
    uv_close((uv_handle_t *)&c->tcp, conn_on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, conn_on_handle_closed);
    uv_close((uv_handle_t *)&c->send_timer, conn_on_handle_closed);

    http_req *cur = c->cur;
    c->cur = NULL;
    if (cur && !cur->in_queue) {
        /* answered already, its body was still being parsed (or abandoned) */
        cur->conn = NULL;
        cur->parsing = 0;
        req_maybe_free(cur);
    }
    http_req *list = c->head;
    c->head = c->tail = NULL;
    c->nreqs = 0;
    for (http_req *r = list; r; r = r->next) {
        req_hold(r); /* the callbacks below may end any of them */
        r->conn = NULL;
        r->in_queue = 0;
        r->parsing = 0;
        r->closed = 1;
        if (r->body_mode == BODY_READ && !r->body_done && r->handler_owes && !r->srv_replied)
            r->handler_owes = 0; /* its done callback will never come */
    }
    http_req *r = list;
    while (r) {
        http_req *next = r->next;
        r->next = NULL;
        req_cancel_out(r);
        if (r->handler_owes && !r->resp_ended && r->on_close) {
            http_req_fn fn = r->on_close;
            r->on_close = NULL;
            fn(r);
        }
        req_release(r);
        r = next;
    }
    srv_check_done(c->srv);
}

static void conn_free_unaccepted(uv_handle_t *h)
{
    free(h->data);
}

static void srv_on_connection(uv_stream_t *ls, int status)
{
    http_server *srv = ls->data;
    if (status < 0)
        return;
    http_conn *c = xcalloc(1, sizeof *c);
    c->srv = srv;
    uv_tcp_init(srv->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0 || srv->draining ||
        srv->nconns >= srv->limits.max_connections) {
        uv_close((uv_handle_t *)&c->tcp, conn_free_unaccepted);
        return;
    }
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
                uv_inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], c->peer, sizeof c->peer);
            else
                uv_ip6_name(s6, c->peer, sizeof c->peer);
        } else if (ss.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof c->peer);
        }
    }

    if (srv->conn_hook) {
        if (srv->conn_hook(srv->handler_ud, c->peer, 1) != 0) {
            uv_close((uv_handle_t *)&c->tcp, conn_free_unaccepted);
            return;
        }
        c->hooked = 1;
    }
    if (srv->tls && !(c->tls = tls_conn_new(srv->tls))) {
        if (c->hooked)
            srv->conn_hook(srv->handler_ud, c->peer, 0);
        uv_close((uv_handle_t *)&c->tcp, conn_free_unaccepted);
        return;
    }
    uv_timer_init(srv->loop, &c->timer);
    uv_timer_init(srv->loop, &c->send_timer);
    c->timer.data = c->send_timer.data = c;
    c->handles_open = 3;
    llhttp_init(&c->parser, HTTP_REQUEST, &http_parser_settings);
    c->parser.data = c;
    uv_tcp_nodelay(&c->tcp, 1);

    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    srv->nalive++;
    conn_update(c);
}

/* ---------------------------------------------------------------- the server */

http_server *http_server_new(uv_loop_t *loop, const http_server_opts *opts)
{
    http_settings_init();
    http_server *srv = xcalloc(1, sizeof *srv);
    srv->loop = loop;
    http_limits d;
    http_limits_default(&d);
    srv->limits = opts->limits;
    http_limits *l = &srv->limits;
#define HTTP_DEFAULT(f) if (!l->f) l->f = d.f
    HTTP_DEFAULT(max_request_line);
    HTTP_DEFAULT(max_header_line);
    HTTP_DEFAULT(max_headers_size);
    HTTP_DEFAULT(max_headers);
    HTTP_DEFAULT(max_body);
    HTTP_DEFAULT(header_timeout_ms);
    HTTP_DEFAULT(body_timeout_ms);
    HTTP_DEFAULT(idle_timeout_ms);
    HTTP_DEFAULT(send_timeout_ms);
    HTTP_DEFAULT(max_pipeline);
    HTTP_DEFAULT(max_connections);
#undef HTTP_DEFAULT
    srv->handler = opts->handler;
    srv->handler_ud = opts->handler_ud;
    srv->tls = opts->tls;
    srv->conn_hook = opts->conn_hook;
    srv->error_headers = opts->error_headers;
    if (opts->server_name)
        srv->server_name = xstrndup(opts->server_name, strlen(opts->server_name));
    uv_idle_init(loop, &srv->kick);
    srv->kick.data = srv;
    uv_timer_init(loop, &srv->drain_timer);
    srv->drain_timer.data = srv;
    srv->handles_open = 2;
    return srv;
}

static void srv_close_listener(http_server *srv);

/* Serves fd. On failure the fd is closed when close_fd_on_error, else left to the caller. */
static int srv_listen_on(http_server *srv, int fd, int close_fd_on_error)
{
    if (srv->listener_state != 0 || srv->draining || srv->freeing)
        return UV_EBUSY;
    uv_tcp_init(srv->loop, &srv->listener);
    srv->listener.data = srv;
    srv->handles_open++;
    srv->listener_state = 1;
    int rc = uv_tcp_open(&srv->listener, fd);
    if (rc != 0) {
        srv_close_listener(srv);
        if (close_fd_on_error)
            close(fd);
        return rc;
    }
    rc = uv_listen((uv_stream_t *)&srv->listener, 511, srv_on_connection);
    if (rc != 0)
        srv_close_listener(srv); /* the handle owns fd now: closed with it */
    return rc;
}

static void srv_on_handle_closed(uv_handle_t *h)
{
    http_server *srv = h->data;
    srv->handles_open--;
    srv_check_done(srv);
}

static void srv_close_listener(http_server *srv)
{
    if (srv->listener_state == 1) {
        srv->listener_state = 2;
        uv_close((uv_handle_t *)&srv->listener, srv_on_handle_closed);
    }
}

int http_server_listen(http_server *srv, const char *host, int port, int reuseport)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (srv->listener_state != 0 || srv->draining || srv->freeing)
        return UV_EBUSY;
    if (!host || !*host)
        host = "0.0.0.0";
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)
        return UV_EINVAL;
    socklen_t sl = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                            : sizeof(struct sockaddr_in);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
        bind(fd, (struct sockaddr *)&ss, sl) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return srv_listen_on(srv, fd, 1);
}

int http_server_listen_fd(http_server *srv, int fd)
{
    return srv_listen_on(srv, fd, 0);
}

unsigned http_server_connections(const http_server *srv)
{
    return srv->nconns;
}

uv_loop_t *http_server_loop(const http_server *srv)
{
    return srv->loop;
}

static void srv_check_done(http_server *srv)
{
    if (srv->freeing) {
        if (srv->handles_open == 0 && srv->nalive == 0) {
            free(srv->server_name);
            free(srv->tls_rbuf);
            free(srv);
        }
        return;
    }
    if (srv->draining && !srv->drain_fired && srv->nalive == 0 && srv->listener_state != 1) {
        srv->drain_fired = 1;
        uv_timer_stop(&srv->drain_timer);
        uv_idle_stop(&srv->kick);
        if (srv->drain_done)
            srv->drain_done(srv, srv->drain_ud);
    }
}

static void srv_drain_timeout(uv_timer_t *t)
{
    http_server *srv = t->data;
    http_conn *c = srv->conns;
    while (c) {
        http_conn *next = c->next;
        conn_close(c);
        c = next;
    }
    srv_check_done(srv);
}

void http_server_drain(http_server *srv, unsigned timeout_ms,
                       void (*done)(http_server *, void *), void *ud)
{
    if (srv->draining || srv->freeing)
        return;
    srv->draining = 1;
    srv->drain_done = done;
    srv->drain_ud = ud;
    srv_close_listener(srv);
    http_conn *c = srv->conns;
    while (c) {
        http_conn *next = c->next;
        if (!c->closing) {
            int dispatched = 0;
            for (http_req *r = c->head; r; r = r->next)
                dispatched |= r->headers_done;
            if (c->served == 0 && !c->cur) {
                /* just accepted (maybe in its TLS handshake): its first request is still
                 * served, with Connection: close; the header timeout bounds the wait */
            } else if (!dispatched && !c->cur && c->writes_inflight == 0) {
                conn_close(c); /* idle between keep-alive requests */
            } else {
                c->no_more = 1;
                conn_update(c);
            }
        }
        c = next;
    }
    /* done is called from the loop, never from inside this call */
    uv_timer_start(&srv->drain_timer, srv_drain_timeout, srv->nalive ? timeout_ms : 0, 0);
}

void http_server_free(http_server *srv)
{
    if (!srv || srv->freeing)
        return;
    srv->freeing = 1;
    srv_close_listener(srv);
    http_conn *c = srv->conns;
    while (c) {
        http_conn *next = c->next;
        conn_close(c);
        c = next;
    }
    uv_close((uv_handle_t *)&srv->kick, srv_on_handle_closed);
    uv_close((uv_handle_t *)&srv->drain_timer, srv_on_handle_closed);
}
