/* tokens: issuing token pairs (signed off the loop), POST /auth/refresh (rotation with reuse
 * detection) and POST /internal/service-token. Who is calling is authn.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "cookie.h"
#include "crypto.h"
#include "es256.h"
#include "log.h"
#include "metrics.h"
#include "xalloc.h"

#define AUTH_REFRESH_BYTES 32

/* ---- issuing ---- */
typedef struct pair_ctx {
    http_req *req;
    char refresh[128];
} pair_ctx;

static void pair_on_signed(char *access, void *ud)
{
    pair_ctx *p = ud;
    http_req *req = p->req;
    if (!access) {
        explicit_bzero(p->refresh, sizeof(p->refresh));
        free(p);
        log_error(http_req_id(req), "cannot sign an access token");
        http_reply_error(req, 500, "internal_error", "Cannot issue a token.");
        return;
    }
    char cookie[JWT_MAX_LEN + 128];
    snprintf(cookie, sizeof(cookie),
             "access_token=%s; Max-Age=%ld; Path=/; HttpOnly; Secure; SameSite=Strict", access,
             auth.access_ttl_s);
    http_resp_header(req, "Set-Cookie", cookie);
    snprintf(cookie, sizeof(cookie),
             "refresh_token=%s; Max-Age=%ld; Path=/auth; HttpOnly; Secure; SameSite=Strict",
             p->refresh, auth.refresh_ttl_s);
    http_resp_header(req, "Set-Cookie", cookie);
    http_resp_header(req, "Cache-Control", "no-store");
    http_reply_json(req, 200,
                    json_pack("{s:s,s:s,s:s,s:I}", "access_token", access, "refresh_token",
                              p->refresh, "token_type", "Bearer", "expires_in",
                              (json_int_t)auth.access_ttl_s));
    explicit_bzero(p->refresh, sizeof(p->refresh));
    free(p);
    free(access);
}

void auth_reply_token_pair(http_req *req, const char *sub, const char *sid, const char *org,
                           const char *email, json_t *roles, const char *refresh_token)
{
    int64_t now = auth_now_s();
    /* the claims go to another thread: they share nothing with the caller's objects */
    json_t *claims = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:I,s:I}", "iss", auth.issuer, "aud",
                               auth.audience, "sub", sub, "sid", sid, "org", org, "email", email,
                               "roles", json_deep_copy(roles), "iat", (json_int_t)now, "exp",
                               (json_int_t)(now + auth.access_ttl_s));
    pair_ctx *p = xcalloc(1, sizeof(*p));
    if (strlen(refresh_token) >= sizeof(p->refresh)) {
        free(p);
        json_decref(claims);
        es256_release();
        http_reply_error(req, 500, "internal_error", "Cannot issue a token.");
        return;
    }
    p->req = req;
    snprintf(p->refresh, sizeof(p->refresh), "%s", refresh_token);
    if (es256_sign(AUTH_TOKEN_TYP, claims, 1, pair_on_signed, p) != 0) {
        free(p);
        http_reply_error(req, 500, "internal_error", "Cannot issue a token.");
    }
}

/* ---- POST /auth/refresh ---- */
typedef struct refresh_ctx {
    http_req *req;
    char old_hash[65];
    char new_token[64];
    int reserved; /* a place in the ES256 lane for the new access token */
} refresh_ctx;

static void refresh_free(void *ud)
{
    refresh_ctx *c = ud;
    if (c->reserved)
        es256_release();
    explicit_bzero(c->new_token, sizeof(c->new_token));
    free(c);
}

static void refresh_on_reuse(pg_status st, PGresult *res, void *ud)
{
    refresh_ctx *c = ud;
    if (st != PG_OK) {
        service_reply_pg_error(c->req, st, res);
    } else if (PQntuples(res) > 0) {
        const char *sid = pg_get(res, 0, "id");
        log_emit(LOG_WARN, http_req_id(c->req), json_pack("{s:s}", "sid", sid),
                 "refresh token reused: session revoked");
        auth_session_revoked(sid);
        auth_clear_cookies(c->req);
        auth_reply_unauthorized(c->req, "refresh_token_reused",
                                "This refresh token was already used; the session is revoked.", 0);
    } else {
        auth_reply_unauthorized(c->req, "invalid_refresh_token",
                                "The refresh token is unknown, expired or revoked.", 0);
    }
    refresh_free(c);
}

static void refresh_on_rotate(pg_status st, PGresult *res, void *ud)
{
    refresh_ctx *c = ud;
    if (auth_pg_failed(c->req, st, res, refresh_free, c))
        return;
    if (PQntuples(res) == 1) {
        const char *email = pg_get(res, 0, "email");
        json_t *roles = auth_roles(pg_get(res, 0, "roles"));
        c->reserved = 0; /* the pair's signature takes the place */
        auth_reply_token_pair(c->req, pg_get(res, 0, "sub"), pg_get(res, 0, "sid"),
                              pg_get(res, 0, "org_id"), email, roles, c->new_token);
        json_decref(roles);
        refresh_free(c);
        return;
    }
    /* Not rotatable: a token already rotated out (outside the grace period) revokes its
     * session (RFC 9700 reuse detection); anything else is just invalid. */
    const char *params[] = {c->old_hash};
    auth_pg("UPDATE sessions SET revoked_at = now() WHERE id = (SELECT session_id FROM "
            "refresh_tokens WHERE token_hash = $1 AND used_at IS NOT NULL) "
            "AND revoked_at IS NULL RETURNING id",
            1, params, refresh_on_reuse, c);
}

static void refresh_handler(http_req *req)
{
    const char *token = NULL;
    auth_field f[] = {{"refresh_token", 0, 256, &token}};
    json_t *body = auth_body_fields(req, f, 1, 1);
    if (!body)
        return;
    char cookie[512];
    if (!token && cookie_get(req, "refresh_token", cookie, sizeof(cookie)) > 0)
        token = cookie;
    if (!token || !*token) {
        json_decref(body);
        http_reply_error(req, 400, "invalid_request",
                         "A refresh_token (field or cookie) is required.");
        return;
    }
    /* a place for the new access token's signature before rotating anything: a refresh
     * token rotated without its answer would kill the session on the client's retry */
    if (es256_reserve() != 0) {
        json_decref(body);
        auth_reply_es256_full(req);
        return;
    }
    refresh_ctx *c = xcalloc(1, sizeof(*c));
    c->req = req;
    c->reserved = 1;
    auth_sha256_hex(token, strlen(token), c->old_hash);
    json_decref(body);
    crypto_random_token(c->new_token, AUTH_REFRESH_BYTES);
    char new_hash[65], grace[24], ttl[24];
    auth_sha256_hex(c->new_token, strlen(c->new_token), new_hash);
    snprintf(grace, sizeof(grace), "%ld", auth.refresh_grace_s);
    snprintf(ttl, sizeof(ttl), "%ld", auth.refresh_ttl_s);
    const char *params[] = {c->old_hash, new_hash, grace, ttl};
    /* The winner is decided by this one statement: a concurrent use of the same token waits
     * for the row, then re-checks the condition against the committed used_at. Both sides
     * of that comparison are clock_timestamp() (now() is the start of the statement, so a
     * loser that started before the winner would still find the token "fresh"); with grace
     * 0 only a token never used passes. */
    auth_pg("WITH old AS ("
            " UPDATE refresh_tokens r SET used_at = COALESCE(r.used_at, clock_timestamp())"
            " FROM sessions s WHERE r.token_hash = $1 AND r.session_id = s.id"
            " AND s.revoked_at IS NULL AND r.expires_at > now()"
            " AND (r.used_at IS NULL OR ($3::int > 0"
            " AND r.used_at > clock_timestamp() - $3::int * interval '1 second'))"
            " RETURNING r.session_id),"
            " sess AS (UPDATE sessions SET last_used_at = now(),"
            " expires_at = now() + $4::int * interval '1 second'"
            " WHERE id IN (SELECT session_id FROM old) RETURNING id, user_id),"
            " ins AS (INSERT INTO refresh_tokens (token_hash, session_id, expires_at)"
            " SELECT $2, id, now() + $4::int * interval '1 second' FROM sess"
            " RETURNING session_id)"
            " SELECT sess.id AS sid, u.id AS sub, u.email, u.org_id,"
            " array_to_json(u.roles)::text AS roles"
            " FROM sess JOIN ins ON ins.session_id = sess.id JOIN users u ON u.id = sess.user_id",
            4, params, refresh_on_rotate, c);
}

/* ---- POST /internal/service-token ---- */
static int service_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
              ch == '.'))
            return 0;
    }
    return 1;
}

static void service_token_on_signed(char *tok, void *ud);

static void service_token_handler(http_req *req)
{
    const char *name = NULL, *secret = NULL, *audience = NULL;
    auth_field f[] = {
        {"service", 1, 64, &name}, {"secret", 1, 1024, &secret}, {"audience", 1, 64, &audience}};
    json_t *body = auth_body_fields(req, f, 3, 0);
    if (!body)
        return;
    if (!service_name_ok(audience)) {
        json_decref(body);
        http_reply_error(req, 400, "invalid_request",
                         "audience must be a service name (a-z, 0-9, '-', '_', '.').");
        return;
    }
    uint8_t h[32];
    crypto_sha256(secret, strlen(secret), h);
    int ok = 0;
    for (size_t i = 0; i < auth.n_services; i++)
        if (strcmp(auth.services[i].name, name) == 0)
            ok = crypto_ct_equal(auth.services[i].secret_hash, h, 32);
    if (!ok) {
        log_emit(LOG_WARN, http_req_id(req), json_pack("{s:s}", "service", name),
                 "service token refused");
        json_decref(body);
        http_reply_error(req, 401, "invalid_credentials", "Unknown service or wrong secret.");
        return;
    }
    int64_t now = auth_now_s();
    json_t *claims =
        json_pack("{s:s,s:s,s:s,s:I,s:I}", "iss", auth.issuer, "aud", audience, "sub", name, "iat",
                  (json_int_t)now, "exp", (json_int_t)(now + auth.service_ttl_s));
    json_decref(body);
    if (es256_sign(AUTH_SERVICE_TYP, claims, 0, service_token_on_signed, req) != 0)
        auth_reply_es256_full(req);
}

static void service_token_on_signed(char *tok, void *ud)
{
    http_req *req = ud;
    if (!tok) {
        http_reply_error(req, 500, "internal_error", "Cannot issue a token.");
        return;
    }
    http_resp_header(req, "Cache-Control", "no-store");
    http_reply_json(req, 200,
                    json_pack("{s:s,s:s,s:I}", "access_token", tok, "token_type", "Bearer",
                              "expires_in", (json_int_t)auth.service_ttl_s));
    free(tok);
}

void tokens_routes(router *r)
{
    router_add(r, "POST", "/auth/refresh", refresh_handler, 16384);
    router_add(r, "POST", "/internal/service-token", service_token_handler, 16384);
}
