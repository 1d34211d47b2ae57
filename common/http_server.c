/* http_server: the suite's HTTP/1.1 server on libuv + llhttp (contract in http_server.h).
 * This file holds the listener, the connections, reading, the timers, drain and free; the
 * other concerns are in http_wire.c, http_request.c, http_response.c and http_transport.c
 * (http_server_int.h lists them).
 *
 * Structure:
 *   - http_server: the listener, the list of connections, drain and free.
 *   - http_conn: one TCP connection. Bytes come in through conn_on_read() into the server's
 *     64 KiB read buffer, shared by the connections (through the connection's transport: on a
 *     TLS listener they are decrypted into it when the input is empty) and are parsed at once
 *     by conn_process(); bytes go out through conn_write_raw() only. When parsing must stop
 *     (a handler paused, has not asked for the body yet, too many requests in flight), the
 *     unparsed rest is copied to the connection and reading stops: that is the backpressure.
 *   - http_req: one request and its response. Requests of a connection form a queue in
 *     arrival order; only the head of the queue writes to the socket, a later response is
 *     kept (with its write callbacks) until the earlier ones ended.
 *
 * User callbacks are never called from inside a user call on the same request, except the
 * body callbacks of read_body/stream_body when the body is already complete. Parsing that
 * can continue after a user call (resume, read_body, a response that ended) is restarted
 * from an idle handle ("kick"), never re-entrantly. */
#include "http_server_int.h"
#include "queue.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void srv_check_done(http_server *srv);
static void srv_close_listener(http_server *srv);

/* ---------------------------------------------------------------- small helpers */

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

/* ---------------------------------------------------------------- timers */

static void conn_timer_cb(uv_timer_t *t)
{
    http_conn *c = t->data;
    uint64_t now = uv_now(c->srv->loop);
    if (c->tkind != TIMER_NONE && c->tdue > now) { /* left running by conn_arm: not yet */
        uv_timer_start(&c->timer, conn_timer_cb, c->tdue - now, 0);
        return;
    }
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
    case TIMER_LINGER: conn_close(c); break;
    case TIMER_NONE: break;
    }
}

/* A running timer that fires no later than the new time is left as it is, and arms itself
 * again for the rest when it fires (conn_timer_cb); so is one with nothing left to time. A
 * keep-alive request changes the timer three times, and moving a libuv timer costs more than
 * an early wake-up once per timeout. */
void conn_arm(http_conn *c, timer_kind kind, unsigned ms)
{
    c->tkind = kind;
    c->tdue = uv_now(c->srv->loop) + ms;
    if (uv_is_active((uv_handle_t *)&c->timer) && uv_timer_get_due_in(&c->timer) <= ms)
        return;
    uv_timer_start(&c->timer, conn_timer_cb, ms, 0);
}

void conn_disarm(http_conn *c)
{
    c->tkind = TIMER_NONE;
}

/* ---------------------------------------------------------------- parsing, from the loop */

/* The buffer the connection's next input goes to (HTTP_READ_SIZE bytes): the server's, shared
 * by its connections, as input is parsed right after it is read (reading only goes on once
 * the input kept before is parsed). What the parser leaves is copied to the connection by
 * conn_keep_input, so that an idle or a busy connection holds no read buffer of its own. */
char *conn_input_buffer(http_conn *c)
{
    http_server *srv = c->srv;
    free(c->rbuf_own);
    c->rbuf_own = NULL;
    if (!srv->rbuf)
        srv->rbuf = xmalloc(HTTP_READ_SIZE);
    c->rbuf = srv->rbuf;
    c->roff = c->rlen = 0;
    return c->rbuf;
}

/* After parsing: what is left unparsed moves out of the shared buffer. */
static void conn_keep_input(http_conn *c)
{
    if (c->rlen == 0) {
        free(c->rbuf_own);
        c->rbuf_own = NULL;
        c->rbuf = NULL;
        c->roff = 0;
        return;
    }
    if (c->rbuf == c->rbuf_own)
        return;
    char *own = xmalloc(c->rlen);
    memcpy(own, c->rbuf + c->roff, c->rlen);
    c->rbuf = c->rbuf_own = own;
    c->roff = 0;
}

/* Parses the kept input as far as allowed, then reads more (or not). */
static void conn_process(http_conn *c)
{
    static const char nothing[1];
    if (c->in_feed)
        return; /* already parsing further up the stack */
    c->in_feed = 1;
    if (c->rlen == 0 && c->tp->pull(c) < 0) {
        c->in_feed = 0;
        conn_keep_input(c);
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
        if (c->rlen == 0 && !conn_blocked(c) && c->tp->pull(c) < 0)
            break;
        if (used == 0 && (was_empty || conn_blocked(c)))
            break;
    }
    c->in_feed = 0;
    conn_keep_input(c);
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
        conn_write_completions(c);
        if (!c->closing)
            conn_process(c);
        c = next;
    }
}

/* Parsing may go on: do it from the loop, not inside the caller. */
void conn_kick(http_conn *c)
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
    *buf = c->tp->read_buf(c);
}

/* The end of the input (EOF or an error). */
void conn_input_end(http_conn *c, ssize_t nread)
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
    c->tp->received(c, buf->base, (size_t)nread);
    if (c->tkind == TIMER_BODY)
        conn_arm(c, TIMER_BODY, c->srv->limits.body_timeout_ms);
    conn_process(c);
}

/* Reads while the buffer is empty, even when the parser is blocked: one buffer of input is
 * the most kept (backpressure), and an end of input (client gone) is seen meanwhile. */
static void conn_update_reading(http_conn *c)
{
    int want = !c->closing && !c->eof &&
               (c->lingering || (!c->shutting && c->rlen == 0 && !c->tp->pending(c)));
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
void conn_update(http_conn *c)
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
            c->tp->shutdown(c);
            c->shutdown_req.data = c;
            if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, conn_on_shutdown) != 0) {
                conn_close(c);
                return;
            }
        }
        conn_update_reading(c);
        return;
    }
    if (!c->in_feed && (c->rlen > 0 || c->llhttp_paused || c->tp->pending(c)) && !conn_blocked(c))
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
        if (!c->in_feed) {
            free(c->rbuf_own); /* idle keep-alive connections hold no buffer */
            c->rbuf_own = c->rbuf = NULL;
        }
    } else if (c->tkind != TIMER_NONE) {
        conn_disarm(c);
    }
}

static void conn_free(http_conn *c)
{
    http_server *srv = c->srv;
    DL_REMOVE(srv->conns, c, next, prev);
    free(c->rbuf_own);
    c->tp->free(c);
    free(c);
    srv->nalive--;
    srv_check_done(srv);
}

static void conn_on_handle_closed(uv_handle_t *h)
{
    http_conn *c = h->data;
    if (--c->handles_open == 0) {
        conn_write_completions(c); /* as libuv ran those of its writes before */
        conn_free(c);
    }
}

/* Closes at once. Requests still waiting for their handler are told (on_close) and stay
 * valid until their reply; output not sent is dropped (callbacks with UV_ECANCELED). */
void conn_close(http_conn *c)
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
    c->tp = srv->tls ? &http_transport_tls : &http_transport_plain;
    if (c->tp->open(c) != 0) {
        if (c->hooked)
            srv->conn_hook(srv->handler_ud, c->peer, 0);
        uv_close((uv_handle_t *)&c->tcp, conn_free_unaccepted);
        return;
    }
    uv_timer_init(srv->loop, &c->timer);
    uv_timer_init(srv->loop, &c->send_timer);
    c->timer.data = c->send_timer.data = c;
    c->handles_open = 3;
    llhttp_init(&c->parser, HTTP_REQUEST, http_wire_settings());
    c->parser.data = c;
    uv_tcp_nodelay(&c->tcp, 1);

    DL_INSERT_HEAD(srv->conns, c, next, prev);
    srv->nconns++;
    srv->nalive++;
    conn_update(c);
}

/* ---------------------------------------------------------------- the server */

http_server *http_server_new(uv_loop_t *loop, const http_server_opts *opts)
{
    http_wire_settings(); /* set up once, before any loop runs */
    http_server *srv = xcalloc(1, sizeof *srv);
    srv->loop = loop;
    http_limits d;
    http_limits_default(&d);
    srv->limits = opts->limits;
    http_limits *l = &srv->limits;
#define HTTP_DEFAULT(f)                                                                            \
    if (!l->f)                                                                                     \
    l->f = d.f
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
    socklen_t sl =
        ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
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
            req_spare_free(srv);
            free(srv->server_name);
            free(srv->tls_rbuf);
            free(srv->rbuf);
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

void http_server_drain(http_server *srv, unsigned timeout_ms, void (*done)(http_server *, void *),
                       void *ud)
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
