/* pg_pool: a pool of non-blocking libpq connections driven by uv_poll (see pg_pool.h), and
 * the blocking connection of start-up work (pg_migrate is in pg_migrate.c).
 *
 * Each connection slot is a small state machine:
 *   WAIT -> (RESOLVING) -> CONNECTING -> SETUP -> IDLE <-> BUSY
 * and back to WAIT (reconnect after a backoff of 100 ms .. 2 s) whenever anything fails.
 * One uv_timer per slot serves as connect timeout, reconnect backoff, or the guard of a
 * transaction left open, depending on the state. Requests wait in one bounded FIFO; those of a
 * transaction wait in the transaction's own FIFO and run on its reserved connection.
 * Every callback is delivered from a uv_idle handle ("ready" list), so callers never see one
 * before the call that caused it returns, and the pool never re-enters itself. */
#include "pg_pool.h"

#include "config.h"
#include "log.h"
#include "queue.h"
#include "xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_BACKOFF_MIN_MS 100
#define PG_BACKOFF_MAX_MS 2000
#define PG_TX_MAX_MS      30000 /* a transaction open longer is rolled back (connection reset) */

typedef enum { REQ_QUERY, REQ_BEGIN, REQ_TX_QUERY, REQ_COMMIT, REQ_ROLLBACK, REQ_SETUP } req_kind;

typedef struct pg_req {
    struct pg_req *next;
    req_kind kind;
    char *sql;
    int nparams;
    char **params;
    pg_query_fn qcb;
    pg_tx_fn tcb;
    void *ud;
    pg_tx *tx;         /* BEGIN: the new tx; COMMIT/ROLLBACK: the tx this request ends (freed) */
    uint64_t deadline; /* loop time after which a queued request fails with PG_BUSY */
    pg_status st;      /* outcome, set when moved to the ready list */
    PGresult *res;
} pg_req;

typedef struct {
    pg_req *head, *tail;
    int len;
} req_list;

typedef enum {
    CONN_WAIT,       /* not connected; the timer starts the next attempt */
    CONN_RESOLVING,  /* uv_getaddrinfo running */
    CONN_CONNECTING, /* PQconnectPoll steps */
    CONN_SETUP,      /* SET statement_timeout running */
    CONN_IDLE,
    CONN_BUSY,
    CONN_CLOSED, /* pool freed */
} conn_state;

typedef struct pg_resolve pg_resolve;

typedef struct pg_conn {
    pg_pool *pool;
    int id;
    conn_state state;
    PGconn *pq;
    uv_poll_t *poll; /* watches sock; re-created when the socket changes; freed on close */
    int sock;
    int flushing; /* PQflush said 1: wait for writable too */
    uv_timer_t timer;
    pg_resolve *resolve; /* the latest resolution started (for uv_cancel on free) */
    unsigned gen;        /* attempt number: answers from older attempts are ignored */
    unsigned backoff_ms;
    int tried;     /* its first connection attempt has ended */
    int failing;   /* a failure was logged at warn level: log the recovery, not every retry */
    pg_req *cur;   /* running request */
    PGresult *res; /* result kept while collecting (first error, else last) */
    pg_tx *tx;     /* transaction holding this connection */
} pg_conn;

struct pg_resolve {
    uv_getaddrinfo_t req;
    pg_conn *conn;
    unsigned gen;
};

struct pg_tx {
    pg_pool *pool;
    pg_conn *conn; /* NULL once the transaction is dead (connection lost or reset) */
    req_list q;
    int ending; /* COMMIT or ROLLBACK submitted */
};

struct pg_pool {
    uv_loop_t *loop;
    pg_pool_opts o;
    char *host, *dbname, *user, *password;
    char **conninfo; /* copy of o.conninfo */
    char port[16];
    pg_conn *conns;
    req_list queue; /* waiting for a connection */
    req_list ready; /* finished, callbacks to call */
    uv_timer_t qtimer;
    uv_idle_t idle;
    int handles;  /* open handles and resolutions, the idle handle excepted */
    int starting; /* slots whose first attempt has not ended: queue rather than fail */
    int closing, delivering, finishing;
};

static void conn_connect(pg_conn *c);
static void conn_fail(pg_conn *c, const char *why);
static void conn_next(pg_conn *c);
static void conn_on_poll(uv_poll_t *h, int status, int events);
static void conn_on_timer(uv_timer_t *t);

/* ---- small helpers ---- */

static void list_push(req_list *l, pg_req *r)
{
    SQ_PUSH(l->head, l->tail, r, next);
    l->len++;
}

static pg_req *list_pop(req_list *l)
{
    pg_req *r;
    if (!l->head)
        return NULL;
    SQ_POP(l->head, l->tail, r, next);
    l->len--;
    return r;
}

static pg_req *req_new(req_kind kind, const char *sql, int nparams, const char *const *params)
{
    pg_req *r = xcalloc(1, sizeof *r);
    r->kind = kind;
    r->sql = xstrdup(sql ? sql : "");
    if (nparams > 0 && params) {
        r->nparams = nparams;
        r->params = xcalloc((size_t)nparams, sizeof(char *));
        for (int i = 0; i < nparams; i++)
            r->params[i] = xstrdup(params[i]);
    }
    return r;
}

static void req_free(pg_req *r)
{
    for (int i = 0; i < r->nparams; i++)
        free(r->params[i]);
    free(r->params);
    free(r->sql);
    free(r);
}

/* The first line of a libpq message, for logs. */
void pg_oneline(char *dst, size_t cap, const char *msg)
{
    snprintf(dst, cap, "%s", msg && *msg ? msg : "unknown error");
    dst[strcspn(dst, "\r\n")] = '\0';
}

/* Appends a libpq connection keyword unless its value is NULL or empty. */
static void pg_kv(const char **kw, const char **val, int *n, const char *k, const char *v)
{
    if (!v || !*v)
        return;
    kw[*n] = k;
    val[*n] = v;
    (*n)++;
}

/* The libpq keywords of a connection to o (hostaddr: the address resolved, may be NULL; port:
 * o->port as text), o->conninfo's last: NULL-terminated arrays in *kw and *val, free both. */
static void pg_params(const pg_pool_opts *o, const char *hostaddr, const char *port,
                      const char ***kw, const char ***val)
{
    int extra = 0;
    while (o->conninfo && o->conninfo[extra])
        extra += 2;
    size_t cap = 8 + (size_t)extra / 2;
    *kw = xcalloc(cap, sizeof(char *));
    *val = xcalloc(cap, sizeof(char *));
    int n = 0;
    pg_kv(*kw, *val, &n, "host", o->host);
    pg_kv(*kw, *val, &n, "hostaddr", hostaddr);
    pg_kv(*kw, *val, &n, "port", port);
    pg_kv(*kw, *val, &n, "dbname", o->dbname);
    pg_kv(*kw, *val, &n, "user", o->user);
    pg_kv(*kw, *val, &n, "password", o->password);
    pg_kv(*kw, *val, &n, "fallback_application_name", program_invocation_short_name);
    for (int i = 0; i < extra; i += 2)
        pg_kv(*kw, *val, &n, o->conninfo[i], o->conninfo[i + 1]);
}

static void pg_on_notice(void *arg, const PGresult *res)
{
    (void)arg;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    log_level lvl = sev && strcmp(sev, "WARNING") == 0 ? LOG_WARN : LOG_DEBUG;
    log_emit(lvl, NULL, json_pack("{s:s}", "severity", sev ? sev : ""), "postgres: %s",
             msg ? msg : "");
}

/* ---- delivery ---- */

static void pool_maybe_finish(pg_pool *p);

static void pool_deliver(pg_req *r)
{
    if (r->kind == REQ_BEGIN) {
        r->tcb(r->st, r->st == PG_OK ? r->tx : NULL, r->ud);
    } else if (r->qcb) {
        r->qcb(r->st, r->res, r->ud);
    }
    if ((r->kind == REQ_COMMIT || r->kind == REQ_ROLLBACK) && r->tx)
        free(r->tx);
    PQclear(r->res);
    req_free(r);
}

static void pool_on_idle(uv_idle_t *h)
{
    pg_pool *p = h->data;
    req_list batch = p->ready; /* only what is ready now: callbacks may add more */
    memset(&p->ready, 0, sizeof p->ready);
    p->delivering = 1;
    pg_req *r;
    while ((r = list_pop(&batch)))
        pool_deliver(r);
    p->delivering = 0;
    if (!p->ready.head)
        uv_idle_stop(h);
    pool_maybe_finish(p);
}

/* Finishes r: its callback runs from the loop, later. */
static void pool_complete(pg_pool *p, pg_req *r, pg_status st, PGresult *res)
{
    r->st = st;
    r->res = res;
    list_push(&p->ready, r);
    if (!uv_is_active((uv_handle_t *)&p->idle))
        uv_idle_start(&p->idle, pool_on_idle);
}

static void pool_fail_queue(pg_pool *p, req_list *l, pg_status st)
{
    pg_req *r;
    while ((r = list_pop(l)))
        pool_complete(p, r, st, NULL);
}

static int pool_live(const pg_pool *p)
{
    int n = 0;
    for (int i = 0; i < p->o.size; i++)
        if (p->conns[i].state == CONN_IDLE || p->conns[i].state == CONN_BUSY)
            n++;
    return n;
}

/* ---- connection: running requests ---- */

static void conn_watch(pg_conn *c, int events);

static void conn_flush(pg_conn *c)
{
    int r = PQflush(c->pq);
    if (r < 0) {
        conn_fail(c, PQerrorMessage(c->pq));
        return;
    }
    c->flushing = r == 1;
    uv_poll_start(c->poll, UV_READABLE | (c->flushing ? UV_WRITABLE : 0), conn_on_poll);
}

/* Sends r on the idle connection c. Returns 0 when sent, -1 when r already finished (refused
 * by libpq, or the connection failed). */
static int conn_run(pg_conn *c, pg_req *r)
{
    c->cur = r;
    if (r->kind != REQ_SETUP)
        c->state = CONN_BUSY;
    int ok = r->kind == REQ_SETUP
                 ? PQsendQuery(c->pq, r->sql)
                 : PQsendQueryParams(c->pq, r->sql, r->nparams, NULL,
                                     (const char *const *)r->params, NULL, NULL, 0);
    if (!ok) {
        if (r->kind != REQ_SETUP && PQstatus(c->pq) == CONNECTION_OK) {
            /* libpq refused the arguments (too many parameters...): the caller's error */
            c->cur = NULL;
            c->state = CONN_IDLE;
            if (r->kind == REQ_COMMIT || r->kind == REQ_ROLLBACK)
                r->tx = NULL; /* still open */
            pool_complete(c->pool, r, PG_ERR_SQL, PQmakeEmptyPGresult(c->pq, PGRES_FATAL_ERROR));
        } else {
            conn_fail(c, PQerrorMessage(c->pq));
        }
        return -1;
    }
    conn_flush(c);
    return 0;
}

/* c is idle: start its transaction's next request, or the pool's next one. */
static void conn_next(pg_conn *c)
{
    while (c->state == CONN_IDLE && !c->cur) {
        pg_req *r = c->tx ? list_pop(&c->tx->q) : list_pop(&c->pool->queue);
        if (!r || conn_run(c, r) == 0)
            return;
    }
}

static pg_status conn_classify(pg_conn *c, const PGresult *res)
{
    if (!res)
        return PG_DOWN;
    switch (PQresultStatus(res)) {
    case PGRES_TUPLES_OK:
    case PGRES_COMMAND_OK: return PG_OK;
    case PGRES_FATAL_ERROR: break;
    case PGRES_BAD_RESPONSE: return PG_DOWN;
    default: return PG_ERR_SQL; /* empty query and the like */
    }
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    /* no SQLSTATE: libpq's own error (connection lost); 57P0x: server shutting down or
     * terminating us; 08xxx: connection exception */
    if (PQstatus(c->pq) == CONNECTION_BAD || !state || strncmp(state, "57P", 3) == 0 ||
        strncmp(state, "08", 2) == 0)
        return PG_DOWN;
    return PG_ERR_SQL;
}

/* The server answered c->cur with res (may be NULL). */
static void conn_on_result(pg_conn *c, PGresult *res)
{
    pg_pool *p = c->pool;
    pg_status st = conn_classify(c, res);
    if (st == PG_DOWN || (c->cur->kind == REQ_SETUP && st != PG_OK)) {
        char why[256];
        pg_oneline(why, sizeof why, res ? PQresultErrorMessage(res) : PQerrorMessage(c->pq));
        PQclear(res);
        conn_fail(c, why); /* fails c->cur with PG_DOWN */
        return;
    }
    pg_req *r = c->cur;
    c->cur = NULL;
    c->state = CONN_IDLE;
    switch (r->kind) {
    case REQ_SETUP:
        PQclear(res);
        req_free(r);
        uv_timer_stop(&c->timer);
        c->backoff_ms = PG_BACKOFF_MIN_MS;
        if (!c->tried) {
            c->tried = 1;
            p->starting--;
        }
        if (c->failing) {
            log_emit(LOG_INFO, NULL, json_pack("{s:i}", "conn", c->id), "postgres connected");
            c->failing = 0;
        }
        break;
    case REQ_BEGIN:
        if (st == PG_OK) {
            pg_tx *tx = xcalloc(1, sizeof *tx);
            tx->pool = p;
            tx->conn = c;
            c->tx = tx;
            r->tx = tx;
            uv_timer_start(&c->timer, conn_on_timer, PG_TX_MAX_MS, 0);
        }
        pool_complete(p, r, st, res);
        break;
    case REQ_COMMIT:
    case REQ_ROLLBACK:
        /* COMMIT of a transaction in which a statement failed answers "ROLLBACK" */
        if (st == PG_OK && r->kind == REQ_COMMIT && strcmp(PQcmdStatus(res), "COMMIT") != 0)
            st = PG_ERR_SQL;
        if (c->tx) {
            c->tx->conn = NULL;
            pool_fail_queue(p, &c->tx->q, PG_DOWN); /* sent after the end: a caller bug */
            c->tx = NULL;
            uv_timer_stop(&c->timer);
        }
        pool_complete(p, r, st, res);
        break;
    default: pool_complete(p, r, st, res); break;
    }
    conn_next(c);
}

/* Reads every result available without blocking; the request ends with a NULL result. */
static void conn_collect(pg_conn *c)
{
    while (c->cur && !PQisBusy(c->pq)) {
        PGresult *r = PQgetResult(c->pq);
        if (!r) {
            PGresult *res = c->res;
            c->res = NULL;
            conn_on_result(c, res);
            return;
        }
        ExecStatusType s = PQresultStatus(r);
        if (s == PGRES_COPY_IN || s == PGRES_COPY_OUT || s == PGRES_COPY_BOTH) {
            PQclear(r);
            conn_fail(c, "COPY is not supported by pg_pool");
            return;
        }
        if (!c->res) {
            c->res = r;
        } else if (PQresultStatus(c->res) == PGRES_FATAL_ERROR) {
            PQclear(r); /* keep the first error */
        } else {
            PQclear(c->res);
            c->res = r;
        }
    }
}

/* ---- connection: connecting ---- */

static void conn_on_poll_closed(uv_handle_t *h)
{
    pg_conn *c = h->data;
    free(h);
    c->pool->handles--;
    pool_maybe_finish(c->pool);
}

static void conn_close_poll(pg_conn *c)
{
    if (!c->poll)
        return;
    uv_close((uv_handle_t *)c->poll, conn_on_poll_closed); /* stops watching: before close(fd) */
    c->poll = NULL;
}

/* Watches PQsocket for events, with a new poll handle when libpq changed the socket. */
static void conn_watch(pg_conn *c, int events)
{
    int fd = PQsocket(c->pq);
    if (fd < 0) {
        conn_fail(c, PQerrorMessage(c->pq));
        return;
    }
    if (c->poll && c->sock != fd)
        conn_close_poll(c);
    if (!c->poll) {
        uv_poll_t *h = xcalloc(1, sizeof *h);
        int rc = uv_poll_init(c->pool->loop, h, fd);
        if (rc < 0) {
            free(h);
            conn_fail(c, uv_strerror(rc));
            return;
        }
        h->data = c;
        c->poll = h;
        c->sock = fd;
        c->pool->handles++;
    }
    uv_poll_start(c->poll, events, conn_on_poll);
}

static void conn_connect_step(pg_conn *c)
{
    /* PQconnectPoll may close the socket and open another (next address, SSL refused...):
     * stop watching before, and watch whatever socket it leaves. */
    uv_poll_stop(c->poll);
    switch (PQconnectPoll(c->pq)) {
    case PGRES_POLLING_READING: conn_watch(c, UV_READABLE); break;
    case PGRES_POLLING_WRITING: conn_watch(c, UV_WRITABLE); break;
    case PGRES_POLLING_OK: {
        if (PQsetnonblocking(c->pq, 1) != 0) {
            conn_fail(c, PQerrorMessage(c->pq));
            return;
        }
        conn_watch(c, UV_READABLE);
        if (c->state == CONN_WAIT)
            return; /* conn_watch failed */
        char sql[64];
        snprintf(sql, sizeof sql, "SET statement_timeout = %u", c->pool->o.statement_timeout_ms);
        c->state = CONN_SETUP;
        conn_run(c, req_new(REQ_SETUP, sql, 0, NULL));
        break;
    }
    default: conn_fail(c, PQerrorMessage(c->pq)); break;
    }
}

static void conn_on_poll(uv_poll_t *h, int status, int events)
{
    pg_conn *c = h->data;
    if (c->state == CONN_CONNECTING) {
        conn_connect_step(c); /* libpq reads the socket's error itself */
        return;
    }
    if (c->state != CONN_SETUP && c->state != CONN_IDLE && c->state != CONN_BUSY)
        return;
    if (status < 0) {
        conn_fail(c, uv_strerror(status));
        return;
    }
    if ((events & UV_READABLE) && !PQconsumeInput(c->pq)) {
        conn_fail(c, PQerrorMessage(c->pq));
        return;
    }
    if (c->flushing) {
        conn_flush(c);
        if (c->state == CONN_WAIT)
            return;
    }
    if (c->cur) {
        conn_collect(c);
        return;
    }
    PGnotify *n;
    while ((n = PQnotifies(c->pq)))
        PQfreemem(n);
    if (PQstatus(c->pq) == CONNECTION_BAD)
        conn_fail(c, PQerrorMessage(c->pq));
}

static void conn_start_pq(pg_conn *c, const char *addr)
{
    pg_pool *p = c->pool;
    const char **kw, **val;
    pg_params(&p->o, addr[0] != '/' ? addr : NULL, p->port, &kw, &val);
    c->pq = PQconnectStartParams(kw, val, 0);
    free(kw);
    free(val);
    if (!c->pq) {
        conn_fail(c, "out of memory");
        return;
    }
    if (PQstatus(c->pq) == CONNECTION_BAD) {
        conn_fail(c, PQerrorMessage(c->pq));
        return;
    }
    PQsetNoticeReceiver(c->pq, pg_on_notice, NULL);
    c->state = CONN_CONNECTING;
    conn_watch(c, UV_WRITABLE); /* libpq: start as if PQconnectPoll said WRITING */
}

static void conn_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai)
{
    pg_resolve *rs = req->data;
    pg_conn *c = rs->conn;
    pg_pool *p = c->pool;
    unsigned gen = rs->gen;
    if (c->resolve == rs)
        c->resolve = NULL;
    free(rs);
    p->handles--;
    if (p->closing || gen != c->gen || c->state != CONN_RESOLVING) {
        uv_freeaddrinfo(ai);
        pool_maybe_finish(p);
        return;
    }
    if (status < 0 || !ai) {
        char why[256];
        snprintf(why, sizeof why, "resolve %s: %s", p->host, uv_strerror(status));
        uv_freeaddrinfo(ai);
        conn_fail(c, why);
        return;
    }
    struct addrinfo *pick = ai;
    for (struct addrinfo *a = ai; a; a = a->ai_next)
        if (a->ai_family == AF_INET) { /* servers often listen on IPv4 only */
            pick = a;
            break;
        }
    char addr[64] = "";
    if (pick->ai_family == AF_INET6)
        uv_ip6_name((const struct sockaddr_in6 *)pick->ai_addr, addr, sizeof addr);
    else
        uv_ip4_name((const struct sockaddr_in *)pick->ai_addr, addr, sizeof addr);
    uv_freeaddrinfo(ai);
    conn_start_pq(c, addr);
}

static int pg_is_numeric_host(const char *h)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return uv_inet_pton(AF_INET, h, buf) == 0 || uv_inet_pton(AF_INET6, h, buf) == 0;
}

/* Starts one connection attempt, bounded by connect_timeout_ms. */
static void conn_connect(pg_conn *c)
{
    pg_pool *p = c->pool;
    c->gen++;
    uv_timer_start(&c->timer, conn_on_timer, p->o.connect_timeout_ms, 0);
    if (p->host[0] == '/' || pg_is_numeric_host(p->host)) {
        conn_start_pq(c, p->host);
        return;
    }
    pg_resolve *rs = xcalloc(1, sizeof *rs);
    rs->conn = c;
    rs->gen = c->gen;
    rs->req.data = rs;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    c->state = CONN_RESOLVING;
    int rc = uv_getaddrinfo(p->loop, &rs->req, conn_on_resolved, p->host, NULL, &hints);
    if (rc < 0) {
        free(rs);
        conn_fail(c, uv_strerror(rc));
        return;
    }
    c->resolve = rs;
    p->handles++;
}

/* Drops the libpq connection: the running request and the transaction's fail with PG_DOWN. */
static void conn_drop(pg_conn *c)
{
    pg_pool *p = c->pool;
    c->gen++;
    conn_close_poll(c);
    if (c->pq)
        PQfinish(c->pq);
    c->pq = NULL;
    c->flushing = 0;
    PQclear(c->res);
    c->res = NULL;
    pg_req *r = c->cur;
    c->cur = NULL;
    if (r && r->kind == REQ_SETUP)
        req_free(r);
    else if (r)
        pool_complete(p, r, PG_DOWN, NULL);
    if (c->tx) { /* the transaction is dead; its pending requests fail */
        c->tx->conn = NULL;
        pool_fail_queue(p, &c->tx->q, PG_DOWN);
        c->tx = NULL;
    }
}

static void conn_fail(pg_conn *c, const char *why)
{
    pg_pool *p = c->pool;
    char msg[256];
    pg_oneline(msg, sizeof msg, why); /* why may live in the PGconn dropped below */
    int was_up = c->state == CONN_IDLE || c->state == CONN_BUSY;
    conn_drop(c);
    c->state = CONN_WAIT;
    json_t *f = json_pack("{s:i,s:s}", "conn", c->id, "error", msg);
    if (was_up || !c->failing)
        log_emit(LOG_WARN, NULL, f,
                 was_up ? "postgres connection lost" : "postgres connect failed");
    else
        log_emit(LOG_DEBUG, NULL, f, "postgres connect failed");
    c->failing = 1;
    if (!c->tried) {
        c->tried = 1;
        p->starting--;
    }
    uv_timer_start(&c->timer, conn_on_timer, c->backoff_ms, 0);
    c->backoff_ms = c->backoff_ms * 2 > PG_BACKOFF_MAX_MS ? PG_BACKOFF_MAX_MS : c->backoff_ms * 2;
    /* nobody left to serve the queue soon: callers answer 503 now rather than wait */
    if (pool_live(p) == 0 && p->starting == 0)
        pool_fail_queue(p, &p->queue, PG_DOWN);
}

/* The transaction on c stayed open too long: close the connection (the server rolls the
 * transaction back) and open another at once. The server is fine, so until the new connection
 * is up the slot counts as starting: queries wait for it rather than fail with PG_DOWN. */
static void conn_reset(pg_conn *c)
{
    log_emit(LOG_WARN, NULL, json_pack("{s:i}", "conn", c->id),
             "postgres transaction open for more than %d s: rolled back, connection reset",
             PG_TX_MAX_MS / 1000);
    conn_drop(c);
    c->state = CONN_WAIT;
    c->tried = 0;
    c->pool->starting++;
    uv_timer_start(&c->timer, conn_on_timer, 0, 0);
}

static void conn_on_timer(uv_timer_t *t)
{
    pg_conn *c = t->data;
    switch (c->state) {
    case CONN_WAIT: conn_connect(c); break;
    case CONN_RESOLVING:
    case CONN_CONNECTING:
    case CONN_SETUP: conn_fail(c, "connect timeout"); break;
    case CONN_IDLE:
    case CONN_BUSY:
        if (c->tx)
            conn_reset(c);
        break;
    case CONN_CLOSED: break;
    }
}

/* ---- the pool ---- */

static void pool_on_qtimer(uv_timer_t *t)
{
    pg_pool *p = t->data;
    uint64_t now = uv_now(p->loop);
    while (p->queue.head && p->queue.head->deadline <= now)
        pool_complete(p, list_pop(&p->queue), PG_BUSY, NULL);
    if (p->queue.head)
        uv_timer_start(t, pool_on_qtimer, p->queue.head->deadline - now, 0);
}

static void pool_submit(pg_pool *p, pg_req *r)
{
    if (p->closing) {
        pool_complete(p, r, PG_DOWN, NULL);
        return;
    }
    if (!p->queue.head) {
        for (int i = 0; i < p->o.size; i++) {
            pg_conn *c = &p->conns[i];
            if (c->state == CONN_IDLE && !c->tx && !c->cur) {
                conn_run(c, r);
                return;
            }
        }
    }
    if (pool_live(p) == 0 && p->starting == 0) {
        pool_complete(p, r, PG_DOWN, NULL);
        return;
    }
    if (p->queue.len >= p->o.max_queue) {
        pool_complete(p, r, PG_BUSY, NULL);
        return;
    }
    r->deadline = uv_now(p->loop) + p->o.queue_timeout_ms;
    list_push(&p->queue, r);
    if (!uv_is_active((uv_handle_t *)&p->qtimer))
        uv_timer_start(&p->qtimer, pool_on_qtimer, p->o.queue_timeout_ms, 0);
}

/* A DATABASE_URL that cannot be used: stops like config's parsers, without quoting the URL
 * (it holds the password; libpq's parse error may quote it too). */
static void pg_url_fail(const char *why)
{
    fprintf(stderr, "config: DATABASE_URL: %s\n", why);
    exit(2);
}

/* DATABASE_URL parsed once by libpq, kept until exit: its host, port, dbname, user and
 * password override o's; its other parameters become o->conninfo. */
static void pg_opts_from_url(pg_pool_opts *o)
{
    static PQconninfoOption *url_opts;
    static const char **url_extra;
    const char *url = config_str("DATABASE_URL", NULL);
    if (!url || !*url)
        return;
    if (!url_opts) {
        char *err = NULL;
        url_opts = PQconninfoParse(url, &err);
        PQfreemem(err);
        if (!url_opts)
            pg_url_fail("not a libpq connection URI "
                        "(postgres://user:password@host:port/dbname?sslmode=...)");
        int n = 0;
        for (PQconninfoOption *c = url_opts; c->keyword; c++)
            n++;
        url_extra = xcalloc((size_t)(2 * n + 1), sizeof(char *));
        int k = 0;
        for (PQconninfoOption *c = url_opts; c->keyword; c++) {
            static const char *const own[] = {"host", "port", "dbname", "user", "password"};
            int mine = 0;
            if (!c->val)
                continue;
            if (strcmp(c->keyword, "hostaddr") == 0)
                pg_url_fail("hostaddr is not supported: the pool resolves host itself");
            for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
                mine |= strcmp(c->keyword, own[i]) == 0;
            if (mine)
                continue;
            url_extra[k++] = c->keyword;
            url_extra[k++] = c->val;
        }
    }
    for (PQconninfoOption *c = url_opts; c->keyword; c++) {
        if (!c->val || !*c->val)
            continue;
        if (strcmp(c->keyword, "host") == 0) {
            if (strchr(c->val, ','))
                pg_url_fail("several hosts are not supported");
            o->host = c->val;
        } else if (strcmp(c->keyword, "port") == 0) {
            char *end;
            errno = 0;
            long port = strtol(c->val, &end, 10);
            if (errno || *end || port < 1 || port > 65535)
                pg_url_fail("the port must be one number from 1 to 65535");
            o->port = (int)port;
        } else if (strcmp(c->keyword, "dbname") == 0) {
            o->dbname = c->val;
        } else if (strcmp(c->keyword, "user") == 0) {
            o->user = c->val;
        } else if (strcmp(c->keyword, "password") == 0) {
            o->password = c->val;
        }
    }
    o->conninfo = url_extra[0] ? url_extra : NULL;
}

void pg_pool_opts_default(pg_pool_opts *o)
{
    memset(o, 0, sizeof *o);
    o->host = config_str("PGHOST", "127.0.0.1");
    o->port = (int)config_int("PGPORT", 5432);
    o->dbname = config_str("PGDATABASE", NULL);
    o->user = config_str("PGUSER", "postgres");
    o->password = config_str("PGPASSWORD", NULL);
    pg_opts_from_url(o);
    o->size = 4;
    o->max_queue = 256;
    o->queue_timeout_ms = 2000;
    o->statement_timeout_ms = 5000;
    o->connect_timeout_ms = 3000;
}

static void pool_on_handle_closed(uv_handle_t *h)
{
    pg_pool *p = h->data;
    p->handles--;
    pool_maybe_finish(p);
}

static void conn_on_timer_closed(uv_handle_t *h)
{
    pg_conn *c = h->data;
    c->pool->handles--;
    pool_maybe_finish(c->pool);
}

pg_pool *pg_pool_new(uv_loop_t *loop, const pg_pool_opts *opts)
{
    pg_pool *p = xcalloc(1, sizeof *p);
    p->loop = loop;
    p->o = *opts;
    if (p->o.size < 1)
        p->o.size = 1;
    if (p->o.max_queue < 0)
        p->o.max_queue = 0;
    p->host = xstrdup(opts->host && *opts->host ? opts->host : "127.0.0.1");
    p->dbname = xstrdup(opts->dbname);
    p->user = xstrdup(opts->user);
    p->password = xstrdup(opts->password);
    if (opts->port > 0)
        snprintf(p->port, sizeof p->port, "%d", opts->port);
    p->o.host = p->host;
    p->o.dbname = p->dbname;
    p->o.user = p->user;
    p->o.password = p->password;
    int extra = 0;
    while (opts->conninfo && opts->conninfo[extra])
        extra++;
    if (extra > 0) {
        p->conninfo = xcalloc((size_t)(extra + 1), sizeof(char *));
        for (int i = 0; i < extra; i++)
            p->conninfo[i] = xstrdup(opts->conninfo[i]);
    }
    p->o.conninfo = (const char *const *)p->conninfo;

    uv_idle_init(loop, &p->idle);
    p->idle.data = p;
    uv_timer_init(loop, &p->qtimer);
    p->qtimer.data = p;
    p->handles = 1;
    p->conns = xcalloc((size_t)p->o.size, sizeof(pg_conn));
    for (int i = 0; i < p->o.size; i++) {
        pg_conn *c = &p->conns[i];
        c->pool = p;
        c->id = i;
        c->state = CONN_WAIT;
        c->backoff_ms = PG_BACKOFF_MIN_MS;
        uv_timer_init(loop, &c->timer);
        c->timer.data = c;
        p->handles++;
    }
    p->starting = p->o.size;
    for (int i = 0; i < p->o.size; i++)
        conn_connect(&p->conns[i]);
    return p;
}

static void pool_on_idle_closed(uv_handle_t *h)
{
    pg_pool *p = h->data;
    free(p->conns);
    free(p->host);
    free(p->dbname);
    free(p->user);
    free(p->password);
    for (int i = 0; p->conninfo && p->conninfo[i]; i++)
        free(p->conninfo[i]);
    free(p->conninfo);
    free(p);
}

static void pool_maybe_finish(pg_pool *p)
{
    if (!p->closing || p->finishing || p->delivering || p->handles > 0 || p->ready.head)
        return;
    p->finishing = 1;
    uv_close((uv_handle_t *)&p->idle, pool_on_idle_closed);
}

void pg_pool_free(pg_pool *p)
{
    if (!p || p->closing)
        return;
    p->closing = 1;
    uv_close((uv_handle_t *)&p->qtimer, pool_on_handle_closed);
    pool_fail_queue(p, &p->queue, PG_DOWN);
    for (int i = 0; i < p->o.size; i++) {
        pg_conn *c = &p->conns[i];
        if (c->resolve)
            uv_cancel((uv_req_t *)&c->resolve->req);
        conn_drop(c);
        c->state = CONN_CLOSED;
        uv_close((uv_handle_t *)&c->timer, conn_on_timer_closed);
    }
    pool_maybe_finish(p);
}

int pg_pool_connected(const pg_pool *pool)
{
    return pool_live(pool);
}

int pg_pool_waiting(const pg_pool *pool)
{
    return pool->queue.len;
}

void pg_query(pg_pool *pool, const char *sql, int nparams, const char *const *params,
              pg_query_fn cb, void *ud)
{
    pg_req *r = req_new(REQ_QUERY, sql, nparams, params);
    r->qcb = cb;
    r->ud = ud;
    pool_submit(pool, r);
}

/* ---- transactions ---- */

void pg_begin(pg_pool *pool, pg_tx_fn cb, void *ud)
{
    pg_req *r = req_new(REQ_BEGIN, "BEGIN", 0, NULL);
    r->tcb = cb;
    r->ud = ud;
    pool_submit(pool, r);
}

/* Queues r on the transaction's connection; a dead transaction fails it at once. */
static void tx_submit(pg_tx *tx, pg_req *r)
{
    if (!tx->conn) {
        pool_complete(tx->pool, r, PG_DOWN, NULL);
        return;
    }
    list_push(&tx->q, r);
    conn_next(tx->conn);
}

void pg_tx_query(pg_tx *tx, const char *sql, int nparams, const char *const *params, pg_query_fn cb,
                 void *ud)
{
    pg_req *r = req_new(REQ_TX_QUERY, sql, nparams, params);
    r->qcb = cb;
    r->ud = ud;
    if (tx->ending) { /* after commit/rollback: a caller bug, answered as a dead tx */
        pool_complete(tx->pool, r, PG_DOWN, NULL);
        return;
    }
    tx_submit(tx, r);
}

static void tx_end(pg_tx *tx, req_kind kind, pg_query_fn cb, void *ud)
{
    pg_req *r = req_new(kind, kind == REQ_COMMIT ? "COMMIT" : "ROLLBACK", 0, NULL);
    r->qcb = cb;
    r->ud = ud;
    if (tx->ending) { /* ended twice: a caller bug; only the first one frees tx */
        pool_complete(tx->pool, r, PG_DOWN, NULL);
        return;
    }
    tx->ending = 1;
    r->tx = tx; /* freed once r's callback has run */
    tx_submit(tx, r);
}

void pg_tx_commit(pg_tx *tx, pg_query_fn cb, void *ud)
{
    tx_end(tx, REQ_COMMIT, cb, ud);
}

void pg_tx_rollback(pg_tx *tx, pg_query_fn cb, void *ud)
{
    tx_end(tx, REQ_ROLLBACK, cb, ud);
}

/* ---- results ---- */

const char *pg_sqlstate(const PGresult *res)
{
    const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return s ? s : "";
}

const char *pg_get(const PGresult *res, int row, const char *col)
{
    if (!res || !col || row < 0 || row >= PQntuples(res))
        return NULL;
    int c = PQfnumber(res, col);
    if (c < 0 || PQgetisnull(res, row, c))
        return NULL;
    return PQgetvalue(res, row, c);
}

PGconn *pg_connect_blocking(const pg_pool_opts *o)
{
    char port[16] = "";
    if (o->port > 0)
        snprintf(port, sizeof port, "%d", o->port);
    const char **kw, **val;
    pg_params(o, NULL, port, &kw, &val);
    PGconn *pq = PQconnectdbParams(kw, val, 0);
    free(kw);
    free(val);
    if (!pq || PQstatus(pq) != CONNECTION_OK) {
        char msg[512];
        pg_oneline(msg, sizeof msg, pq ? PQerrorMessage(pq) : "out of memory");
        log_emit(LOG_ERROR, NULL, json_pack("{s:s}", "error", msg), "cannot connect to postgres");
        PQfinish(pq);
        return NULL;
    }
    PQsetNoticeReceiver(pq, pg_on_notice, NULL);
    return pq;
}
