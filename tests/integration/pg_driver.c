/* pg_driver: runs pg_pool test cases against a real PostgreSQL server on a uv loop and prints
 * one PASS/FAIL line per case. tests/integration/test_pg_pool.py starts it, one case a run:
 *   pg_driver basic|sql_error|tx|timeout|concurrency|queue_full|queue_timeout|responsive|
 *             resolve|free|tx_guard|opts
 *   pg_driver down_at_start PORT            (nothing listens on PORT)
 *   pg_driver ssl_fallback PORT             (SSL offered, but refused by pg_hba)
 *   pg_driver outage FIXTURE DIR PORT       (a cluster of its own, stopped and restarted)
 *   pg_driver migrate DIR EXPECT            (pg_migrate returns EXPECT: 0 or -1)
 *   pg_driver url ssl|refused               (the server from DATABASE_URL: TLS, or refused)
 *   pg_driver url_opts                      (DATABASE_URL_FILE beside the PG* variables)
 * The server comes from PGHOST PGPORT PGUSER PGDATABASE (pg_pool_opts_default). */
#include "log.h"
#include "pg_pool.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

static uv_loop_t *loop;
static uv_timer_t tick; /* keeps uv_run(UV_RUN_ONCE) from sleeping more than 10 ms */
static int in_call;     /* a pg_* call is running: a callback now breaks the contract */
static int sync_breach;
static char **args;
static int nargs;

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* ---- running the loop until something happened ---- */

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until *n >= target; 0, or -1 after ms. */
static int wait_count(const int *n, int target, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    while (*n < target) {
        if (now_ms() > end)
            return -1;
        uv_run(loop, UV_RUN_ONCE);
    }
    return 0;
}

static void sleep_loop(unsigned ms)
{
    uint64_t end = now_ms() + ms;
    while (now_ms() < end)
        uv_run(loop, UV_RUN_ONCE);
}

/* ---- query results, copied out of the callback ---- */

typedef struct {
    int done;
    pg_status st;
    char sqlstate[6];
    int rows;
    char *v[4]; /* row 0, columns 0..3; NULL when SQL NULL or absent */
    uint64_t t0, t1;
    int *counter; /* incremented on completion when set */
    int order;    /* completion rank, with counter */
} qres;

/* A callback came: counted in *done, its status kept in *kept; one that comes while a pg_*
 * call runs breaks the contract. */
static void called_back(int *done, pg_status *kept, pg_status st)
{
    if (in_call)
        sync_breach = 1;
    ++*done;
    *kept = st;
}

static void on_q(pg_status st, PGresult *res, void *ud)
{
    qres *r = ud;
    called_back(&r->done, &r->st, st);
    r->t1 = now_ms();
    snprintf(r->sqlstate, sizeof r->sqlstate, "%s", pg_sqlstate(res));
    if (st == PG_OK) {
        r->rows = PQntuples(res);
        for (int c = 0; c < 4 && c < PQnfields(res) && r->rows > 0; c++)
            if (!PQgetisnull(res, 0, c))
                r->v[c] = strdup(PQgetvalue(res, 0, c));
    }
    if (r->counter)
        r->order = ++*r->counter;
}

static void qres_clear(qres *r)
{
    for (int i = 0; i < 4; i++)
        free(r->v[i]);
    memset(r, 0, sizeof *r);
}

static void query_async(pg_pool *p, qres *r, const char *sql, int n, const char *const *params)
{
    qres_clear(r);
    r->t0 = now_ms();
    in_call = 1;
    pg_query(p, sql, n, params, on_q, r);
    in_call = 0;
}

/* Runs one statement and waits for it (10 s at most). */
static void query(pg_pool *p, qres *r, const char *sql, int n, const char *const *params)
{
    query_async(p, r, sql, n, params);
    wait_count(&r->done, 1, 10000);
}

typedef struct {
    int done;
    pg_status st;
    pg_tx *tx;
} txres;

static void on_tx(pg_status st, pg_tx *tx, void *ud)
{
    txres *r = ud;
    called_back(&r->done, &r->st, st);
    r->tx = tx;
}

static pg_tx *begin(pg_pool *p)
{
    txres r = {0};
    in_call = 1;
    pg_begin(p, on_tx, &r);
    in_call = 0;
    wait_count(&r.done, 1, 10000);
    CHECK_INT(r.done, 1);
    CHECK_INT(r.st, PG_OK);
    return r.st == PG_OK ? r.tx : NULL;
}

static void tx_query(pg_tx *tx, qres *r, const char *sql, int n, const char *const *params)
{
    qres_clear(r);
    r->t0 = now_ms();
    in_call = 1;
    pg_tx_query(tx, sql, n, params, on_q, r);
    in_call = 0;
    wait_count(&r->done, 1, 10000);
}

static void tx_end(pg_tx *tx, qres *r, int commit)
{
    qres_clear(r);
    in_call = 1;
    if (commit)
        pg_tx_commit(tx, on_q, r);
    else
        pg_tx_rollback(tx, on_q, r);
    in_call = 0;
    wait_count(&r->done, 1, 10000);
}

/* ---- pools ---- */

static pg_pool *pool_open(int size, int max_queue, unsigned queue_ms, unsigned stmt_ms, int port,
                          const char *host, int wait)
{
    pg_pool_opts o;
    pg_pool_opts_default(&o);
    o.size = size;
    o.max_queue = max_queue;
    o.queue_timeout_ms = queue_ms;
    o.statement_timeout_ms = stmt_ms;
    o.connect_timeout_ms = 1000;
    if (port)
        o.port = port;
    if (host)
        o.host = host;
    pg_pool *p = pg_pool_new(loop, &o);
    if (wait) {
        uint64_t end = now_ms() + 5000;
        while (pg_pool_connected(p) < size && now_ms() < end)
            uv_run(loop, UV_RUN_ONCE);
        CHECK_INT(pg_pool_connected(p), size);
    }
    return p;
}

/* Frees the pool and runs the loop until its handles are closed (bounded). */
static void pool_close(pg_pool *p)
{
    pg_pool_free(p);
    uint64_t end = now_ms() + 3000;
    while (uv_run(loop, UV_RUN_NOWAIT) && now_ms() < end)
        uv_run(loop, UV_RUN_ONCE);
    CHECK(now_ms() < end);
}

/* A statement the pool refuses: PG_BUSY within wait_ms, after lo to hi ms (printed as what). */
static void expect_busy(qres *q, unsigned wait_ms, const char *what, uint64_t lo, uint64_t hi)
{
    wait_count(&q->done, 1, wait_ms);
    CHECK_INT(q->st, PG_BUSY);
    uint64_t waited = q->t1 - q->t0;
    printf("  %s: PG_BUSY after %llu ms\n", what, (unsigned long long)waited);
    CHECK(waited >= lo && waited < hi);
}

static void exec_ok(pg_pool *p, const char *sql)
{
    qres r = {0};
    query(p, &r, sql, 0, NULL);
    if (r.st != PG_OK)
        printf("  statement failed: %s (%d %s)\n", sql, r.st, r.sqlstate);
    CHECK_INT(r.st, PG_OK);
    qres_clear(&r);
}

/* The end of a case: the table it made dropped (when it names one), its n results cleared, no
 * callback broke the contract, the pool closed. */
static void pool_done(pg_pool *p, qres *q, int n, const char *table)
{
    if (table) {
        char sql[64];
        snprintf(sql, sizeof sql, "DROP TABLE %s", table);
        exec_ok(p, sql);
    }
    for (int i = 0; i < n; i++)
        qres_clear(&q[i]);
    CHECK(!sync_breach);
    pool_close(p);
}

/* Sends n statements without waiting for them, all counted in *done: the first two are
 * sleep_sql, the others SELECT 1. */
static void query_busy(pg_pool *p, qres *q, int n, const char *sleep_sql, int *done)
{
    for (int i = 0; i < n; i++) {
        query_async(p, &q[i], i < 2 ? sleep_sql : "SELECT 1", 0, NULL);
        q[i].counter = done;
    }
}

/* The port named on the command line (the cases given a server of their own). */
static int arg_port(void)
{
    int port = nargs > 0 ? atoi(args[0]) : 0;
    CHECK(port > 0);
    return port;
}

/* One statement on a pool of two of its own (port and host as pool_open takes them, connected
 * first): its status is st and, when v0 is given, its first value v0. */
static void query_once(int port, const char *host, const char *sql, pg_status st, const char *v0)
{
    pg_pool *p = pool_open(2, 256, 2000, 5000, port, host, 1);
    qres r = {0};
    query(p, &r, sql, 0, NULL);
    CHECK_INT(r.st, st);
    if (v0)
        CHECK_STR(r.v[0], v0);
    pool_done(p, &r, 1, NULL);
}

/* pg_pool_opts_default into o, with PGHOST PGPORT PGDATABASE PGUSER set and the variable
 * file_var naming a temporary file that holds text; -1 (a failed check) without the file. */
static int opts_with_file(const char *file_var, const char *text, pg_pool_opts *o)
{
    char path[] = "/tmp/pg_driver_opts_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return -1;
    CHECK_INT(write(fd, text, strlen(text)), (long)strlen(text));
    close(fd);
    setenv("PGHOST", "db.internal", 1);
    setenv("PGPORT", "6543", 1);
    setenv("PGDATABASE", "appdb", 1);
    setenv("PGUSER", "app", 1);
    setenv(file_var, path, 1);
    pg_pool_opts_default(o);
    unlink(path);
    return 0;
}

/* The server and account o names. */
static void check_server(const pg_pool_opts *o, const char *host, int port, const char *dbname,
                         const char *user, const char *password)
{
    CHECK_STR(o->host, host);
    CHECK_INT(o->port, port);
    CHECK_STR(o->dbname, dbname);
    CHECK_STR(o->user, user);
    CHECK_STR(o->password, password);
}

/* ---- cases ---- */

typedef struct {
    int done;
    char *name, *note, *missing, *past;
} getres;

static void on_get(pg_status st, PGresult *res, void *ud)
{
    getres *g = ud;
    g->done++;
    if (st != PG_OK)
        return;
    const char *v = pg_get(res, 0, "name");
    g->name = v ? strdup(v) : NULL;
    g->note = (char *)pg_get(res, 0, "note"); /* NULL expected: SQL NULL */
    g->missing = (char *)pg_get(res, 0, "no_such_column");
    g->past = (char *)pg_get(res, 1, "name");
}

static void basic(void)
{
    /* the first query goes out before any connection is up: it waits, it does not fail */
    pg_pool *p = pool_open(4, 256, 2000, 5000, 0, NULL, 0);
    qres r = {0};
    const char *add[2] = {"40", "2"};
    query(p, &r, "SELECT $1::int + $2::int AS s", 2, add);
    CHECK_INT(r.st, PG_OK);
    CHECK_STR(r.v[0], "42");

    exec_ok(p, "CREATE TABLE basic_t (id serial PRIMARY KEY, name text UNIQUE, note text)");
    const char *evil = "x'); DROP TABLE basic_t; --";
    const char *ins[2] = {evil, NULL};
    query(p, &r, "INSERT INTO basic_t (name, note) VALUES ($1, $2) RETURNING name, note", 2, ins);
    CHECK_INT(r.st, PG_OK);
    CHECK_STR(r.v[0], evil);
    CHECK(r.v[1] == NULL);

    getres g = {0};
    const char *sel[1] = {evil};
    pg_query(p, "SELECT name, note FROM basic_t WHERE name = $1", 1, sel, on_get, &g);
    wait_count(&g.done, 1, 10000);
    CHECK_STR(g.name, evil);
    CHECK(g.note == NULL && g.missing == NULL && g.past == NULL);
    free(g.name);

    query(p, &r, "SELECT count(*) FROM basic_t", 0, NULL); /* the table is still there */
    CHECK_INT(r.st, PG_OK);
    CHECK_STR(r.v[0], "1");

    const char *odd[1] = {"O'Brien \"quoted\" \\ back; é ✓"};
    query(p, &r, "SELECT $1::text", 1, odd);
    CHECK_STR(r.v[0], odd[0]);

    const char *nul[1] = {NULL};
    query(p, &r, "SELECT $1::text IS NULL", 1, nul);
    CHECK_STR(r.v[0], "t");
    pool_done(p, &r, 1, "basic_t");
}

static void sql_error(void)
{
    pg_pool *p = pool_open(4, 256, 2000, 5000, 0, NULL, 1);
    qres r = {0};
    exec_ok(p, "CREATE TABLE err_t (k text UNIQUE NOT NULL)");
    /* statements in order, each with its parameter (NULL: SQL NULL), status and SQLSTATE */
    static const struct {
        const char *sql;
        int nparams;
        const char *param;
        pg_status st;
        const char *sqlstate; /* NULL: not checked */
    } steps[] = {
        {"INSERT INTO err_t VALUES ($1)", 1, "a", PG_OK, NULL},
        {"INSERT INTO err_t VALUES ($1)", 1, "a", PG_ERR_SQL, "23505"},
        {"INSERT INTO err_t VALUES ($1)", 1, NULL, PG_ERR_SQL, "23502"},
        {"SELEC 1", 0, NULL, PG_ERR_SQL, "42601"},
        {"SELECT $1::int", 1, "abc", PG_ERR_SQL, "22P02"},
        /* an empty statement is the caller's error, not an outage */
        {"", 0, NULL, PG_ERR_SQL, NULL},
        /* errors leave the connections in service */
        {"SELECT 1", 0, NULL, PG_OK, NULL},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        query(p, &r, steps[i].sql, steps[i].nparams, &steps[i].param);
        CHECK_INT(r.st, steps[i].st);
        if (steps[i].sqlstate)
            CHECK_STR(r.sqlstate, steps[i].sqlstate);
    }
    CHECK_INT(pg_pool_connected(p), 4);
    pool_done(p, &r, 1, "err_t");
}

static void tx(void)
{
    pg_pool *p = pool_open(4, 256, 2000, 5000, 0, NULL, 1);
    qres r = {0};
    exec_ok(p, "CREATE TABLE tx_t (v text)");
    const char *cv[1] = {"committed"}, *rv[1] = {"rolled"}, *bv[1] = {"bad"};
    const char *count = "SELECT count(*) FROM tx_t WHERE v = $1";

    pg_tx *t = begin(p);
    if (t) {
        tx_query(t, &r, "INSERT INTO tx_t VALUES ($1)", 1, cv);
        CHECK_INT(r.st, PG_OK);
        query(p, &r, count, 1, cv); /* another connection does not see it yet */
        CHECK_STR(r.v[0], "0");
        tx_end(t, &r, 1);
        CHECK_INT(r.st, PG_OK);
        query(p, &r, count, 1, cv);
        CHECK_STR(r.v[0], "1");
    }
    t = begin(p);
    if (t) {
        tx_query(t, &r, "INSERT INTO tx_t VALUES ($1)", 1, rv);
        CHECK_INT(r.st, PG_OK);
        tx_end(t, &r, 0);
        CHECK_INT(r.st, PG_OK);
        query(p, &r, count, 1, rv);
        CHECK_STR(r.v[0], "0");
    }
    /* a failed statement dooms the transaction: COMMIT reports it, nothing is stored */
    t = begin(p);
    if (t) {
        tx_query(t, &r, "INSERT INTO tx_t VALUES ($1)", 1, bv);
        tx_query(t, &r, "SELECT 1/0", 0, NULL);
        CHECK_STR(r.sqlstate, "22012");
        tx_end(t, &r, 1);
        CHECK_INT(r.st, PG_ERR_SQL);
        query(p, &r, count, 1, bv);
        CHECK_STR(r.v[0], "0");
    }
    /* statements sent without waiting run in order on the transaction's connection */
    t = begin(p);
    if (t) {
        int rank = 0;
        qres q[4] = {{0}};
        const char *vals[3] = {"p1", "p2", "p3"};
        in_call = 1;
        for (int i = 0; i < 3; i++) {
            q[i].counter = &rank;
            pg_tx_query(t, "INSERT INTO tx_t VALUES ($1) RETURNING (SELECT count(*) FROM tx_t)", 1,
                        &vals[i], on_q, &q[i]);
        }
        q[3].counter = &rank;
        pg_tx_commit(t, on_q, &q[3]);
        in_call = 0;
        wait_count(&rank, 4, 10000);
        for (int i = 0; i < 4; i++) {
            CHECK_INT(q[i].st, PG_OK);
            CHECK_INT(q[i].order, i + 1);
        }
        query(p, &r, "SELECT count(*) FROM tx_t WHERE v LIKE 'p_'", 0, NULL);
        CHECK_STR(r.v[0], "3");
        for (int i = 0; i < 4; i++)
            qres_clear(&q[i]);
    }
    CHECK_INT(pg_pool_connected(p), 4);
    pool_done(p, &r, 1, "tx_t");
}

static void timeout(void)
{
    pg_pool *p = pool_open(2, 256, 2000, 300, 0, NULL, 1);
    qres r = {0};
    query(p, &r, "SELECT pg_sleep(3)", 0, NULL);
    CHECK_INT(r.st, PG_ERR_SQL);
    CHECK_STR(r.sqlstate, "57014");
    printf("  statement_timeout 300 ms: error after %llu ms\n", (unsigned long long)(r.t1 - r.t0));
    CHECK(r.t1 - r.t0 < 1500);
    query(p, &r, "SELECT 1", 0, NULL);
    CHECK_INT(r.st, PG_OK);
    CHECK_INT(pg_pool_connected(p), 2);
    pool_done(p, &r, 1, NULL);
}

static void concurrency(void)
{
    enum { N = 50 };
    pg_pool *p = pool_open(4, 256, 10000, 5000, 0, NULL, 1);
    static qres q[N];
    static char num[N][8];
    int done = 0;
    uint64_t t0 = now_ms();
    for (int i = 0; i < N; i++) {
        snprintf(num[i], sizeof num[i], "%d", i);
        const char *prm[1] = {num[i]};
        query_async(p, &q[i], "SELECT $1::int AS n, pg_sleep(0.05)", 1, prm);
        q[i].counter = &done;
    }
    CHECK_INT(pg_pool_waiting(p), N - 4); /* 4 running, the rest queued */
    wait_count(&done, N, 20000);
    uint64_t ms = now_ms() - t0;
    int ok = 0;
    for (int i = 0; i < N; i++) {
        if (q[i].st == PG_OK && q[i].v[0] && strcmp(q[i].v[0], num[i]) == 0)
            ok++;
        qres_clear(&q[i]);
    }
    CHECK_INT(done, N);
    CHECK_INT(ok, N);
    /* 50 x 50 ms on 4 connections: at least 625 ms when at most 4 run at once */
    printf("  50 queries of 50 ms on 4 connections: %llu ms\n", (unsigned long long)ms);
    CHECK(ms >= 600 && ms < 5000);
    CHECK_INT(pg_pool_waiting(p), 0);
    pool_done(p, NULL, 0, NULL);
}

static void queue_full(void)
{
    pg_pool *p = pool_open(2, 3, 5000, 5000, 0, NULL, 1);
    qres q[6] = {{0}};
    int done = 0;
    query_busy(p, q, 6, "SELECT pg_sleep(0.5)", &done);
    CHECK_INT(pg_pool_waiting(p), 3);
    expect_busy(&q[5], 2000, "queue full", 0, 50);
    CHECK_INT(q[0].done, 0); /* the others are still running or waiting */
    wait_count(&done, 6, 5000);
    for (int i = 0; i < 5; i++)
        CHECK_INT(q[i].st, PG_OK);
    pool_done(p, q, 6, NULL);
}

static void queue_timeout(void)
{
    pg_pool *p = pool_open(2, 10, 300, 5000, 0, NULL, 1);
    qres q[3] = {{0}};
    int done = 0;
    query_busy(p, q, 3, "SELECT pg_sleep(1.5)", &done);
    expect_busy(&q[2], 3000, "queue_timeout 300 ms", 290, 700);
    wait_count(&done, 3, 5000);
    CHECK_INT(q[0].st, PG_OK);
    CHECK_INT(q[1].st, PG_OK);
    query(p, &q[2], "SELECT 1", 0, NULL); /* once free, the pool serves again */
    CHECK_INT(q[2].st, PG_OK);
    pool_done(p, q, 3, NULL);
}

/* responsive: a 10 ms timer keeps its pace while a query sleeps 2 s on the server */
static uint64_t tick_last_ns, tick_max_late_ns;
static int ticks;

static void probe_cb(uv_timer_t *t)
{
    (void)t;
    uint64_t now = uv_hrtime();
    if (tick_last_ns) {
        uint64_t gap = now - tick_last_ns;
        if (gap > 10000000 && gap - 10000000 > tick_max_late_ns)
            tick_max_late_ns = gap - 10000000;
    }
    tick_last_ns = now;
    ticks++;
}

static void responsive(void)
{
    pg_pool *p = pool_open(2, 256, 2000, 5000, 0, NULL, 1);
    uv_timer_t probe;
    uv_timer_init(loop, &probe);
    qres slow = {0}, fast = {0};
    query_async(p, &slow, "SELECT pg_sleep(2)", 0, NULL);
    uv_timer_start(&probe, probe_cb, 10, 10);
    sleep_loop(200);
    query(p, &fast, "SELECT 1", 0, NULL);
    wait_count(&slow.done, 1, 5000);
    uv_timer_stop(&probe);
    uv_close((uv_handle_t *)&probe, NULL);
    CHECK_INT(slow.st, PG_OK);
    CHECK(slow.t1 - slow.t0 >= 1900);
    CHECK_INT(fast.st, PG_OK);
    printf("  during pg_sleep(2): %d ticks of 10 ms, max lateness %.1f ms; other query %llu ms\n",
           ticks, tick_max_late_ns / 1e6, (unsigned long long)(fast.t1 - fast.t0));
    CHECK(ticks >= 150);
    CHECK(tick_max_late_ns < 50000000);
    CHECK(fast.t1 - fast.t0 < 100);
    qres_clear(&slow);
    pool_done(p, &fast, 1, NULL);
}

static void resolve(void)
{
    /* a host name goes through uv_getaddrinfo, then hostaddr */
    query_once(0, "localhost", "SELECT 1", PG_OK, NULL);
}

/* ssl_fallback: the server accepts SSL but its pg_hba rejects SSL connections; libpq
 * (sslmode=prefer) then drops that socket and connects again without SSL, on a new socket the
 * pool must watch instead of the old one (often with the same descriptor number). */
static void ssl_fallback(void)
{
    query_once(arg_port(), "127.0.0.1", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
               PG_OK, "f");
}

static void down_at_start(void)
{
    pg_pool *p = pool_open(2, 256, 2000, 5000, arg_port(), "127.0.0.1", 0);
    qres r = {0};
    query(p, &r, "SELECT 1", 0, NULL);
    CHECK_INT(r.st, PG_DOWN);
    printf("  no server: first query PG_DOWN after %llu ms\n", (unsigned long long)(r.t1 - r.t0));
    CHECK(r.t1 - r.t0 < 200);
    sleep_loop(300);
    query(p, &r, "SELECT 1", 0, NULL);
    CHECK_INT(r.st, PG_DOWN);
    CHECK(r.t1 - r.t0 < 50);
    txres t = {0};
    pg_begin(p, on_tx, &t);
    wait_count(&t.done, 1, 1000);
    CHECK_INT(t.st, PG_DOWN);
    CHECK(t.tx == NULL);
    pool_done(p, &r, 1, NULL);
}

static void free_pending(void)
{
    pg_pool *p = pool_open(2, 256, 5000, 5000, 0, NULL, 1);
    qres q[5] = {{0}};
    int done = 0;
    query_busy(p, q, 5, "SELECT pg_sleep(5)", &done);
    in_call = 1;
    pg_pool_free(p); /* running and waiting queries all end with PG_DOWN, later */
    in_call = 0;
    CHECK_INT(done, 0);
    uint64_t t0 = now_ms();
    while (uv_run(loop, UV_RUN_NOWAIT) && now_ms() - t0 < 2000)
        uv_run(loop, UV_RUN_ONCE);
    CHECK(now_ms() - t0 < 1000);
    CHECK_INT(done, 5);
    for (int i = 0; i < 5; i++) {
        CHECK_INT(q[i].st, PG_DOWN);
        qres_clear(&q[i]);
    }
    CHECK(!sync_breach);
}

static void tx_guard(void)
{
    /* one connection, held by a transaction nobody ends: after 30 s the pool rolls it back
     * and serves the query that waited */
    pg_pool *p = pool_open(1, 256, 40000, 5000, 0, NULL, 1);
    qres r = {0}, w = {0};
    exec_ok(p, "CREATE TABLE guard_t (v int)");
    pg_tx *t = begin(p);
    if (t) {
        tx_query(t, &r, "INSERT INTO guard_t VALUES (1)", 0, NULL);
        CHECK_INT(r.st, PG_OK);
        query_async(p, &w, "SELECT count(*) FROM guard_t", 0, NULL);
        wait_count(&w.done, 1, 40000);
        CHECK_INT(w.st, PG_OK);
        CHECK_STR(w.v[0], "0");
        printf("  abandoned transaction rolled back after %llu ms\n",
               (unsigned long long)(w.t1 - w.t0));
        CHECK(w.t1 - w.t0 >= 29000 && w.t1 - w.t0 < 36000);
        tx_query(t, &r, "SELECT 1", 0, NULL); /* the transaction is dead */
        CHECK_INT(r.st, PG_DOWN);
        tx_end(t, &r, 0);
        CHECK_INT(r.done, 1);
    }
    qres_clear(&w);
    pool_done(p, &r, 1, "guard_t");
}

/* outage: stop our own cluster for 10 s, then start it again */
typedef struct {
    uv_process_t proc;
    int done, closed;
    int64_t status;
} spawnres;

static void on_proc_closed(uv_handle_t *h)
{
    ((spawnres *)h->data)->closed = 1;
}

static void on_exit_cb(uv_process_t *proc, int64_t status, int sig)
{
    spawnres *s = proc->data;
    (void)sig;
    s->status = status;
    s->done = 1;
    uv_close((uv_handle_t *)proc, on_proc_closed);
}

/* Runs "FIXTURE cmd DIR PORT" without blocking the loop; 0 when it exited with 0. */
static int fixture(const char *cmd)
{
    spawnres s;
    memset(&s, 0, sizeof s);
    s.status = -1;
    char *argv[] = {args[0], (char *)cmd, args[1], args[2], NULL};
    uv_stdio_container_t stdio[3] = {{.flags = UV_IGNORE},
                                     {.flags = UV_INHERIT_FD, .data.fd = 2},
                                     {.flags = UV_INHERIT_FD, .data.fd = 2}};
    uv_process_options_t o = {
        .exit_cb = on_exit_cb, .file = args[0], .args = argv, .stdio_count = 3, .stdio = stdio};
    s.proc.data = &s;
    int rc = uv_spawn(loop, &s.proc, &o);
    if (rc < 0) {
        printf("  spawn %s: %s\n", args[0], uv_strerror(rc));
        uv_close((uv_handle_t *)&s.proc, on_proc_closed);
        wait_count(&s.closed, 1, 1000);
        return -1;
    }
    wait_count(&s.closed, 1, 60000);
    return s.done && s.status == 0 ? 0 : -1;
}

static void outage(void)
{
    if (nargs < 3) {
        printf("  usage: outage FIXTURE DIR PORT\n");
        test_case_failed = 1;
        return;
    }
    pg_pool *p = pool_open(4, 256, 2000, 60000, atoi(args[2]), "127.0.0.1", 1);
    qres r = {0}, mid = {0};
    query(p, &r, "SELECT 1", 0, NULL);
    CHECK_INT(r.st, PG_OK);
    pg_tx *t = begin(p);
    query_async(p, &mid, "SELECT pg_sleep(30)", 0, NULL);
    sleep_loop(100);

    CHECK_INT(fixture("stop"), 0);
    uint64_t down_at = now_ms();
    wait_count(&mid.done, 1, 2000);
    CHECK_INT(mid.st, PG_DOWN); /* broke during the query */
    if (t) {
        tx_query(t, &r, "SELECT 1", 0, NULL);
        CHECK_INT(r.st, PG_DOWN);
        tx_end(t, &r, 0);
        CHECK_INT(r.done, 1);
    }
    int n = 0, down = 0;
    uint64_t worst = 0;
    while (now_ms() - down_at < 10000) {
        query(p, &r, "SELECT 1", 0, NULL);
        n++;
        if (r.st == PG_DOWN)
            down++;
        if (r.t1 - r.t0 > worst)
            worst = r.t1 - r.t0;
        sleep_loop(100);
    }
    printf("  server down 10 s: %d/%d queries PG_DOWN, slowest answer %llu ms, %d connected\n",
           down, n, (unsigned long long)worst, pg_pool_connected(p));
    CHECK_INT(down, n);
    CHECK(worst < 200);
    CHECK_INT(pg_pool_connected(p), 0);

    CHECK_INT(fixture("start"), 0);
    uint64_t up_at = now_ms();
    do {
        query(p, &r, "SELECT 1", 0, NULL);
        if (r.st == PG_OK)
            break;
        sleep_loop(100);
    } while (now_ms() - up_at < 10000);
    uint64_t back = now_ms() - up_at;
    printf("  after restart: first success after %llu ms\n", (unsigned long long)back);
    CHECK_INT(r.st, PG_OK);
    CHECK(back < 5000);
    uint64_t end = now_ms() + 5000;
    while (pg_pool_connected(p) < 4 && now_ms() < end)
        uv_run(loop, UV_RUN_ONCE);
    CHECK_INT(pg_pool_connected(p), 4);
    qres_clear(&mid);
    pool_done(p, &r, 1, NULL);
}

/* opts: pg_pool_opts_default reads the libpq variables, the password from PGPASSWORD_FILE */
static void opts(void)
{
    pg_pool_opts o;
    unsetenv("PGPASSWORD");
    if (opts_with_file("PGPASSWORD_FILE", "s3cret\n", &o) != 0)
        return;
    check_server(&o, "db.internal", 6543, "appdb", "app", "s3cret");
    CHECK_INT(o.size, 4);
    CHECK_INT(o.max_queue, 256);
    CHECK_INT(o.queue_timeout_ms, 2000);
    CHECK_INT(o.statement_timeout_ms, 5000);
    CHECK_INT(o.connect_timeout_ms, 3000);
}

/* url: the server comes from DATABASE_URL alone; "ssl": the pool connects over TLS, and the
 * migrator too; "refused": every query fails with PG_DOWN */
static void url(void)
{
    const char *expect = nargs > 0 ? args[0] : "";
    int ok = strcmp(expect, "ssl") == 0;
    CHECK(ok || strcmp(expect, "refused") == 0);
    pg_pool *p = pool_open(2, 256, 2000, 5000, 0, NULL, ok);
    qres r = {0};
    query(p, &r, "SELECT ssl::text, current_user FROM pg_stat_ssl WHERE pid = pg_backend_pid()", 0,
          NULL);
    if (ok) {
        CHECK_INT(r.st, PG_OK);
        CHECK_STR(r.v[0], "true");
        CHECK_STR(r.v[1], "app");
        char dir[] = "/tmp/pg_driver_mig_XXXXXX"; /* no files: connects, creates the table */
        CHECK(mkdtemp(dir) != NULL);
        pg_pool_opts o;
        pg_pool_opts_default(&o);
        CHECK_INT(pg_migrate(&o, dir), 0);
        rmdir(dir);
    } else {
        CHECK_INT(r.st, PG_DOWN);
        CHECK_INT(pg_pool_connected(p), 0);
    }
    pool_done(p, &r, 1, NULL);
}

/* url_opts: DATABASE_URL (here from DATABASE_URL_FILE) wins over PGHOST PGPORT PGDATABASE
 * PGUSER; PGPASSWORD fills what the URL leaves out; its other parameters go to conninfo */
static void url_opts(void)
{
    pg_pool_opts o;
    setenv("PGPASSWORD", "frompg", 1);
    unsetenv("DATABASE_URL");
    if (opts_with_file("DATABASE_URL_FILE",
                       "postgres://urluser@db.example.com:7654/urldb"
                       "?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem\n",
                       &o) != 0)
        return;
    check_server(&o, "db.example.com", 7654, "urldb", "urluser", "frompg");
    int n = 0, mode = 0, ca = 0;
    for (; o.conninfo && o.conninfo[n]; n += 2) {
        mode +=
            strcmp(o.conninfo[n], "sslmode") == 0 && strcmp(o.conninfo[n + 1], "verify-full") == 0;
        ca += strcmp(o.conninfo[n], "sslrootcert") == 0 &&
              strcmp(o.conninfo[n + 1], "/etc/ssl/db-ca.pem") == 0;
    }
    CHECK_INT(n, 4);
    CHECK_INT(mode, 1);
    CHECK_INT(ca, 1);
}

static void migrate(void)
{
    if (nargs < 2) {
        printf("  usage: migrate DIR EXPECT\n");
        test_case_failed = 1;
        return;
    }
    pg_pool_opts o;
    pg_pool_opts_default(&o);
    CHECK_INT(pg_migrate(&o, args[0]), atoi(args[1]));
}

int main(int argc, char **argv)
{
    test_suite = "pg";
    if (argc < 2) {
        fprintf(stderr, "usage: %s CASE [ARGS...]\n", argv[0]);
        return 2;
    }
    log_init("pg_driver");
    args = argv + 2;
    nargs = argc - 2;
    loop = uv_default_loop();
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, tick_cb, 10, 10);
    uv_unref((uv_handle_t *)&tick);

    static const struct {
        const char *name;
        void (*fn)(void);
    } cases[] = {
        {"basic", basic},
        {"sql_error", sql_error},
        {"tx", tx},
        {"timeout", timeout},
        {"concurrency", concurrency},
        {"queue_full", queue_full},
        {"queue_timeout", queue_timeout},
        {"responsive", responsive},
        {"resolve", resolve},
        {"down_at_start", down_at_start},
        {"ssl_fallback", ssl_fallback},
        {"free", free_pending},
        {"tx_guard", tx_guard},
        {"outage", outage},
        {"migrate", migrate},
        {"opts", opts},
        {"url", url},
        {"url_opts", url_opts},
    };
    int found = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (strcmp(argv[1], cases[i].name) != 0)
            continue;
        found = 1;
        test_case_failed = 0;
        cases[i].fn();
        printf("%s pg/%s\n", test_case_failed ? "FAIL" : "PASS", cases[i].name);
        fflush(stdout);
        test_failed_cases += test_case_failed;
    }
    if (!found) {
        fprintf(stderr, "unknown case %s\n", argv[1]);
        return 2;
    }
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    if (uv_loop_close(loop) != 0) {
        printf("FAIL pg/%s_handles: handles left open on the loop\n", argv[1]);
        return 1;
    }
    return TEST_EXIT();
}
