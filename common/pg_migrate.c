/* pg_migrate: the blocking start-up migrator (see pg_pool.h): the dir/NNN_name.sql files in
 * name order, each applied once in its own transaction and recorded in schema_migrations,
 * under an advisory lock so that instances starting together apply each file once. */
#include "pg_pool.h"

#include "log.h"
#include "xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- migrations (blocking, at start-up) ---- */

static int migrate_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.sql names in dir, sorted; NULL (and *n = -1) when dir cannot be read. */
static char **migrate_list(const char *dir, int *n)
{
    *n = -1;
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    char **names = NULL;
    int len = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (e->d_name[0] == '.' || l < 5 || strcmp(e->d_name + l - 4, ".sql") != 0)
            continue;
        if (len == cap) {
            cap = cap ? cap * 2 : 16;
            names = xrealloc(names, sizeof(char *) * (size_t)cap);
        }
        names[len++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (len > 1)
        qsort(names, (size_t)len, sizeof(char *), migrate_cmp);
    *n = len;
    return names;
}

static char *migrate_read(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0, got;
    do {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            buf = xrealloc(buf, cap);
        }
        got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
    } while (got > 0);
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

/* Runs sql (no parameters); 0 when it succeeded, else logs what and returns -1. */
static int migrate_exec(PGconn *pq, const char *what, const char *sql, int nparams,
                        const char *const *params)
{
    PGresult *res = PQexecParams(pq, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType s = PQresultStatus(res);
    int ok = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
    if (!ok) {
        char msg[512];
        pg_oneline(msg, sizeof msg, res ? PQresultErrorMessage(res) : PQerrorMessage(pq));
        log_emit(LOG_ERROR, NULL, json_pack("{s:s,s:s}", "step", what, "error", msg),
                 "migration failed");
    }
    PQclear(res);
    return ok ? 0 : -1;
}

/* Applies dir/name unless recorded. 0 on success (or already applied), -1 after logging. */
static int migrate_apply(PGconn *pq, const char *dir, const char *name)
{
    char version[256];
    snprintf(version, sizeof version, "%.*s", (int)(strlen(name) - 4), name);
    const char *params[1] = {version};
    PGresult *res = PQexecParams(pq, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, NULL,
                                 params, NULL, NULL, 0);
    int st = PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res) : -1;
    if (st < 0) {
        char msg[512];
        pg_oneline(msg, sizeof msg, PQresultErrorMessage(res));
        log_emit(LOG_ERROR, NULL, json_pack("{s:s,s:s}", "file", name, "error", msg),
                 "migration failed");
    }
    PQclear(res);
    if (st != 0)
        return st > 0 ? 0 : -1;

    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *sql = migrate_read(path);
    if (!sql) {
        log_emit(LOG_ERROR, NULL, json_pack("{s:s,s:s}", "file", path, "error", strerror(errno)),
                 "migration failed: cannot read the file");
        return -1;
    }
    if (migrate_exec(pq, "begin", "BEGIN", 0, NULL) < 0) {
        free(sql);
        return -1;
    }
    /* PQexec runs every statement of the file; it returns the first error if one fails */
    res = PQexec(pq, sql);
    free(sql);
    ExecStatusType s = PQresultStatus(res);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && s != PGRES_EMPTY_QUERY) {
        char msg[512];
        pg_oneline(msg, sizeof msg, res ? PQresultErrorMessage(res) : PQerrorMessage(pq));
        log_emit(LOG_ERROR, NULL, json_pack("{s:s,s:s}", "file", name, "error", msg),
                 "migration failed");
        PQclear(res);
        PQclear(PQexec(pq, "ROLLBACK"));
        return -1;
    }
    PQclear(res);
    if (migrate_exec(pq, name, "INSERT INTO schema_migrations (version) VALUES ($1)", 1, params) <
        0) {
        PQclear(PQexec(pq, "ROLLBACK"));
        return -1;
    }
    res = PQexec(pq, "COMMIT");
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(res), "COMMIT") == 0;
    if (!ok) {
        char msg[512];
        pg_oneline(msg, sizeof msg, PQresultErrorMessage(res));
        log_emit(LOG_ERROR, NULL, json_pack("{s:s,s:s}", "file", name, "error", msg),
                 "migration failed at commit");
    }
    PQclear(res);
    if (ok)
        log_emit(LOG_INFO, NULL, json_pack("{s:s}", "file", name), "migration applied");
    return ok ? 0 : -1;
}

int pg_migrate(const pg_pool_opts *o, const char *dir)
{
    int n;
    char **names = migrate_list(dir, &n);
    if (n < 0) {
        log_emit(LOG_ERROR, NULL, json_pack("{s:s,s:s}", "dir", dir, "error", strerror(errno)),
                 "migration failed: cannot read the directory");
        return -1;
    }
    int rc = -1;
    PGconn *pq = pg_connect_blocking(o);
    if (!pq) {
        log_error(NULL, "migration failed: cannot connect to postgres");
    } else {
        /* one migrator at a time per database; the others wait here, then find the files
         * recorded and apply nothing */
        if (migrate_exec(pq, "lock", "SELECT pg_advisory_lock(hashtext('schema_migrations'))", 0,
                         NULL) == 0) {
            rc = migrate_exec(pq, "create schema_migrations",
                              "CREATE TABLE IF NOT EXISTS schema_migrations ("
                              "version text PRIMARY KEY, "
                              "applied_at timestamptz NOT NULL DEFAULT now())",
                              0, NULL);
            for (int i = 0; rc == 0 && i < n; i++)
                rc = migrate_apply(pq, dir, names[i]);
            if (migrate_exec(pq, "unlock",
                             "SELECT pg_advisory_unlock(hashtext('schema_migrations'))", 0,
                             NULL) < 0)
                rc = -1;
        }
    }
    PQfinish(pq);
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}
