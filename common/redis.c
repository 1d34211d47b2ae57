/* redis: the suite's Redis client. hiredis 0.14 async with its libuv adapter, plus what that
 * version lacks: the host name resolved with uv_getaddrinfo before connecting (hiredis would
 * resolve it blockingly), a connect timer (the adapter reports no failed connect), reconnect
 * with exponential backoff forever, AUTH before the connection counts as up, a timer per
 * command, and commands that fail at once (REDIS_ST_DOWN) while disconnected.
 *
 * Ownership: a redis owns its hiredis context (r->ac), one timer (connect checks and
 * timeout, or the backoff wait), the address lookup in flight and every command record. A
 * command record lives until the caller was answered, hiredis no longer holds it and its
 * timer handle is closed; the redis itself is freed only when all of those are gone
 * (redis_free may be called from inside a hiredis callback, where hiredis frees its context
 * only after the callback returns). */
#include "redis.h"

#include "config.h"
#include "log.h"
#include "queue.h"
#include "xalloc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>

#define REDIS_BACKOFF_START_MS 100
#define REDIS_MAX_ADDRS        8
#define REDIS_CONNECT_CHECK_MS 25

typedef enum {
    RS_WAIT,       /* r->timer runs until the next attempt (next address or backoff) */
    RS_RESOLVING,  /* uv_getaddrinfo in flight */
    RS_CONNECTING, /* r->ac exists, TCP connect or AUTH in progress, r->timer checks it */
    RS_READY,      /* commands go to r->ac */
    RS_FREED,      /* redis_free was called */
} redis_state;

typedef struct redis_cmd {
    redis *r;
    redis_fn cb;
    void *ud;
    uv_timer_t timer; /* the command's timeout, or 0 ms to deliver REDIS_ST_DOWN later */
    int answered;     /* the caller got its one answer */
    int in_hiredis;   /* hiredis holds a callback whose privdata is this record */
    int closing;      /* uv_close on timer was called */
    struct redis_cmd *prev, *next;
} redis_cmd;

struct redis {
    uv_loop_t *loop;
    char *host;
    int port;
    char *password;
    unsigned connect_timeout_ms, command_timeout_ms, backoff_max_ms;

    redis_state state;
    redisAsyncContext *ac;
    uv_timer_t timer;
    int timer_closed;
    uint64_t connect_deadline; /* uv_now() limit of RS_CONNECTING */
    uv_getaddrinfo_t gai;
    int resolving;

    /* Addresses of the last lookup, tried in turn before backing off. */
    char addrs[REDIS_MAX_ADDRS][INET6_ADDRSTRLEN];
    int naddrs, addr_i;
    unsigned backoff_ms;
    int down_logged; /* one warning per outage, not one per attempt */

    redis_cmd *cmds; /* every live command record */
};

static void redis_retry(redis *r);
static void redis_timer_cb(uv_timer_t *t);

/* Frees r once redis_free was called and nothing refers to it any more. */
static void redis_maybe_free(redis *r)
{
    if (r->state != RS_FREED || r->ac || r->resolving || !r->timer_closed || r->cmds)
        return;
    free(r->host);
    free(r->password);
    free(r);
}

static void redis_log_down(redis *r, const char *why)
{
    if (r->down_logged)
        return;
    r->down_logged = 1;
    log_warn(NULL, "redis %s:%d unavailable: %s", r->host, r->port, why);
}

/* ---- command records ---- */

static void redis_cmd_closed(uv_handle_t *h)
{
    redis_cmd *c = h->data;
    redis *r = c->r;
    DL_REMOVE(r->cmds, c, next, prev);
    free(c);
    redis_maybe_free(r);
}

static void redis_cmd_release(redis_cmd *c)
{
    if (!c->answered || c->in_hiredis || c->closing)
        return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->timer, redis_cmd_closed);
}

/* Gives the caller its answer, once; the late second event (reply after a timeout) is
 * ignored here. */
static void redis_cmd_answer(redis_cmd *c, redis_status st, redisReply *reply)
{
    if (c->answered)
        return;
    c->answered = 1;
    uv_timer_stop(&c->timer);
    if (c->cb)
        c->cb(st, reply, c->ud);
    redis_cmd_release(c);
}

static void redis_cmd_timer_cb(uv_timer_t *t)
{
    redis_cmd *c = t->data;
    /* Sent: the reply did not come in time. Never sent: the deferred REDIS_ST_DOWN. */
    redis_cmd_answer(c, c->in_hiredis ? REDIS_ST_TIMEOUT : REDIS_ST_DOWN, NULL);
}

static redis_cmd *redis_cmd_new(redis *r, redis_fn cb, void *ud)
{
    redis_cmd *c = xcalloc(1, sizeof *c);
    c->r = r;
    c->cb = cb;
    c->ud = ud;
    uv_timer_init(r->loop, &c->timer);
    c->timer.data = c;
    DL_INSERT_HEAD(r->cmds, c, next, prev);
    return c;
}

/* After the send attempt: sent ones wait for their reply or timeout (0: no timeout), the
 * others get REDIS_ST_DOWN from the loop, never before redis_command returns. */
static void redis_cmd_start(redis_cmd *c, int sent, unsigned timeout_ms)
{
    c->in_hiredis = sent;
    if (!sent)
        uv_timer_start(&c->timer, redis_cmd_timer_cb, 0, 0);
    else if (timeout_ms)
        uv_timer_start(&c->timer, redis_cmd_timer_cb, timeout_ms, 0);
}

/* ---- the connection ---- */

/* Forgets r->ac after hiredis freed it or is about to (its callbacks then ignore r). */
static void redis_detach(redis *r)
{
    if (!r->ac)
        return;
    r->ac->data = NULL;
    r->ac = NULL;
}

/* Drops the connection ourselves and schedules the next attempt. Inside a hiredis reply
 * callback redisAsyncFree only marks the context; hiredis frees it when the callback
 * returns. Never called from the connect callback (hiredis would use the freed context). */
static void redis_drop(redis *r)
{
    redisAsyncContext *ac = r->ac;
    redis_detach(r);
    if (ac)
        redisAsyncFree(ac);
    redis_retry(r);
}

/* hiredis freed (or is freeing) the context: the connection is gone. */
static void redis_lost(redis *r, const char *why)
{
    redis_detach(r);
    if (r->state == RS_READY) {
        r->down_logged = 0;
        r->naddrs = 0; /* the server may have moved: look the name up again */
    }
    redis_log_down(r, why);
    redis_retry(r);
}

static void redis_ready(redis *r)
{
    r->state = RS_READY;
    uv_timer_stop(&r->timer);
    r->backoff_ms = REDIS_BACKOFF_START_MS;
    if (r->down_logged)
        log_info(NULL, "redis %s:%d connected", r->host, r->port);
    r->down_logged = 0;
}

static void redis_reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    redis_cmd *c = privdata;
    redis *r = c->r;
    c->in_hiredis = 0;
    if (!reply) {
        /* hiredis is freeing the context: this and every other pending command get
         * REDIS_ST_DOWN; commands issued from those callbacks must already fail. */
        if (ac->data == r)
            redis_lost(r, ac->c.errstr[0] ? ac->c.errstr : "connection lost");
        redis_cmd_answer(c, REDIS_ST_DOWN, NULL);
    } else {
        redis_cmd_answer(c, REDIS_ST_OK, reply);
    }
    redis_cmd_release(c);
}

static void redis_auth_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    redis *r = ac->data;
    redisReply *rep = reply;
    if (!r || !rep)
        return; /* detached, or the context is being freed (disconnect follows) */
    if (rep->type == REDIS_REPLY_ERROR) {
        redis_log_down(r, "AUTH refused");
        redis_drop(r);
        return;
    }
    redis_ready(r);
}

static void redis_connect_cb(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    redis *r = ac->data;
    if (!r)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context right after this callback. */
        redis_detach(r);
        redis_log_down(r, ac->c.errstr[0] ? ac->c.errstr : "connect failed");
        redis_retry(r);
        return;
    }
    /* TCP keepalive (hiredis: idle 15 s, then probes): a peer that vanished without a FIN
     * (a host gone, a dropped NAT entry) ends the connection instead of leaving a blocking
     * XREADGROUP waiting forever. Only once connected: set on a socket whose connect is in
     * progress it left reconnects after a Redis restart hanging (hiredis 0.14). A failure
     * is not fatal: the per-command watchdog still bounds every command. */
    if (redisEnableKeepAlive(&ac->c) != REDIS_OK) {
        log_warn(NULL, "redis %s:%d: no TCP keepalive: %s", r->host, r->port, ac->c.errstr);
        ac->c.err = 0;
        ac->c.errstr[0] = '\0';
    }
    if (!r->password) {
        redis_ready(r);
        return;
    }
    if (redisAsyncCommand(ac, redis_auth_cb, NULL, "AUTH %s", r->password) != REDIS_OK) {
        /* Cannot free the context here; the connect timer drops it. */
        redis_log_down(r, "AUTH not sent");
    }
}

static void redis_disconnect_cb(const redisAsyncContext *cac, int status)
{
    (void)status;
    redis *r = cac->data;
    if (!r)
        return;
    redis_lost(r, cac->c.errstr[0] ? cac->c.errstr : "disconnected");
}

/* Starts a connection to r->addrs[r->addr_i]. */
static void redis_connect_addr(redis *r)
{
    redisAsyncContext *ac = redisAsyncConnect(r->addrs[r->addr_i], r->port);
    if (!ac)
        xalloc_oom(sizeof *ac);
    if (ac->err) {
        /* Refused at once (loopback), or no socket. */
        redis_log_down(r, ac->c.errstr);
        redisAsyncFree(ac);
        redis_retry(r);
        return;
    }
    if (redisLibuvAttach(ac, r->loop) != REDIS_OK) {
        redis_log_down(r, "cannot watch the socket");
        redisAsyncFree(ac);
        redis_retry(r);
        return;
    }
    ac->data = r;
    r->ac = ac;
    r->state = RS_CONNECTING;
    redisAsyncSetDisconnectCallback(ac, redis_disconnect_cb);
    redisAsyncSetConnectCallback(ac, redis_connect_cb); /* after attach: it asks for write */
    /* The adapter drops the poll error of a failed connect, so the timer also looks at the
     * socket's pending error while the connect is in progress. */
    r->connect_deadline = uv_now(r->loop) + r->connect_timeout_ms;
    uv_timer_start(&r->timer, redis_timer_cb, REDIS_CONNECT_CHECK_MS, REDIS_CONNECT_CHECK_MS);
}

static void redis_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    redis *r = req->data;
    r->resolving = 0;
    if (r->state == RS_FREED) {
        if (res)
            uv_freeaddrinfo(res);
        redis_maybe_free(r);
        return;
    }
    r->naddrs = 0;
    r->addr_i = 0;
    for (struct addrinfo *ai = res; ai && r->naddrs < REDIS_MAX_ADDRS; ai = ai->ai_next) {
        char *dst = r->addrs[r->naddrs];
        int rc = -1;
        if (ai->ai_family == AF_INET)
            rc = uv_ip4_name((struct sockaddr_in *)ai->ai_addr, dst, INET6_ADDRSTRLEN);
        else if (ai->ai_family == AF_INET6)
            rc = uv_ip6_name((struct sockaddr_in6 *)ai->ai_addr, dst, INET6_ADDRSTRLEN);
        if (rc == 0)
            r->naddrs++;
    }
    if (res)
        uv_freeaddrinfo(res);
    if (status < 0 || r->naddrs == 0) {
        redis_log_down(r, status < 0 ? uv_strerror(status) : "no address");
        redis_retry(r);
        return;
    }
    redis_connect_addr(r);
}

/* One attempt: the next address of the last lookup, else a new lookup. */
static void redis_attempt(redis *r)
{
    if (r->addr_i < r->naddrs) {
        redis_connect_addr(r);
        return;
    }
    struct in6_addr a6;
    struct in_addr a4;
    if (inet_pton(AF_INET, r->host, &a4) == 1 || inet_pton(AF_INET6, r->host, &a6) == 1) {
        snprintf(r->addrs[0], sizeof r->addrs[0], "%s", r->host);
        r->naddrs = 1;
        r->addr_i = 0;
        redis_connect_addr(r);
        return;
    }
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    r->gai.data = r;
    int rc = uv_getaddrinfo(r->loop, &r->gai, redis_resolved, r->host, NULL, &hints);
    if (rc < 0) {
        redis_log_down(r, uv_strerror(rc));
        r->naddrs = 0;
        redis_retry(r);
        return;
    }
    r->resolving = 1;
    r->state = RS_RESOLVING;
}

static void redis_timer_cb(uv_timer_t *t)
{
    redis *r = t->data;
    if (r->state == RS_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (!(r->ac->c.flags & REDIS_CONNECTED) &&
            getsockopt(r->ac->c.fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err) {
            redis_log_down(r, strerror(err));
            redis_drop(r);
        } else if (uv_now(r->loop) >= r->connect_deadline) {
            redis_log_down(r, "connect timeout");
            redis_drop(r);
        }
    } else if (r->state == RS_WAIT) {
        redis_attempt(r);
    }
}

/* After a failure: the next address at once, else a new lookup after the backoff. */
static void redis_retry(redis *r)
{
    if (r->state == RS_FREED)
        return;
    r->state = RS_WAIT;
    r->addr_i++;
    unsigned delay = 0;
    if (r->addr_i >= r->naddrs) {
        r->naddrs = 0;
        r->addr_i = 0;
        delay = r->backoff_ms;
        r->backoff_ms =
            r->backoff_ms * 2 > r->backoff_max_ms ? r->backoff_max_ms : r->backoff_ms * 2;
    }
    uv_timer_start(&r->timer, redis_timer_cb, delay, 0);
}

/* ---- public API ---- */

void redis_opts_default(redis_opts *o)
{
    memset(o, 0, sizeof *o);
    o->host = config_str("REDIS_HOST", "127.0.0.1");
    o->port = (int)config_int("REDIS_PORT", 6379);
    o->password = config_str("REDIS_PASSWORD", NULL);
    if (o->password && !o->password[0])
        o->password = NULL;
    o->connect_timeout_ms = 2000;
    o->command_timeout_ms = 2000;
    o->backoff_max_ms = 5000;
}

redis *redis_new(uv_loop_t *loop, const redis_opts *opts)
{
    if (!opts->host || !opts->host[0] || opts->port <= 0 || opts->port > 65535)
        return NULL;
    redis *r = xcalloc(1, sizeof *r);
    r->loop = loop;
    r->host = xstrdup(opts->host);
    r->password = opts->password && opts->password[0] ? xstrdup(opts->password) : NULL;
    r->port = opts->port;
    r->connect_timeout_ms = opts->connect_timeout_ms ? opts->connect_timeout_ms : 2000;
    r->command_timeout_ms = opts->command_timeout_ms;
    r->backoff_max_ms = opts->backoff_max_ms > REDIS_BACKOFF_START_MS ? opts->backoff_max_ms
                                                                      : REDIS_BACKOFF_START_MS;
    r->backoff_ms = REDIS_BACKOFF_START_MS;
    r->state = RS_WAIT;
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    /* The first attempt runs from the loop, so redis_new itself has no side effect. */
    uv_timer_start(&r->timer, redis_timer_cb, 0, 0);
    return r;
}

static void redis_timer_closed(uv_handle_t *h)
{
    redis *r = h->data;
    r->timer_closed = 1;
    redis_maybe_free(r);
}

void redis_free(redis *r)
{
    if (!r)
        return;
    redisAsyncContext *ac = r->ac;
    r->state = RS_FREED;
    redis_detach(r);
    /* Every pending command gets REDIS_ST_DOWN now; hiredis later calls back the ones it holds
     * with no reply, which are then already answered. New commands from these callbacks fail
     * from the loop. */
    for (redis_cmd *c = r->cmds; c; c = c->next)
        redis_cmd_answer(c, REDIS_ST_DOWN, NULL);
    if (ac)
        redisAsyncFree(ac);
    if (r->resolving)
        uv_cancel((uv_req_t *)&r->gai);
    uv_close((uv_handle_t *)&r->timer, redis_timer_closed);
}

int redis_connected(const redis *r)
{
    return r->state == RS_READY;
}

void redis_command(redis *r, redis_fn cb, void *ud, const char *fmt, ...)
{
    redis_cmd *c = redis_cmd_new(r, cb, ud);
    int sent = 0;
    if (r->state == RS_READY) {
        va_list ap;
        va_start(ap, fmt);
        sent = redisvAsyncCommand(r->ac, redis_reply_cb, c, fmt, ap) == REDIS_OK;
        va_end(ap);
    }
    redis_cmd_start(c, sent, r->command_timeout_ms);
}

void redis_command_argv_timeout(redis *r, unsigned timeout_ms, redis_fn cb, void *ud, int argc,
                                const char **argv, const size_t *argvlen)
{
    redis_cmd *c = redis_cmd_new(r, cb, ud);
    int sent = r->state == RS_READY &&
               redisAsyncCommandArgv(r->ac, redis_reply_cb, c, argc, argv, argvlen) == REDIS_OK;
    redis_cmd_start(c, sent, timeout_ms);
}

void redis_command_argv(redis *r, redis_fn cb, void *ud, int argc, const char **argv,
                        const size_t *argvlen)
{
    redis_command_argv_timeout(r, r->command_timeout_ms, cb, ud, argc, argv, argvlen);
}
