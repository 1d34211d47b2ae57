/* sessions: POST /auth/login, POST /auth/logout, GET /auth/sessions and
 * DELETE /auth/sessions/{sid}. A revocation is recorded through revocation.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "crypto.h"
#include "es256.h"
#include "log.h"
#include "metrics.h"
#include "query.h"
#include "passwords.h"
#include "throttle.h"
#include "utf8.h"
#include "xalloc.h"

#define AUTH_REFRESH_BYTES 32

/* ---- POST /auth/login ---- */
static void login_count(const char *result)
{
    char labels[48];
    snprintf(labels, sizeof(labels), "result=\"%s\"", result);
    metric_inc(metrics_counter("auth_logins_total", "login attempts by result", labels));
}

typedef struct login_ctx {
    http_req *req;
    json_t *body;
    const char *password;
    char email[256];
    char ip[72];
    char sub[40], org[40];
    char *roles;
    char refresh[64];
    int reserved;            /* a place in the ES256 lane for the access token */
    throttle_ticket *ticket; /* this attempt, counted by the throttle */
} login_ctx;

static void login_free(void *ud)
{
    login_ctx *c = ud;
    if (c->reserved)
        es256_release();
    throttle_done(c->ticket, 0); /* not a failure: right password, or never checked */
    json_decref(c->body);
    free(c->roles);
    free(c);
}

static void login_on_session(pg_status st, PGresult *res, void *ud)
{
    login_ctx *c = ud;
    if (st != PG_OK || PQntuples(res) != 1) {
        service_reply_pg_error(c->req, st, res);
        login_free(c);
        return;
    }
    login_count("ok");
    json_t *roles = auth_roles(c->roles);
    c->reserved = 0; /* the pair's signature takes the place */
    auth_reply_token_pair(c->req, c->sub, pg_get(res, 0, "session_id"), c->org, c->email, roles,
                          c->refresh);
    json_decref(roles);
    login_free(c);
}

static void login_on_verify(int result, const char *hash, void *ud)
{
    login_ctx *c = ud;
    (void)hash;
    if (result < 0) {
        http_resp_header(c->req, "Retry-After", "1");
        http_reply_error(c->req, 503, "unavailable", "Cannot check the password now.");
        login_free(c);
        return;
    }
    if (result != 0 || !c->sub[0]) {
        throttle_done(c->ticket, 1);
        c->ticket = NULL;
        login_count("invalid");
        http_reply_error(c->req, 401, "invalid_credentials", "Wrong email or password.");
        login_free(c);
        return;
    }
    crypto_random_token(c->refresh, AUTH_REFRESH_BYTES);
    char hash_hex[65], ttl[24];
    auth_sha256_hex(c->refresh, strlen(c->refresh), hash_hex);
    snprintf(ttl, sizeof(ttl), "%ld", auth.refresh_ttl_s);
    const char *ua = http_req_header(c->req, "User-Agent");
    char ua_short[256]; /* stored as valid UTF-8, cut between characters */
    utf8_sanitize(ua_short, sizeof(ua_short), ua ? ua : "", ua ? strlen(ua) : 0);
    const char *params[] = {c->sub, ttl, ua ? ua_short : NULL, c->ip, hash_hex};
    auth_pg("WITH s AS (INSERT INTO sessions (user_id, expires_at, user_agent, ip)"
            " VALUES ($1, now() + $2::int * interval '1 second', $3, $4) RETURNING id, expires_at)"
            " INSERT INTO refresh_tokens (token_hash, session_id, expires_at)"
            " SELECT $5, id, expires_at FROM s RETURNING session_id",
            5, params, login_on_session, c);
}

static void login_on_user(pg_status st, PGresult *res, void *ud)
{
    login_ctx *c = ud;
    if (auth_pg_failed(c->req, st, res, login_free, c))
        return;
    const char *phc = NULL;
    if (PQntuples(res) == 1) {
        snprintf(c->sub, sizeof(c->sub), "%s", pg_get(res, 0, "id"));
        snprintf(c->org, sizeof(c->org), "%s", pg_get(res, 0, "org_id"));
        c->roles = xstrdup(pg_get(res, 0, "roles"));
        phc = pg_get(res, 0, "password_hash");
    }
    /* An unknown email costs the same hash as a wrong password. */
    if (passwords_verify(phc, c->password, strlen(c->password), login_on_verify, c) != 0) {
        http_resp_header(c->req, "Retry-After", "1");
        http_reply_error(c->req, 503, "overloaded", "Too many logins in progress; retry shortly.");
        login_free(c);
    }
}

static void login_on_throttle(long retry_after_s, throttle_ticket *t, void *ud)
{
    login_ctx *c = ud;
    c->ticket = t;
    if (retry_after_s > 0) {
        char ra[24];
        snprintf(ra, sizeof(ra), "%ld", retry_after_s);
        http_resp_header(c->req, "Retry-After", ra);
        login_count("throttled");
        http_reply_error(c->req, 429, "too_many_attempts",
                         "Too many failed logins for this account; retry later.");
        login_free(c);
        return;
    }
    /* the access token will be signed on the threadpool: hold its place before hashing */
    if (es256_reserve() != 0) {
        http_resp_header(c->req, "Retry-After", "1");
        http_reply_error(c->req, 503, "overloaded", "Too many logins in progress; retry shortly.");
        login_free(c);
        return;
    }
    c->reserved = 1;
    const char *params[] = {c->email};
    auth_pg("SELECT id, org_id, password_hash, array_to_json(roles)::text AS roles "
            "FROM users WHERE email = $1",
            1, params, login_on_user, c);
}

static void login_handler(http_req *req)
{
    const char *email = NULL, *password = NULL;
    auth_field f[] = {{"email", 1, 254, &email}, {"password", 1, 1024, &password}};
    json_t *body = auth_body_fields(req, f, 2, 0);
    if (!body)
        return;
    login_ctx *c = xcalloc(1, sizeof(*c));
    c->req = req;
    c->body = body;
    c->password = password;
    size_t i;
    for (i = 0; email[i] && i + 1 < sizeof(c->email); i++)
        c->email[i] = (char)((email[i] >= 'A' && email[i] <= 'Z') ? email[i] + 32 : email[i]);
    c->email[i] = '\0';
    snprintf(c->ip, sizeof(c->ip), "%s", auth_client_ip(req));
    throttle_reserve(c->email, c->ip, login_on_throttle, c);
}

/* ---- POST /auth/logout ---- */
static void logout_on_update(pg_status st, PGresult *res, void *ud)
{
    http_req *req = ud;
    const char *sid = http_req_data(req);
    if (st != PG_OK) {
        service_reply_pg_error(req, st, res);
    } else {
        auth_session_revoked(sid);
        auth_clear_cookies(req);
        http_reply(req, 204, NULL, NULL, 0);
    }
    free((void *)sid);
    http_req_set_data(req, NULL);
}

static void logout_handler(http_req *req, const auth_identity *id)
{
    char *sid = xstrdup(id->sid);
    http_req_set_data(req, sid);
    const char *params[] = {sid};
    auth_pg("UPDATE sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", 1,
            params, logout_on_update, req);
}

/* ---- GET /auth/sessions ---- */
typedef struct list_ctx {
    http_req *req;
    char sid[64];
    long limit;
} list_ctx;

static void sessions_on_list(pg_status st, PGresult *res, void *ud)
{
    list_ctx *c = ud;
    if (auth_pg_failed(c->req, st, res, free, c))
        return;
    int n = PQntuples(res);
    json_t *data = json_array();
    for (int i = 0; i < n && i < c->limit; i++) {
        const char *id = pg_get(res, i, "id");
        const char *ua = pg_get(res, i, "user_agent"), *ip = pg_get(res, i, "ip");
        json_array_append_new(data, json_pack("{s:s,s:s,s:s,s:s,s:o,s:o,s:b}", "id", id,
                                              "created_at", pg_get(res, i, "created_at"),
                                              "last_used_at", pg_get(res, i, "last_used_at"),
                                              "expires_at", pg_get(res, i, "expires_at"),
                                              "user_agent", ua ? json_string(ua) : json_null(),
                                              "ip", ip ? json_string(ip) : json_null(), "current",
                                              strcmp(id, c->sid) == 0));
    }
    http_reply_json(c->req, 200, json_pack("{s:o,s:b}", "data", data, "has_more", n > c->limit));
    free(c);
}

static void sessions_list_handler(http_req *req, const auth_identity *id)
{
    char limit_s[16] = "20", after[64] = "";
    const char *q = http_req_query(req);
    long limit = 20;
    int has = query_param(q, "limit", limit_s, sizeof(limit_s));
    if (has != 0) {
        char *end = limit_s;
        if (has > 0)
            limit = strtol(limit_s, &end, 10);
        if (has < 0 || *end || end == limit_s || limit < 1 || limit > 100) {
            http_reply_error(req, 400, "invalid_request",
                             "limit must be an integer from 1 to 100.");
            return;
        }
    }
    has = query_param(q, "starting_after", after, sizeof(after));
    if (has < 0 || (has > 0 && !auth_is_uuid(after))) {
        http_reply_error(req, 400, "invalid_request", "starting_after must be a session id.");
        return;
    }
    list_ctx *c = xcalloc(1, sizeof(*c));
    c->req = req;
    c->limit = limit;
    snprintf(c->sid, sizeof(c->sid), "%s", id->sid);
    char lim1[16];
    snprintf(lim1, sizeof(lim1), "%ld", limit + 1);
    const char *params[] = {id->sub, after[0] ? after : NULL, lim1};
    auth_pg(
        "SELECT id, " AUTH_TS("created_at") " AS created_at, " AUTH_TS("last_used_at") " AS last_used_at, " AUTH_TS(
            "expires_at") " AS expires_at, user_agent, ip"
                          " FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()"
                          " AND ($2::uuid IS NULL OR (created_at, id) < (SELECT created_at, id FROM sessions"
                          " WHERE id = $2::uuid AND user_id = $1))"
                          " ORDER BY created_at DESC, id DESC LIMIT $3::int",
        3, params, sessions_on_list, c);
}

/* ---- DELETE /auth/sessions/{sid} ---- */
static void session_on_revoke(const PGresult *res)
{
    auth_session_revoked(pg_get(res, 0, "id"));
}

static void session_revoke_handler(http_req *req, const auth_identity *id)
{
    auth_pg_own_row(req, id, "sid", "No such live session.",
                    "UPDATE sessions SET revoked_at = now() WHERE id = $1 AND user_id = $2"
                    " AND revoked_at IS NULL RETURNING id",
                    session_on_revoke);
}

void sessions_routes(router *r)
{
    router_add(r, "POST", "/auth/login", login_handler, 16384);
    router_add_auth(r, "POST", "/auth/logout", logout_handler, 16384);
    router_add_auth(r, "GET", "/auth/sessions", sessions_list_handler, 0);
    router_add_auth(r, "DELETE", "/auth/sessions/{sid}", session_revoke_handler, 0);
}
