/* admin: the platform admin, bootstrapped at start-up like Keycloak's and Grafana's from
 * AUTH_ADMIN_EMAIL and AUTH_ADMIN_PASSWORD(_FILE). Registration never grants `admin` and
 * refuses that address (users.c); this is the only way to the role.
 *
 * At every start, before the loop runs (blocking libpq and argon2 are fine there), in one
 * transaction under an advisory lock (instances starting together take turns), one
 * statement makes the database agree with the configuration:
 *   - no account with that address: it is created with ["user","admin"] in a new
 *     organization "Platform" of its own (the platform's organization);
 *   - an account exists: it gets the admin role; when its stored hash does not match the
 *     configured password, the password is replaced and every session of the account is
 *     revoked (as POST /auth/password does); when it matches, nothing else changes;
 *   - any other account holding admin (the address was changed) loses the role and its
 *     sessions.
 * The account keeps its organization. Neither variable set: nothing is done. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "auth.h"
#include "log.h"
#include "passwords.h"
#include "pg_pool.h"

#define ADMIN_LOCK         "SELECT pg_advisory_xact_lock(hashtext('auth:admin_bootstrap'))"
#define ADMIN_ORGANIZATION "Platform"
#define ADMIN_NAME         "Platform admin"

/* $1 email, $2 new hash (NULL: keep the stored one), $3 organization name, $4 user name. */
#define ADMIN_UPSERT                                                                               \
    "WITH o AS (INSERT INTO organizations (name) SELECT $3"                                        \
    "  WHERE NOT EXISTS (SELECT 1 FROM users WHERE email = $1) RETURNING id),"                     \
    " ins AS (INSERT INTO users (org_id, email, name, password_hash, roles)"                       \
    "  SELECT id, $1, $4, $2::text, '{user,admin}' FROM o"                                         \
    "  ON CONFLICT (email) DO NOTHING RETURNING id),"                                              \
    " upd AS (UPDATE users SET password_hash = COALESCE($2::text, password_hash),"                 \
    "  roles = CASE WHEN 'admin' = ANY(roles) THEN roles ELSE roles || '{admin}' END,"             \
    "  updated_at = now()"                                                                         \
    "  WHERE email = $1 AND ($2::text IS NOT NULL OR NOT 'admin' = ANY(roles)) RETURNING id),"     \
    " dem AS (UPDATE users SET roles = array_remove(roles, 'admin'), updated_at = now()"           \
    "  WHERE 'admin' = ANY(roles) AND email <> $1 RETURNING id),"                                  \
    " rev AS (UPDATE sessions SET revoked_at = now() WHERE revoked_at IS NULL AND"                 \
    "  (user_id IN (SELECT id FROM dem)"                                                           \
    "   OR ($2::text IS NOT NULL AND user_id IN (SELECT id FROM upd))) RETURNING id)"              \
    " SELECT (SELECT count(*) FROM ins) AS created, (SELECT count(*) FROM upd) AS updated,"        \
    " (SELECT count(*) FROM dem) AS demoted, (SELECT count(*) FROM rev) AS revoked"

/* Runs one statement; its result, or NULL after logging. */
static PGresult *admin_exec(PGconn *pq, const char *what, const char *sql, int n,
                            const char *const *params)
{
    PGresult *res = PQexecParams(pq, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return res;
    log_emit(LOG_ERROR, NULL,
             json_pack("{s:s,s:s}", "step", what, "sqlstate", res ? pg_sqlstate(res) : ""),
             "admin bootstrap failed: %s", res ? PQresultErrorMessage(res) : PQerrorMessage(pq));
    PQclear(res);
    return NULL;
}

/* The new hash to store, "" when the stored one already matches; -1 on error. */
static int admin_new_hash(PGconn *pq, char hash[PASSWORDS_PHC_MAX])
{
    const char *params[] = {auth.admin_email};
    PGresult *res =
        admin_exec(pq, "read", "SELECT password_hash FROM users WHERE email = $1", 1, params);
    if (!res)
        return -1;
    const char *stored = PQntuples(res) == 1 ? pg_get(res, 0, "password_hash") : NULL;
    int same = stored &&
               passwords_verify_now(stored, auth.admin_password, strlen(auth.admin_password)) == 0;
    PQclear(res);
    hash[0] = '\0';
    if (!same && passwords_hash_now(auth.admin_password, strlen(auth.admin_password), hash) != 0) {
        log_error(NULL, "admin bootstrap failed: cannot hash AUTH_ADMIN_PASSWORD");
        return -1;
    }
    return 0;
}

static int admin_run(PGconn *pq)
{
    PGresult *res = admin_exec(pq, "lock", ADMIN_LOCK, 0, NULL);
    if (!res)
        return -1;
    PQclear(res);
    char hash[PASSWORDS_PHC_MAX];
    if (admin_new_hash(pq, hash) != 0)
        return -1;
    const char *params[] = {auth.admin_email, hash[0] ? hash : NULL, ADMIN_ORGANIZATION,
                            ADMIN_NAME};
    res = admin_exec(pq, "upsert", ADMIN_UPSERT, 4, params);
    explicit_bzero(hash, sizeof(hash));
    if (!res)
        return -1;
    log_emit(LOG_INFO, NULL,
             json_pack("{s:s,s:b,s:b,s:b,s:i,s:i}", "email", auth.admin_email, "created",
                       atoi(pg_get(res, 0, "created")) > 0, "updated",
                       atoi(pg_get(res, 0, "updated")) > 0, "password_changed", params[1] != NULL,
                       "demoted", atoi(pg_get(res, 0, "demoted")), "revoked_sessions",
                       atoi(pg_get(res, 0, "revoked"))),
             "platform admin bootstrapped");
    PQclear(res);
    return 0;
}

int admin_bootstrap(void)
{
    if (!auth.admin_email[0])
        return 0;
    pg_pool_opts o;
    pg_pool_opts_default(&o);
    PGconn *pq = pg_connect_blocking(&o);
    if (!pq) {
        log_error(NULL, "admin bootstrap failed: cannot connect to postgres");
        return -1;
    }
    int rc = -1;
    PGresult *res = admin_exec(pq, "begin", "BEGIN", 0, NULL);
    if (res) {
        PQclear(res);
        rc = admin_run(pq);
        res = admin_exec(pq, rc == 0 ? "commit" : "rollback", rc == 0 ? "COMMIT" : "ROLLBACK", 0,
                         NULL);
        if (!res)
            rc = -1;
        PQclear(res);
    }
    PQfinish(pq);
    return rc;
}
