/* pg_pool: a pool of non-blocking libpq connections driven by uv_poll.
 *
 * Queries are queued (bounded) and run on the first free connection. A query that cannot get
 * a connection within queue_timeout_ms, or finds the queue full, fails with PG_BUSY; with no
 * connection to the server at all it fails at once with PG_DOWN: callers answer 503 with
 * Retry-After, never hang. Host names are resolved with uv_getaddrinfo and passed as hostaddr
 * (host is passed too, so that sslmode=verify-full checks the certificate against the name).
 * Lost connections are re-opened with backoff, so the pool recovers after a server restart.
 * Parameters are always bound ($1, $2 ...), text format. */
#ifndef COMMON_PG_POOL_H
#define COMMON_PG_POOL_H

#include <libpq-fe.h>
#include <uv.h>

typedef enum {
    PG_OK = 0,  /* res is PGRES_TUPLES_OK or PGRES_COMMAND_OK */
    PG_ERR_SQL, /* the server refused the statement: res holds the error (pg_sqlstate) */
    PG_BUSY,    /* queue full or waited too long for a connection */
    PG_DOWN,    /* no connection to the server (or it broke during the query) */
} pg_status;

typedef struct pg_pool pg_pool;
typedef struct pg_tx pg_tx;

typedef struct pg_pool_opts {
    const char *host; /* name or address; resolved asynchronously */
    int port;
    const char *dbname, *user, *password;
    /* more libpq keywords (sslmode, sslrootcert, application_name...): keyword, value, ...,
     * NULL; NULL for none */
    const char *const *conninfo;
    int size;                      /* connections: 4 */
    int max_queue;                 /* waiting queries: 256 */
    unsigned queue_timeout_ms;     /* 2000 */
    unsigned statement_timeout_ms; /* 5000 (SET statement_timeout on every connection) */
    unsigned connect_timeout_ms;   /* 3000 */
} pg_pool_opts;

/* Fills defaults; host/port/db/user/password from PGHOST PGPORT PGDATABASE PGUSER PGPASSWORD
 * (PGPASSWORD_FILE too) when set. DATABASE_URL (or DATABASE_URL_FILE), a libpq connection
 * URI such as postgres://user:pass@host:5432/db?sslmode=verify-full&sslrootcert=/ca.pem,
 * wins: what it says overrides the PG* variables, which fill only what it leaves out; its
 * other parameters go to conninfo. A URL that does not parse (or names several hosts or a
 * hostaddr) stops the process with status 2, with a message that never quotes the URL. */
void pg_pool_opts_default(pg_pool_opts *o);

/* res is valid only during the callback (the pool clears it after). */
typedef void (*pg_query_fn)(pg_status st, PGresult *res, void *ud);
typedef void (*pg_tx_fn)(pg_status st, pg_tx *tx, void *ud);

pg_pool *pg_pool_new(uv_loop_t *loop, const pg_pool_opts *opts); /* starts connecting */
void pg_pool_free(pg_pool *pool);                                /* closes; run the loop */
int pg_pool_connected(const pg_pool *pool);                      /* live connections */
int pg_pool_waiting(const pg_pool *pool);                        /* queued queries */

/* Runs one statement. params may contain NULL (SQL NULL). sql and params are copied: the
 * caller may free them as soon as this returns. cb is always called exactly once,
 * and never before pg_query returns (errors too arrive from a later loop iteration). */
void pg_query(pg_pool *pool, const char *sql, int nparams, const char *const *params,
              pg_query_fn cb, void *ud);

/* Transactions: pg_begin takes a connection (queued like a query) and runs BEGIN; every
 * pg_tx_query runs on that connection; pg_tx_commit / pg_tx_rollback end it and give the
 * connection back. On PG_DOWN inside a transaction the tx is dead: still call rollback. */
void pg_begin(pg_pool *pool, pg_tx_fn cb, void *ud);
/* Same copying rule as pg_query. */
void pg_tx_query(pg_tx *tx, const char *sql, int nparams, const char *const *params, pg_query_fn cb,
                 void *ud);
void pg_tx_commit(pg_tx *tx, pg_query_fn cb, void *ud);
void pg_tx_rollback(pg_tx *tx, pg_query_fn cb /* may be NULL */, void *ud);

/* SQLSTATE of a PG_ERR_SQL result ("23505" unique violation...), "" when none. */
const char *pg_sqlstate(const PGresult *res);
/* Value of row r, column name (NULL when SQL NULL or no such column). */
const char *pg_get(const PGresult *res, int row, const char *col);

/* libpq's message msg on one line ("unknown error" when empty), for logs and answers. */
void pg_oneline(char *dst, size_t cap, const char *msg);

/* A blocking libpq connection with opts' server and credentials, for start-up work before
 * the loop runs (pg_migrate, a service's bootstrap rows). NULL after logging why; PQfinish. */
PGconn *pg_connect_blocking(const pg_pool_opts *opts);

/* Applies dir/NNN_name.sql files not yet applied, in order, each in its own transaction,
 * recorded in table schema_migrations, all under a PostgreSQL advisory lock so instances
 * starting together are safe. Blocking libpq: call at start-up before serving.
 * Returns 0, or -1 after logging why. */
int pg_migrate(const pg_pool_opts *opts, const char *dir);

#endif
