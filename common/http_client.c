/* http_client: HTTP/1.1 client on libuv + llhttp (see http_client.h).
 *
 * An http_exchange is one request and its response; it runs on an hc_conn, one TCP connection
 * with its llhttp response parser and one timer. Idle connections wait in a bucket per peer
 * address (most recently used first) and keep reading, so that a close by the server removes
 * them at once. The conn timer serves every timeout of its connection: connect, read gap (only
 * while we wait on the peer: a write in flight, or the request sent and the response not
 * paused), the fetch deadline, the idle timeout, and a zero delay "kick" used to report an
 * early error or to parse the rest of a buffer after http_exchange_resume without re-entering
 * the caller. Reads go to one buffer of the client, shared by its connections, and are parsed
 * at once; a connection keeps a copy only of what a pause left unparsed.
 *
 * Rules callers can rely on:
 *   - on_done is called exactly once, after every write callback of the exchange has fired
 *     (writes that did not complete get UV_ECANCELED); http_exchange_abort calls on_done before
 *     it returns; x must not be used after on_done.
 *   - http_exchange_start returns NULL (and http_client_fetch calls back at once with
 *     HC_ECANCELED) only while the client is being freed, i.e. from an on_done called by
 *     http_client_free. Otherwise every outcome, even a request that cannot be framed (CR/LF in
 *     a header...: HC_EPROTO), is reported from the loop, never inside the starting call.
 *   - response heads over 64 KiB or 128 header lines are HC_EPROTO; trailers are ignored.
 *   - so is a response with a header name that is not a token ("Set Cookie"), a control
 *     character in a header value, or over HTTP_CHUNK_EXT_MAX bytes of one chunk's extensions.
 *   - a response that ends before the request body does ends the exchange with HC_OK and the
 *     connection is closed rather than pooled.
 *   - 1xx responses other than 101 are skipped; 101 is HC_EPROTO (no upgrades here).
 *   - a write of 0 bytes, past the Content-Length or after end_body returns UV_EINVAL;
 *     end_body short of the Content-Length aborts the exchange.
 *   - the retry on a fresh connection (reused connection closed before any response byte)
 *     happens only while no byte of a streamed body went out; fetch() keeps its body and can
 *     always replay it. */
#include "http_client.h"
#include "http_client_int.h"
#include "buf.h"
#include "http_headers.h"
#include "http_syntax.h"
#include "net_addr.h"
#include "queue.h"
#include "uvbufs.h"
#include "xalloc.h"

#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>

static void hc_conn_arm(hc_conn *k);
static void hc_conn_update(hc_conn *k);
static void hc_conn_close(hc_conn *k);
static void hc_exchange_attach(http_exchange *x, int allow_pool);
static void hc_timer_cb(uv_timer_t *t);

const char *hc_strerror(hc_err err)
{
    switch (err) {
    case HC_OK: return "ok";
    case HC_ECONNECT: return "could not connect";
    case HC_ETIMEOUT: return "timed out";
    case HC_ERESET: return "connection reset";
    case HC_EPROTO: return "invalid response";
    case HC_ETOOBIG: return "response too big";
    case HC_ECANCELED: return "canceled";
    }
    return "unknown error";
}

void http_client_opts_default(http_client_opts *o)
{
    o->connect_timeout_ms = 2000;
    o->read_timeout_ms = 30000;
    o->idle_timeout_ms = 30000;
    o->max_idle_per_peer = 32;
    o->max_response = 8u << 20;
}

http_client *http_client_new(uv_loop_t *loop, const http_client_opts *opts)
{
    http_client *c = xcalloc(1, sizeof *c);
    c->loop = loop;
    if (opts)
        c->opts = *opts;
    else
        http_client_opts_default(&c->opts);
    return c;
}

/* ---- the request head ---- */

/* The length of a token, or 0 when s is not one. */
static size_t hc_token_len(const char *s)
{
    size_t n = strlen(s);
    return http_syntax_token(s, n) ? n : 0;
}

/* The length of header text (the target: no space either), or (size_t)-1 when it holds a
 * control character other than tab (no CR/LF injection). */
static size_t hc_field_len(const char *s, int allow_space)
{
    const char *p = s;
    for (; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == 0x7f || (ch < 0x20 && ch != '\t'))
            return (size_t)-1;
        if (!allow_space && (ch == ' ' || ch == '\t'))
            return (size_t)-1;
    }
    return (size_t)(p - s);
}

static int hc_method_has_body(const char *m)
{
    return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
}

static char *hc_put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

/* Frames the head (sized first, written once); 0 on success, -1 when a piece is not valid
 * HTTP. */
static int hc_build_head(http_exchange *x, const char *method, const char *target,
                         const http_header *h, size_t n)
{
    size_t ml = method ? hc_token_len(method) : 0;
    size_t tl = target ? hc_field_len(target, 0) : (size_t)-1;
    if (ml == 0 || tl == 0 || tl == (size_t)-1)
        return -1;
    size_t small[2 * 32], *lens = n <= 32 ? small : xmalloc(2 * n * sizeof *lens);
    size_t size = ml + 1 + tl + 11 + 2;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        lens[2 * i] = hc_token_len(h[i].name);
        lens[2 * i + 1] = hc_field_len(h[i].value, 1);
        if (lens[2 * i] == 0 || lens[2 * i + 1] == (size_t)-1)
            rc = -1;
        size += lens[2 * i] + 2 + lens[2 * i + 1] + 2;
    }
    if (rc != 0) {
        if (lens != small)
            free(lens);
        return -1;
    }
    char host[80] = "";
    size += 6 + sizeof host + 2 + 28 + 16 + 20 + 2;
    if (x->head_cap < size) {
        free(x->head);
        x->head = xmalloc(size);
        x->head_cap = size;
    }
    char *head = x->head;
    char *p = head;
    int have_host = 0;
    p = hc_put(p, method, ml);
    *p++ = ' ';
    p = hc_put(p, target, tl);
    p = hc_put(p, " HTTP/1.1\r\n", 11);
    for (size_t i = 0; i < n; i++) {
        const char *name = h[i].name;
        if (http_headers_flags(name) & HTTP_HDR_FRAMING)
            continue; /* we frame the body ourselves */
        if ((name[0] | 0x20) == 'h' && strcasecmp(name, "Host") == 0) {
            if (have_host)
                continue;
            have_host = 1;
        }
        if ((name[0] | 0x20) == 'c' && strcasecmp(name, "Connection") == 0 &&
            http_headers_list_has(h[i].value, "close"))
            x->req_close = 1;
        p = hc_put(p, name, lens[2 * i]);
        p = hc_put(p, ": ", 2);
        p = hc_put(p, h[i].value, lens[2 * i + 1]);
        p = hc_put(p, "\r\n", 2);
    }
    if (lens != small)
        free(lens);
    if (!have_host) {
        net_addr_text((const struct sockaddr *)&x->addr, host, sizeof host);
        p = hc_put(p, "Host: ", 6);
        p = hc_put(p, host, strlen(host));
        p = hc_put(p, "\r\n", 2);
    }
    if (x->body_len < 0) {
        p = hc_put(p, "Transfer-Encoding: chunked\r\n", 28);
    } else if (x->body_len > 0 || hc_method_has_body(method)) {
        char line[48];
        int k = snprintf(line, sizeof line, "Content-Length: %lld\r\n", (long long)x->body_len);
        p = hc_put(p, line, (size_t)k);
    }
    p = hc_put(p, "\r\n", 2);
    *p = '\0';
    x->head_len = (size_t)(p - head);
    return 0;
}

/* ---- the exchange's list of writes ---- */

static void hc_wlist_append(http_exchange *x, hc_wreq *w)
{
    DQ_PUSH_TAIL(x->wfirst, x->wlast, w, next, prev);
}

static void hc_wlist_prepend(http_exchange *x, hc_wreq *w)
{
    DQ_PUSH_HEAD(x->wfirst, x->wlast, w, next, prev);
}

static void hc_wlist_unlink(http_exchange *x, hc_wreq *w)
{
    DQ_REMOVE(x->wfirst, x->wlast, w, next, prev);
    w->prev = w->next = NULL;
}

/* ---- exchange lifetime ---- */

/* Each thread keeps up to HC_SPARE finished exchanges with the room of their buffers (the
 * request head, the response's headers), so that a proxied request allocates none of them. */
#define HC_SPARE 64
static _Thread_local http_exchange *hc_spare;
static _Thread_local unsigned hc_nspare;

static void hc_exchange_release(http_exchange *x)
{
    free(x->head);
    buf_free(&x->hbuf);
    free(x->hoff);
    free(x->hdrs);
    free(x);
}

static void hc_exchange_free(http_exchange *x)
{
    if (hc_nspare >= HC_SPARE || !x->head || !x->hbuf.p || !x->hoff || !x->hdrs) {
        hc_exchange_release(x);
        return;
    }
    x->spare_next = hc_spare;
    hc_spare = x;
    hc_nspare++;
    xalloc_retire(x->head, x->head_cap);
    xalloc_retire(x->hbuf.p, x->hbuf.cap);
    xalloc_retire(x->hoff, x->hoff_cap * sizeof *x->hoff);
    xalloc_retire(x->hdrs, x->hdrs_cap * sizeof *x->hdrs);
    xalloc_retire(x, sizeof *x);
}

/* A zeroed exchange: a spare one (its buffers kept, empty) or a new one. */
static http_exchange *hc_exchange_alloc(void)
{
    http_exchange *x = hc_spare;
    if (!x)
        return xcalloc(1, sizeof *x);
    xalloc_revive(x, sizeof *x);
    hc_spare = x->spare_next;
    hc_nspare--;
    http_exchange keep = *x;
    memset(x, 0, sizeof *x);
    x->head = keep.head;
    x->head_cap = keep.head_cap;
    x->hbuf = keep.hbuf;
    x->hoff = keep.hoff;
    x->hoff_cap = keep.hoff_cap;
    x->hdrs = keep.hdrs;
    x->hdrs_cap = keep.hdrs_cap;
    xalloc_revive(x->head, x->head_cap);
    xalloc_revive(x->hbuf.p, x->hbuf.cap);
    xalloc_revive(x->hoff, x->hoff_cap * sizeof *x->hoff);
    xalloc_revive(x->hdrs, x->hdrs_cap * sizeof *x->hdrs);
    x->hbuf.len = 0;
    x->hbuf.p[0] = '\0';
    return x;
}

/* Ends a hold on x; returns 1 when x has finished (it is freed unless an outer hold remains):
 * the caller must then stop using it. */
static int hc_x_drop(http_exchange *x)
{
    x->holds--;
    if (!x->finished)
        return 0;
    if (x->holds == 0)
        hc_exchange_free(x);
    return 1;
}

static int hc_req_complete(const http_exchange *x)
{
    return x->head_submitted && x->body_ended && x->wfirst == NULL;
}

void hc_headers_reset(http_exchange *x)
{
    buf_truncate(&x->hbuf, 0);
    x->nh = 0;
    x->hstate = 0;
    x->headers_done = 0;
}

/* ---- connections ---- */

static void hc_write_done(hc_wreq *w, int status);

/* The completions of the writes the socket took at once, in order, as libuv would report
 * them (from the loop). */
static void hc_write_completions(hc_conn *k, int status)
{
    while (k->wdone) {
        hc_wreq *w;
        SQ_POP(k->wdone, k->wdone_tail, w, done_next);
        hc_write_done(w, status);
    }
}

static void hc_close_cb(uv_handle_t *h)
{
    hc_conn *k = h->data;
    if (--k->nclosing == 0) {
        hc_write_completions(k, UV_ECANCELED); /* as libuv ends its own at the close */
        free(k->pend);
        free(k);
    }
}

static void hc_bucket_remove(http_client *c, hc_conn *k)
{
    hc_bucket *b = k->bucket;
    hc_conn **pp = &b->idle;
    while (*pp && *pp != k)
        pp = &(*pp)->idle_next;
    if (*pp) {
        *pp = k->idle_next;
        b->n--;
    }
    k->bucket = NULL;
    k->idle_next = NULL;
    if (b->n == 0) {
        hc_bucket **bp = &c->buckets;
        while (*bp != b)
            bp = &(*bp)->next;
        *bp = b->next;
        free(b);
    }
}

static void hc_conn_close(hc_conn *k)
{
    http_client *c = k->c;
    if (k->state == HC_CLOSING)
        return;
    if (k->bucket)
        hc_bucket_remove(c, k);
    if (k->prev)
        k->prev->next = k->next;
    else
        c->conns = k->next;
    if (k->next)
        k->next->prev = k->prev;
    k->prev = k->next = NULL;
    k->state = HC_CLOSING;
    k->nclosing = 2;
    uv_close((uv_handle_t *)&k->tcp, hc_close_cb);
    uv_close((uv_handle_t *)&k->timer, hc_close_cb);
}

static hc_conn *hc_conn_new(http_client *c, const struct sockaddr *addr)
{
    hc_conn *k = xcalloc(1, sizeof *k);
    k->c = c;
    memcpy(&k->addr, addr, net_addr_len(addr));
    /* Neither init can fail: the socket itself is created by uv_tcp_connect. */
    uv_tcp_init(c->loop, &k->tcp);
    uv_timer_init(c->loop, &k->timer);
    k->tcp.data = k;
    k->timer.data = k;
    k->creq.data = k;
    k->state = HC_CONNECTING;
    k->next = c->conns;
    if (c->conns)
        c->conns->prev = k;
    c->conns = k;
    return k;
}

static hc_conn *hc_pool_take(http_client *c, const struct sockaddr *addr)
{
    for (hc_bucket *b = c->buckets; b; b = b->next) {
        if (!net_addr_eq((const struct sockaddr *)&b->addr, addr))
            continue;
        hc_conn *k = b->idle;
        hc_bucket_remove(c, k);
        return k;
    }
    return NULL;
}

static void hc_conn_to_pool(hc_conn *k)
{
    http_client *c = k->c;
    hc_bucket *b;
    if (c->freeing || c->opts.idle_timeout_ms == 0 || c->opts.max_idle_per_peer == 0) {
        hc_conn_close(k);
        return;
    }
    for (b = c->buckets; b; b = b->next)
        if (net_addr_eq((const struct sockaddr *)&b->addr, (const struct sockaddr *)&k->addr))
            break;
    if (b && b->n >= c->opts.max_idle_per_peer) {
        hc_conn_close(k);
        return;
    }
    if (!b) {
        b = xcalloc(1, sizeof *b);
        memcpy(&b->addr, &k->addr, sizeof b->addr);
        b->next = c->buckets;
        c->buckets = b;
    }
    k->state = HC_IDLE;
    k->reused = 1;
    k->waiting = 0;
    k->kick = 0;
    k->parked = 0;
    free(k->pend);
    k->pend = NULL;
    k->pend_len = 0;
    k->idle_since = uv_now(c->loop);
    k->bucket = b;
    k->idle_next = b->idle;
    b->idle = k;
    b->n++;
    hc_conn_update(k);
}

/* Reads while idle (to notice a close) and while a response is wanted. */
static void hc_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    hc_conn *k = h->data;
    (void)suggested;
    if (!k->c->rbuf)
        k->c->rbuf = xmalloc(HC_RBUF);
    buf->base = k->c->rbuf;
    buf->len = HC_RBUF;
}

static void hc_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void hc_conn_update(hc_conn *k)
{
    int want;
    if (k->state == HC_CLOSING)
        return;
    if (k->state == HC_IDLE)
        want = 1;
    else if (k->state == HC_ACTIVE)
        want = k->x && !k->x->paused && !k->parked && !k->kick;
    else
        want = 0;
    if (want && !k->reading) {
        if (uv_read_start((uv_stream_t *)&k->tcp, hc_alloc_cb, hc_read_cb) == 0) {
            k->reading = 1;
        } else if (k->x) {
            k->pending_err = HC_ERESET;
        } else {
            hc_conn_close(k);
            return;
        }
    } else if (!want && k->reading) {
        uv_read_stop((uv_stream_t *)&k->tcp);
        k->reading = 0;
    }
    hc_conn_arm(k);
}

/* Whether the peer owes us something: a write to drain, or the response. */
static int hc_waiting_on_peer(const hc_conn *k, const http_exchange *x)
{
    if (k->inflight > 0)
        return 1;
    if (x->paused || k->parked)
        return 0;
    return hc_req_complete(x) || x->got_byte;
}

/* When the timer is due, HC_NO_TIME for never. */
static uint64_t hc_conn_due(hc_conn *k)
{
    http_client *c = k->c;
    http_exchange *x = k->x;
    uint64_t now = uv_now(c->loop), due = HC_NO_TIME;
    switch (k->state) {
    case HC_IDLE: return k->idle_since + c->opts.idle_timeout_ms;
    case HC_CONNECTING: due = k->connect_deadline; break;
    case HC_ACTIVE: {
        int waiting = x && hc_waiting_on_peer(k, x);
        if (waiting && !k->waiting)
            k->last_progress = now;
        k->waiting = waiting;
        if (waiting)
            due = k->last_progress + c->opts.read_timeout_ms;
        break;
    }
    default: return HC_NO_TIME;
    }
    if (x && x->deadline && x->deadline < due)
        due = x->deadline;
    return due;
}

static void hc_conn_arm(hc_conn *k)
{
    uint64_t now, due;
    if (k->state == HC_CLOSING)
        return;
    if (k->kick || k->wdone || k->pending_err != HC_OK) {
        uv_timer_start(&k->timer, hc_timer_cb, 0, 0);
        return;
    }
    due = hc_conn_due(k);
    if (due == HC_NO_TIME) {
        uv_timer_stop(&k->timer);
        return;
    }
    now = uv_now(k->c->loop);
    /* A running timer that fires no later is left: it arms again for the rest (hc_timer_cb).
     * An exchange would otherwise move the timer three times. */
    if (uv_is_active((uv_handle_t *)&k->timer) && now + uv_timer_get_due_in(&k->timer) <= due)
        return;
    uv_timer_start(&k->timer, hc_timer_cb, due > now ? due - now : 0, 0);
}

/* ---- writing ---- */

static void hc_write_cb(uv_write_t *req, int status);

/* The socket is offered the write at once (uv_try_write: no write request, and no change to
 * what the event loop watches); what it does not take goes to uv_write. */
static int hc_submit(hc_conn *k, http_exchange *x, hc_wreq *w)
{
    int r;
    w->conn = k;
    w->submitted = 1;
    k->inflight++;
    if (w->kind == HC_W_BODY)
        x->body_submitted++;
    size_t total = 0;
    for (unsigned i = 0; i < w->nbufs; i++)
        total += w->bufs[i].len;
    r = uv_try_write((uv_stream_t *)&k->tcp, w->bufs, w->nbufs);
    if (r >= 0 && (size_t)r == total) {
        SQ_PUSH(k->wdone, k->wdone_tail, w, done_next);
        return 0; /* completed from the timer: the callers arm it (hc_conn_arm) */
    }
    unsigned nrest = w->nbufs;
    uv_buf_t *rest = uvbufs_skip(w->bufs, &nrest, r > 0 ? (size_t)r : 0);
    r = uv_write(&w->req, (uv_stream_t *)&k->tcp, rest, nrest, hc_write_cb);
    if (r < 0) {
        w->submitted = 0;
        w->conn = NULL;
        k->inflight--;
        if (w->kind == HC_W_BODY)
            x->body_submitted--;
        k->pending_err = HC_ERESET;
        return -1;
    }
    return 0;
}

/* Hands queued body writes (and the last chunk) to the socket once the head is out. */
static void hc_exchange_flush(http_exchange *x)
{
    hc_conn *k = x->conn;
    if (!k || k->state != HC_ACTIVE || !x->head_submitted || k->pending_err != HC_OK)
        return;
    for (hc_wreq *w = x->wfirst; w; w = w->next) {
        if (w->submitted)
            continue;
        if (hc_submit(k, x, w) < 0)
            return;
    }
    if (x->body_ended && x->chunked && !x->end_sent) {
        hc_wreq *w = xcalloc(1, sizeof *w);
        w->req.data = w;
        w->x = x;
        w->kind = HC_W_END;
        w->bufs[0] = uv_buf_init("0\r\n\r\n", 5);
        w->nbufs = 1;
        hc_wlist_append(x, w);
        x->end_sent = 1;
        hc_submit(k, x, w);
    }
}

/* Starts the request on an ACTIVE connection. */
static void hc_conn_send(hc_conn *k)
{
    http_exchange *x = k->x;
    hc_wreq *w = xcalloc(1, sizeof *w);
    w->req.data = w;
    w->x = x;
    w->kind = HC_W_HEAD;
    w->bufs[0] = uv_buf_init(x->head, (unsigned)x->head_len);
    w->nbufs = 1;
    if (x->owned_len > 0)
        w->bufs[w->nbufs++] = uv_buf_init((char *)x->owned_body, (unsigned)x->owned_len);
    hc_wlist_prepend(x, w);
    x->head_submitted = 1;
    x->sent_any = 1;
    if (hc_submit(k, x, w) == 0)
        hc_exchange_flush(x);
}

/* Before a retry: drops the head and the last chunk (sent again on the new connection); the
 * queue of body writes stays (none of them was submitted, or there is no retry). */
static void hc_exchange_drop_internal(http_exchange *x)
{
    hc_wreq *w = x->wfirst;
    while (w) {
        hc_wreq *next = w->next;
        if (w->kind != HC_W_BODY) {
            hc_wlist_unlink(x, w);
            if (w->submitted)
                w->x = NULL; /* libuv still owns it */
            else
                free(w);
        }
        w = next;
    }
}

/* Every write still listed gets UV_ECANCELED (the exchange is ending). */
static void hc_exchange_cancel_writes(http_exchange *x)
{
    while (x->wfirst) {
        hc_wreq *w = x->wfirst;
        void (*cb)(http_exchange *, int, void *) = w->cb;
        void *ud = w->ud;
        hc_wlist_unlink(x, w);
        if (w->submitted)
            w->x = NULL; /* libuv still owns it */
        else
            free(w);
        if (cb)
            cb(x, UV_ECANCELED, ud);
    }
}

static int hc_can_retry(const hc_conn *k, const http_exchange *x)
{
    return k->reused && !x->got_byte && !x->retried && x->body_submitted == 0 && !k->c->freeing;
}

/* The connection broke (EOF, reset, write error) before the response ended. */
static void hc_conn_broken(hc_conn *k)
{
    http_exchange *x = k->x;
    if (!x) {
        hc_conn_close(k);
        return;
    }
    if (x->got_byte || !hc_can_retry(k, x)) {
        hc_exchange_finish(x, HC_ERESET);
        return;
    }
    /* A pooled connection the server had closed: the request was not seen, send it again on a
     * fresh connection. */
    k->x = NULL;
    x->conn = NULL;
    hc_exchange_drop_internal(x);
    hc_conn_close(k);
    x->retried = 1;
    x->sent_any = 0;
    x->head_submitted = 0;
    x->end_sent = 0;
    hc_headers_reset(x);
    hc_exchange_attach(x, 0);
}

static void hc_write_cb(uv_write_t *req, int status)
{
    hc_write_done(req->data, status);
}

static void hc_write_done(hc_wreq *w, int status)
{
    hc_conn *k = w->conn;
    http_exchange *x = w->x;
    void (*cb)(http_exchange *, int, void *) = w->cb;
    void *ud = w->ud;
    int kind = w->kind;

    k->inflight--;
    if (!x) {
        free(w);
        return;
    }
    hc_wlist_unlink(x, w);
    free(w);
    x->holds++;
    if (status < 0) {
        if (cb)
            cb(x, status, ud);
        if (hc_x_drop(x))
            return;
        hc_conn_broken(k);
        return;
    }
    k->last_progress = uv_now(k->c->loop);
    if (kind == HC_W_HEAD && !x->head_cb_done) {
        x->head_cb_done = 1;
        if (x->cbs.on_sent_head)
            x->cbs.on_sent_head(x, x->ud);
    } else if (cb) {
        cb(x, 0, ud);
    }
    if (hc_x_drop(x))
        return;
    hc_conn_arm(k);
}

static int hc_conn_reusable(const hc_conn *k, const http_exchange *x)
{
    return k->state == HC_ACTIVE && x->resp_complete && x->keep_alive && !x->extra &&
           !x->req_close && hc_req_complete(x) && k->inflight == 0 && k->pending_err == HC_OK;
}

static void hc_conn_parse(hc_conn *k, const char *data, size_t len)
{
    http_exchange *x = k->x;
    llhttp_errno_t e;
    x->holds++;
    e = llhttp_execute(&k->parser, data, len);
    if (hc_x_drop(x))
        return;
    if (x->resp_complete) {
        x->extra = llhttp_get_error_pos(&k->parser) < data + len;
        hc_exchange_finish(x, HC_OK);
        return;
    }
    if (e == HPE_PAUSED) { /* paused by the caller inside on_response/on_data */
        const char *pos = llhttp_get_error_pos(&k->parser);
        llhttp_resume(&k->parser);
        k->parked = 1;
        /* the rest leaves the shared read buffer (or the copy being parsed) */
        k->pend_len = (size_t)(data + len - pos);
        k->pend = xmalloc(k->pend_len ? k->pend_len : 1);
        memcpy(k->pend, pos, k->pend_len);
    } else if (e != HPE_OK) {
        hc_exchange_finish(x, HC_EPROTO);
        return;
    }
    hc_conn_update(k);
}

static void hc_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    hc_conn *k = s->data;
    http_exchange *x = k->x;
    (void)buf;
    if (nread == 0)
        return;
    if (k->state == HC_IDLE) { /* closed by the server, or bytes nobody asked for */
        hc_conn_close(k);
        return;
    }
    if (k->state != HC_ACTIVE || !x)
        return;
    if (nread < 0) {
        if (nread == UV_EOF && x->got_byte && llhttp_message_needs_eof(&k->parser)) {
            x->holds++;
            llhttp_finish(&k->parser); /* a body that ends with the connection */
            if (hc_x_drop(x))
                return;
            x->keep_alive = 0;
            hc_exchange_finish(x, x->resp_complete ? HC_OK : HC_EPROTO);
            return;
        }
        hc_conn_broken(k);
        return;
    }
    x->got_byte = 1;
    k->last_progress = uv_now(k->c->loop);
    hc_conn_parse(k, k->c->rbuf, (size_t)nread);
}

static void hc_connect_cb(uv_connect_t *req, int status)
{
    hc_conn *k = req->data;
    if (k->state != HC_CONNECTING)
        return; /* closed meanwhile */
    if (status < 0) {
        hc_exchange_finish(k->x, HC_ECONNECT);
        return;
    }
    k->state = HC_ACTIVE;
    uv_tcp_nodelay(&k->tcp, 1);
    hc_conn_send(k);
    hc_conn_update(k);
}

static void hc_timer_cb(uv_timer_t *t)
{
    hc_conn *k = t->data;
    uint64_t due;
    if (k->wdone) {
        hc_write_completions(k, 0);
        if (k->state != HC_CLOSING)
            hc_conn_arm(k); /* what else is due */
        return;
    }
    if (k->pending_err != HC_OK) {
        hc_err e = k->pending_err;
        k->pending_err = HC_OK;
        if (!k->x)
            hc_conn_close(k);
        else if (e == HC_ERESET)
            hc_conn_broken(k);
        else
            hc_exchange_finish(k->x, e);
        return;
    }
    if (k->kick) {
        k->kick = 0;
        if (k->state == HC_ACTIVE && k->x && k->parked) {
            /* Even with no byte left the parser must run: the message may end right here. */
            char *pend = k->pend;
            size_t len = k->pend_len;
            k->parked = 0;
            k->pend = NULL;
            k->pend_len = 0;
            hc_conn_parse(k, pend, len);
            free(pend);
        } else {
            hc_conn_update(k);
        }
        return;
    }
    due = hc_conn_due(k);
    if (due == HC_NO_TIME)
        return;
    if (due > uv_now(k->c->loop)) {
        hc_conn_arm(k);
        return;
    }
    if (k->x)
        hc_exchange_finish(k->x, HC_ETIMEOUT);
    else
        hc_conn_close(k);
}

/* ---- exchanges ---- */

/* Puts x on a pooled connection (allow_pool) or a new one. */
static void hc_exchange_attach(http_exchange *x, int allow_pool)
{
    http_client *c = x->c;
    const struct sockaddr *addr = (const struct sockaddr *)&x->addr;
    hc_conn *k = allow_pool && x->early_err == HC_OK ? hc_pool_take(c, addr) : NULL;
    if (k) {
        k->state = HC_ACTIVE;
        k->x = x;
        x->conn = k;
        llhttp_init(&k->parser, HTTP_RESPONSE, &hc_settings);
        k->parser.data = k;
        hc_conn_send(k);
        hc_conn_update(k);
        return;
    }
    k = hc_conn_new(c, addr);
    k->x = x;
    x->conn = k;
    llhttp_init(&k->parser, HTTP_RESPONSE, &hc_settings);
    k->parser.data = k;
    k->connect_deadline = uv_now(c->loop) + c->opts.connect_timeout_ms;
    if (x->early_err != HC_OK)
        k->pending_err = x->early_err;
    else if (uv_tcp_connect(&k->creq, &k->tcp, addr, hc_connect_cb) != 0)
        k->pending_err = HC_ECONNECT;
    hc_conn_arm(k);
}

static http_exchange *hc_exchange_new(http_client *c, const struct sockaddr *addr,
                                      const char *method, const char *target,
                                      const http_header *headers, size_t nheaders, int64_t body_len,
                                      const http_exchange_cbs *cbs, void *ud)
{
    http_exchange *x;
    if (c->freeing)
        return NULL;
    x = hc_exchange_alloc();
    x->c = c;
    if (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)
        memcpy(&x->addr, addr, net_addr_len(addr));
    if (cbs)
        x->cbs = *cbs;
    x->ud = ud;
    x->body_len = body_len < 0 ? -1 : body_len;
    x->chunked = body_len < 0;
    x->body_ended = body_len == 0;
    x->is_head = method && strcmp(method, "HEAD") == 0;
    if (x->addr.ss_family == AF_UNSPEC)
        x->early_err = HC_ECONNECT;
    else if (hc_build_head(x, method, target, headers, nheaders) != 0)
        x->early_err = HC_EPROTO;
    return x;
}

http_exchange *http_exchange_start(http_client *c, const struct sockaddr *addr, const char *method,
                                   const char *target, const http_header *headers, size_t nheaders,
                                   int64_t body_len, const http_exchange_cbs *cbs, void *ud)
{
    http_exchange *x =
        hc_exchange_new(c, addr, method, target, headers, nheaders, body_len, cbs, ud);
    if (x)
        hc_exchange_attach(x, 1);
    return x;
}

void hc_exchange_finish(http_exchange *x, hc_err err)
{
    hc_conn *k = x->conn;
    if (x->finished)
        return;
    x->finished = 1;
    if (k) {
        int reuse = err == HC_OK && hc_conn_reusable(k, x);
        k->x = NULL;
        x->conn = NULL;
        if (reuse)
            hc_conn_to_pool(k);
        else
            hc_conn_close(k);
    }
    x->holds++;
    hc_exchange_cancel_writes(x);
    if (x->cbs.on_done)
        x->cbs.on_done(x, err, x->ud);
    x->holds--;
    if (x->holds == 0)
        hc_exchange_free(x);
}

int http_exchange_write(http_exchange *x, const void *data, size_t len,
                        void (*cb)(http_exchange *x, int status, void *ud), void *ud)
{
    hc_wreq *w;
    if (x->finished || x->body_ended || len == 0)
        return UV_EINVAL;
    if (x->body_len > 0 && x->body_written + len > (uint64_t)x->body_len)
        return UV_EINVAL;
    w = xcalloc(1, sizeof *w);
    w->req.data = w;
    w->x = x;
    w->cb = cb;
    w->ud = ud;
    w->kind = HC_W_BODY;
    if (x->chunked) {
        int n = snprintf(w->line, sizeof w->line, "%zx\r\n", len);
        w->bufs[0] = uv_buf_init(w->line, (unsigned)n);
        w->bufs[1] = uv_buf_init((char *)data, (unsigned)len);
        w->bufs[2] = uv_buf_init("\r\n", 2);
        w->nbufs = 3;
    } else {
        w->bufs[0] = uv_buf_init((char *)data, (unsigned)len);
        w->nbufs = 1;
    }
    hc_wlist_append(x, w);
    x->body_written += len;
    hc_exchange_flush(x);
    if (x->conn)
        hc_conn_arm(x->conn);
    return 0;
}

void http_exchange_end_body(http_exchange *x)
{
    if (x->finished || x->body_ended)
        return;
    if (x->body_len > 0 && x->body_written != (uint64_t)x->body_len) {
        hc_exchange_finish(x, HC_ECANCELED);
        return;
    }
    x->body_ended = 1;
    hc_exchange_flush(x);
    if (x->conn)
        hc_conn_arm(x->conn);
}

void http_exchange_pause(http_exchange *x)
{
    if (x->finished || x->paused)
        return;
    x->paused = 1;
    if (x->conn)
        hc_conn_update(x->conn);
}

void http_exchange_resume(http_exchange *x)
{
    hc_conn *k = x->conn;
    if (x->finished || !x->paused)
        return;
    x->paused = 0;
    if (!k)
        return;
    if (k->parked)
        k->kick = 1; /* parsed from the loop, not inside this call */
    hc_conn_update(k);
}

void http_exchange_abort(http_exchange *x)
{
    if (!x->finished)
        hc_exchange_finish(x, HC_ECANCELED);
}

int http_exchange_sent_any(const http_exchange *x)
{
    return x->sent_any;
}

/* ---- buffered fetch ---- */

typedef struct hc_fetch {
    http_client *c;
    http_fetch_fn cb;
    void *ud;
    char *body;
    size_t body_len;
    buf rbody;
} hc_fetch;

static int hc_fetch_on_response(http_exchange *x, int status, const http_header *h, size_t n,
                                void *ud)
{
    hc_fetch *f = ud;
    (void)status;
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(h[i].name, "Content-Length") != 0)
            continue;
        if (strtoull(h[i].value, NULL, 10) > f->c->opts.max_response) {
            hc_exchange_finish(x, HC_ETOOBIG);
            return -1;
        }
    }
    return 0;
}

static void hc_fetch_on_data(http_exchange *x, const char *data, size_t len, void *ud)
{
    hc_fetch *f = ud;
    if (f->rbody.len + len > f->c->opts.max_response) {
        hc_exchange_finish(x, HC_ETOOBIG);
        return;
    }
    buf_append(&f->rbody, data, len);
}

static void hc_fetch_on_done(http_exchange *x, hc_err err, void *ud)
{
    hc_fetch *f = ud;
    if (err == HC_OK) {
        http_response r;
        r.status = x->status;
        r.nheaders = x->nh;
        r.headers = x->hdrs;
        buf_reserve(&f->rbody, 0); /* an empty body is "" too */
        r.body = f->rbody.p;
        r.body_len = f->rbody.len;
        f->cb(HC_OK, &r, f->ud);
    } else {
        f->cb(err, NULL, f->ud);
    }
    buf_free(&f->rbody);
    free(f->body);
    free(f);
}

static const http_exchange_cbs hc_fetch_cbs = {
    .on_response = hc_fetch_on_response,
    .on_data = hc_fetch_on_data,
    .on_done = hc_fetch_on_done,
};

void http_client_fetch(http_client *c, const struct sockaddr *addr, const char *method,
                       const char *target, const http_header *headers, size_t nheaders,
                       const void *body, size_t body_len, unsigned timeout_ms, http_fetch_fn cb,
                       void *ud)
{
    hc_fetch *f;
    http_exchange *x;
    if (c->freeing) {
        cb(HC_ECANCELED, NULL, ud);
        return;
    }
    f = xcalloc(1, sizeof *f);
    f->c = c;
    f->cb = cb;
    f->ud = ud;
    if (body_len > 0) {
        f->body = xcalloc(1, body_len);
        memcpy(f->body, body, body_len);
        f->body_len = body_len;
    }
    x = hc_exchange_new(c, addr, method, target, headers, nheaders, (int64_t)body_len,
                        &hc_fetch_cbs, f);
    x->owned_body = f->body;
    x->owned_len = f->body_len;
    x->body_written = f->body_len;
    x->body_ended = 1;
    x->deadline = uv_now(c->loop) + (timeout_ms ? timeout_ms : c->opts.read_timeout_ms);
    hc_exchange_attach(x, 1);
}

const char *http_response_header(const http_response *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

int http_client_has_peer(const http_client *c, const struct sockaddr *addr)
{
    for (const hc_conn *k = c->conns; k; k = k->next)
        if (net_addr_eq((const struct sockaddr *)&k->addr, addr))
            return 1;
    return 0;
}

unsigned http_client_drop_peer(http_client *c, const struct sockaddr *addr)
{
    unsigned ended = 0;
    hc_conn *k;
    /* From the head again after each one: an exchange's on_done may start another (a retry
     * elsewhere), which changes the list. Every step closes a connection to addr. */
    for (;;) {
        for (k = c->conns; k; k = k->next)
            if (net_addr_eq((const struct sockaddr *)&k->addr, addr))
                break;
        if (!k)
            return ended;
        if (!k->x || k->x->finished) {
            hc_conn_close(k);
            continue;
        }
        ended++;
        hc_exchange_finish(k->x, k->state == HC_CONNECTING ? HC_ECONNECT : HC_ERESET);
    }
}

void http_client_free(http_client *c)
{
    if (!c)
        return;
    c->freeing = 1;
    while (c->conns) {
        hc_conn *k = c->conns;
        if (k->x)
            hc_exchange_finish(k->x, HC_ECANCELED); /* closes k: the client is freeing */
        else
            hc_conn_close(k);
    }
    free(c->rbuf);
    free(c);
}
