/* proxy: the gateway's request handler (see proxy.h). One gw_px per proxied request holds
 * the exchange with the upstream; bodies stream both ways with at most PX_HIGH bytes queued
 * on either side before the other side is paused.
 *
 * Lifetime of a gw_px: it lives while the client's reply is not ended, the exchange runs, a
 * write callback is due, or a callback up the stack holds it. Every callback into it (from
 * the server or the client) holds it with px_hold() and ends with px_release(), the one place
 * it is freed: a callback can end the exchange (abort calls on_done at once) or the reply
 * (a failed write closes the connection and cancels the other writes) and still go on. The
 * access log is written before the reply ends, as ending it may free the request. */
#include "proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "access_log.h"
#include "gzip.h"
#include "headers.h"
#include "http_headers.h"
#include "log.h"
#include "xalloc.h"

#define PX_HIGH (256 * 1024) /* queued bytes that pause the sender */
#define PX_LOW  (64 * 1024)  /* and resume it */

typedef struct gw_px gw_px;

typedef struct px_write {
    gw_px *px;
    char *buf;
    size_t len;
} px_write;

struct gw_px {
    gw_worker *w;
    http_req *req;
    const gw_route_conf *route;
    int route_idx;
    upstream *up;
    http_exchange *x; /* the current try's */
    char client_ip[64];
    char peer_text[64];
    /* in the same allocation as the gw_px, after it (px_new): */
    http_header *hdrs; /* the request headers sent upstream (values borrowed) */
    size_t nhdrs;
    char *path;       /* normalized */
    char *target;     /* path and query, as sent upstream */
    char *xff;        /* X-Forwarded-For sent upstream */
    int64_t body_len; /* as for http_exchange_start */
    int64_t body_seen;
    int body_started, too_big;
    size_t up_pending, cl_pending;
    unsigned up_writes, cl_writes; /* write callbacks still to come */
    int req_paused, x_paused;
    int resp_started, resp_ended, client_closed;
    unsigned holds; /* callbacks up the stack using it (px_hold) */
    int tries;
    int status;
    gw_gzip *gz;
    int64_t bytes_out;
    uint64_t t0, t_up;
    int64_t upstream_us;
    px_write w0; /* the write to the client in flight, when there is one (most replies) */
    int w0_busy;
};

/* ---- the proxied request's end ---- */

static void px_maybe_free(gw_px *px)
{
    if (px->holds || !px->resp_ended || px->x || px->cl_writes || px->up_writes)
        return;
    gw_gzip_free(px->gz);
    free(px);
}

static void px_hold(gw_px *px)
{
    px->holds++;
}

static void px_release(gw_px *px)
{
    px->holds--;
    px_maybe_free(px);
}

/* Before the reply ends: ending it may free px->req. */
static void px_finish_log(gw_px *px)
{
    if (!px->w->cfg->access_log)
        return;
    gw_access a = {http_req_id(px->req),
                   px->client_ip,
                   http_req_method(px->req),
                   px->path,
                   px->route->prefix,
                   px->peer_text[0] ? px->peer_text : NULL,
                   px->status,
                   http_req_is_tls(px->req),
                   px->tries,
                   px->body_seen,
                   px->bytes_out,
                   gw_us_since(px->t0),
                   px->upstream_us};
    gw_access_log(&a);
}

static void px_error(gw_px *px, int status, const char *code, const char *msg)
{
    px->status = status;
    px->resp_ended = 1;
    px_finish_log(px);
    if (http_req_is_tls(px->req))
        gw_headers_security(px->req, px->route->csp);
    if (status == 502 || status == 503)
        http_resp_header(px->req, "Retry-After", "1");
    http_reply_error(px->req, status, code, msg);
}

/* ---- client -> upstream ---- */

static void up_written(http_exchange *x, int status, void *ud)
{
    (void)x;
    (void)status;
    px_write *wr = ud;
    gw_px *px = wr->px;
    px_hold(px);
    px->up_pending -= wr->len;
    px->up_writes--;
    free(wr->buf);
    free(wr);
    if (px->req_paused && px->up_pending < PX_LOW && !px->resp_ended) {
        px->req_paused = 0;
        http_req_resume(px->req);
    }
    px_release(px);
}

static void on_req_data_held(gw_px *px, http_req *req, const char *data, size_t len)
{
    px->body_seen += (int64_t)len;
    if (!px->x || px->too_big)
        return;
    if ((size_t)px->body_seen > px->route->max_body) {
        px->too_big = 1;
        http_exchange_abort(px->x);
        return;
    }
    px_write *wr = xmalloc(sizeof *wr);
    char *buf = xmalloc(len);
    memcpy(buf, data, len); /* the client does not copy: kept until written */
    *wr = (px_write){px, buf, len};
    px->up_pending += len;
    px->up_writes++;
    if (http_exchange_write(px->x, buf, len, up_written, wr) != 0) {
        px->up_pending -= len;
        px->up_writes--;
        free(buf);
        free(wr);
        return;
    }
    if (px->up_pending >= PX_HIGH && !px->req_paused) {
        px->req_paused = 1;
        http_req_pause(req);
    }
}

static void on_req_data(http_req *req, const char *data, size_t len)
{
    gw_px *px = http_req_data(req);
    px_hold(px);
    on_req_data_held(px, req, data, len);
    px_release(px);
}

static void on_req_end(http_req *req)
{
    gw_px *px = http_req_data(req);
    px_hold(px);
    if (px->x && !px->too_big)
        http_exchange_end_body(px->x); /* short of the length: on_done at once */
    px_release(px);
}

static void on_sent_head(http_exchange *x, void *ud)
{
    gw_px *px = ud;
    (void)x;
    px_hold(px);
    if (px->body_len != 0 && !px->body_started) {
        px->body_started = 1;
        /* a body already complete: on_req_end, and maybe on_done, run inside */
        http_req_stream_body(px->req, on_req_data, on_req_end);
    }
    px_release(px);
}

/* ---- upstream -> client ---- */

static int on_response(http_exchange *x, int status, const http_header *h, size_t n, void *ud)
{
    gw_px *px = ud;
    (void)x;
    http_req *req = px->req; /* alive: the reply is not ended while the exchange runs */
    const gw_config *c = px->w->cfg;
    px->upstream_us = gw_us_since(px->t_up);
    px->status = status;
    /* the headers that decide the framing and compression: the first of each name */
    const char *conn = NULL, *cl_text = NULL, *ct = NULL, *ce = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *name = h[i].name;
        const char **slot = NULL;
        if ((name[0] | 0x20) != 'c')
            continue;
        if (strcasecmp(name, "Connection") == 0)
            slot = &conn;
        else if (strcasecmp(name, "Content-Length") == 0)
            slot = &cl_text;
        else if (strcasecmp(name, "Content-Type") == 0)
            slot = &ct;
        else if (strcasecmp(name, "Content-Encoding") == 0)
            slot = &ce;
        if (slot && !*slot)
            *slot = h[i].value;
    }
    int64_t cl = cl_text ? strtoll(cl_text, NULL, 10) : -1;
    int head = strcmp(http_req_method(req), "HEAD") == 0;
    int bodyless = head || status == 204 || status == 304 || status < 200;
    int type_ok = px->route->gzip && gw_gzip_type_ok(ct) && !ce;
    int compress = type_ok && !bodyless && (cl < 0 || (size_t)cl >= c->gzip_min_length) &&
                   gw_gzip_accepted(http_req_header(req, "Accept-Encoding"));
    int tls = http_req_is_tls(req);
    const char *vary = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *name = h[i].name;
        unsigned flags = http_headers_flags(name);
        if ((flags & HTTP_HDR_NOT_FORWARDED) || http_headers_list_has(conn, name) ||
            (tls && (flags & HTTP_HDR_SECURITY)))
            continue;
        if (type_ok && strcasecmp(name, "Vary") == 0) {
            vary = h[i].value;
            continue;
        }
        if (compress && strcasecmp(name, "ETag") == 0 && strncmp(h[i].value, "W/", 2) != 0) {
            char weak[512];
            snprintf(weak, sizeof weak, "W/%s", h[i].value);
            http_resp_header(req, name, weak);
            continue;
        }
        http_resp_header(req, name, h[i].value);
    }
    if (type_ok) {
        char v[512];
        if (vary && strcasestr(vary, "accept-encoding"))
            snprintf(v, sizeof v, "%s", vary);
        else if (vary)
            snprintf(v, sizeof v, "%s, Accept-Encoding", vary);
        else
            snprintf(v, sizeof v, "Accept-Encoding");
        http_resp_header(req, "Vary", v);
    }
    if (compress) {
        px->gz = gw_gzip_new(1);
        if (px->gz)
            http_resp_header(req, "Content-Encoding", "gzip");
    }
    if (tls)
        gw_headers_security(req, px->route->csp);
    int64_t len = cl;
    if (px->gz)
        len = -1;
    else if (bodyless && !head)
        len = 0;
    http_resp_start(req, status, len);
    px->resp_started = 1;
    return 0;
}

static void cl_written(http_req *req, int status, void *ud)
{
    (void)req;
    px_write *wr = ud;
    gw_px *px = wr->px;
    px_hold(px); /* the abort runs on_done, which ends the reply */
    px->cl_pending -= wr->len;
    px->cl_writes--;
    if (wr == &px->w0)
        px->w0_busy = 0;
    else
        free(wr);
    if (status < 0 && px->x) {
        http_exchange_abort(px->x);
    } else if (px->x_paused && px->cl_pending < PX_LOW && px->x) {
        px->x_paused = 0;
        http_exchange_resume(px->x);
    }
    px_release(px);
}

/* http_resp_write copies the data; the callback only paces the upstream. */
static void px_send(gw_px *px, const char *buf, size_t len)
{
    int own = !px->w0_busy;
    px_write *wr = own ? &px->w0 : xmalloc(sizeof *wr);
    *wr = (px_write){px, NULL, len};
    px->w0_busy = 1;
    if (http_resp_write(px->req, buf, len, cl_written, wr) != 0) {
        /* the client is gone (on_client_close ends the exchange) */
        if (own)
            px->w0_busy = 0;
        else
            free(wr);
        return;
    }
    px->cl_pending += len;
    px->cl_writes++;
    px->bytes_out += (int64_t)len;
}

static void on_data(http_exchange *x, const char *data, size_t len, void *ud)
{
    gw_px *px = ud;
    px_hold(px);
    if (px->gz) {
        char *buf;
        size_t n;
        if (gw_gzip_push(px->gz, data, len, 0, &buf, &n) != 0) {
            http_exchange_abort(x);
            px_release(px);
            return;
        }
        if (n)
            px_send(px, buf, n);
        free(buf);
    } else {
        px_send(px, data, len);
    }
    if (px->x && px->cl_pending >= PX_HIGH && !px->x_paused) {
        px->x_paused = 1;
        http_exchange_pause(x);
    }
    px_release(px);
}

/* A try starts (upstream_exchange_start picked the peer; a retry picked another). */
static void on_try(http_exchange *x, const upstream_peer *p, void *ud)
{
    gw_px *px = ud;
    px->x = x;
    px->tries++;
    gw_copy_text(px->peer_text, sizeof px->peer_text, upstream_peer_text(p));
    px->t_up = uv_hrtime();
}

/* The retry policy is upstream.h's; never once the reply or the request body started, nor for
 * a client that left or a body over the limit. */
static int no_retry(void *ud)
{
    const gw_px *px = ud;
    return px->resp_started || px->too_big || px->client_closed || px->body_started;
}

static void on_done_held(gw_px *px, hc_err err)
{
    px->x = NULL;
    if (err == HC_OK) {
        if (px->gz) {
            char *buf = NULL;
            size_t n;
            if (gw_gzip_push(px->gz, NULL, 0, 1, &buf, &n) == 0 && n)
                px_send(px, buf, n);
            free(buf);
        }
        px->resp_ended = 1;
        px_finish_log(px);
        http_resp_end(px->req);
        return;
    }
    if (px->resp_started) {
        /* Cut short after the head went out: the client must see a broken response. */
        px->resp_ended = 1;
        px_finish_log(px);
        http_resp_abort(px->req);
        return;
    }
    if (px->too_big) {
        http_resp_close_after(px->req);
        px_error(px, 413, "payload_too_large", "The request body is over this route's limit.");
        return;
    }
    if (err == HC_ETIMEOUT)
        px_error(px, 504, "gateway_timeout", "The service did not answer in time.");
    else
        px_error(px, 502, "bad_gateway", "The service is unavailable.");
}

static void on_done(http_exchange *x, hc_err err, void *ud)
{
    gw_px *px = ud;
    (void)x;
    px_hold(px);
    on_done_held(px, err);
    px_release(px);
}

static const upstream_exchange_cbs px_cbs = {
    on_try, no_retry, {on_sent_head, on_response, on_data, on_done}};

static void on_client_close(http_req *req)
{
    gw_px *px = http_req_data(req);
    px_hold(px);
    px->client_closed = 1;
    if (px->x)
        http_exchange_abort(px->x);
    px_release(px);
}

/* The X-Forwarded-For sent upstream: from a trusted proxy, its list (all X-Forwarded-For
 * lines, in order) and then the peer; from anyone else, the peer. Writes it to out when not
 * NULL; returns its size with the NUL. */
static size_t px_xff(http_req *req, const gw_config *c, char *out)
{
    const char *peer = http_req_peer_ip(req);
    int trusted = c->ntrusted && cidr_nets_match(c->trusted, c->ntrusted, peer);
    size_t off = 0, n = trusted ? http_req_header_count(req) : 0;
    for (size_t i = 0; i < n; i++) {
        const char *name, *value;
        http_req_header_at(req, i, &name, &value);
        if (strcasecmp(name, "X-Forwarded-For") != 0)
            continue;
        size_t vl = strlen(value);
        if (out) {
            memcpy(out + off, value, vl);
            memcpy(out + off + vl, ", ", 2);
        }
        off += vl + 2;
    }
    size_t pl = strlen(peer) + 1;
    if (out)
        memcpy(out + off, peer, pl);
    return off + pl;
}

/* The headers sent upstream: the client's, less hop-by-hop and forwarding ones, plus ours
 * (room for PX_OWN_HEADERS more than the client's). */
#define PX_OWN_HEADERS 6
static void px_headers(gw_px *px)
{
    http_req *req = px->req;
    const char *conn = http_req_header(req, "Connection");
    size_t n = http_req_header_count(req);
    for (size_t i = 0; i < n; i++) {
        const char *name, *value;
        http_req_header_at(req, i, &name, &value);
        unsigned flags = http_headers_flags(name);
        if ((flags & (HTTP_HDR_NOT_FORWARDED | HTTP_HDR_FORWARDING)) ||
            http_headers_list_has(conn, name))
            continue;
        px->hdrs[px->nhdrs++] = (http_header){name, value};
    }
    const char *host = http_req_header(req, "Host");
    if (host) {
        px->hdrs[px->nhdrs++] = (http_header){"Host", host};
        px->hdrs[px->nhdrs++] = (http_header){"X-Forwarded-Host", host};
    }
    px->hdrs[px->nhdrs++] = (http_header){"X-Forwarded-For", px->xff};
    px->hdrs[px->nhdrs++] =
        (http_header){"X-Forwarded-Proto", http_req_is_tls(req) ? "https" : "http"};
    px->hdrs[px->nhdrs++] = (http_header){"X-Real-IP", px->client_ip};
    px->hdrs[px->nhdrs++] = (http_header){"X-Request-ID", http_req_id(req)};
}

/* A proxied request's state, its upstream headers and its strings in one allocation. */
static gw_px *px_new(gw_worker *w, http_req *req, const char *path)
{
    size_t nh = http_req_header_count(req) + PX_OWN_HEADERS;
    size_t pl = strlen(path), ql = strlen(http_req_query(req));
    size_t xl = px_xff(req, w->cfg, NULL);
    size_t size = sizeof(gw_px) + nh * sizeof(http_header) + (pl + 1) + (pl + 1 + ql + 1) + xl;
    gw_px *px = xmalloc(size);
    memset(px, 0, sizeof *px);
    px->hdrs = (http_header *)(px + 1);
    px->path = (char *)(px->hdrs + nh);
    px->target = px->path + pl + 1;
    px->xff = px->target + pl + 1 + ql + 1;
    memcpy(px->path, path, pl + 1);
    memcpy(px->target, path, pl);
    if (ql) {
        px->target[pl] = '?';
        memcpy(px->target + pl + 1, http_req_query(req), ql + 1);
    } else {
        px->target[pl] = '\0';
    }
    px_xff(req, w->cfg, px->xff);
    return px;
}

/* ---- the start ---- */

void gw_proxy_start(const gw_answer *a, const gw_route_conf *route)
{
    gw_worker *w = a->w;
    http_req *req = a->req;
    gw_px *px = px_new(w, req, a->path);
    px->w = w;
    px->req = req;
    px->route = route;
    px->route_idx = (int)(route - w->cfg->routes);
    px->up = w->ups[route->upstream_idx];
    px->t0 = a->t0;
    px->upstream_us = -1;
    px->body_len = http_req_content_length(req);
    gw_copy_text(px->client_ip, sizeof px->client_ip, a->client);
    px_headers(px);
    http_req_set_data(req, px);
    http_req_on_close(req, on_client_close);
    px_hold(px);
    int rc = upstream_exchange_start(px->up, http_req_method(req), px->target, px->hdrs, px->nhdrs,
                                     px->body_len, &px_cbs, px);
    if (rc == UPSTREAM_ENOPEER)
        px_error(px, 502, "bad_gateway", "No instance of the service is available.");
    else if (rc != 0)
        px_error(px, 502, "bad_gateway", "Cannot reach the service.");
    px_release(px);
}
