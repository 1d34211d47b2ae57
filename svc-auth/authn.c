/* authn: who is calling svc-auth: access tokens (checked by es256.c, off the loop unless
 * cached, then the session's revocation check, revocation.c) and API keys (by SHA-256, cached
 * < 1 s); and the router's authenticator built on them (router_add_auth routes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "cookie.h"
#include "crypto.h"
#include "es256.h"
#include "xalloc.h"

#define AUTH_MAX_CREDENTIAL 4096

void auth_ident_free(auth_ident *id)
{
    if (!id)
        return;
    json_decref(id->roles);
    free(id);
}

static void auth_copy(char *dst, size_t cap, json_t *v)
{
    const char *s = json_string_value(v);
    snprintf(dst, cap, "%s", s ? s : "");
}

/* One authentication under way, by access token or by API key. */
typedef struct authn {
    http_req *req;
    auth_ident_fn cb;
    void *ud;
    int me;
    auth_ident *id;  /* a token's, while its session is checked */
    uint8_t key[32]; /* an API key's SHA-256 */
} authn;

static authn *authn_new(http_req *req, int me, auth_ident_fn cb, void *cb_ud)
{
    authn *a = xcalloc(1, sizeof(*a));
    a->req = req;
    a->cb = cb;
    a->ud = cb_ud;
    a->me = me;
    return a;
}

/* ---- access tokens ---- */

static void authn_on_session(auth_session_state st, void *ud)
{
    authn *a = ud;
    http_req *req = a->req;
    auth_ident_fn cb = a->cb;
    auth_ident *id = a->id;
    void *cb_ud = a->ud;
    int me = a->me;
    free(a);
    if (st == AUTH_SESSION_ALIVE) {
        cb(req, id, cb_ud);
        return;
    }
    auth_ident_free(id);
    if (st == AUTH_SESSION_REVOKED) {
        auth_reply_unauthorized(req, "token_revoked", "The session of this token was revoked.", me);
    } else {
        http_resp_header(req, "Retry-After", "1");
        http_reply_error(req, 503, "unavailable", "Cannot check the session now; retry shortly.");
    }
    cb(req, NULL, cb_ud);
}

static void authn_on_claims(int checked, jwt_err err, json_t *claims, void *ud)
{
    authn *a = ud;
    http_req *req = a->req;
    auth_ident_fn cb = a->cb;
    void *cb_ud = a->ud;
    int me = a->me;
    if (!checked) {
        free(a);
        auth_reply_es256_full(req);
        cb(req, NULL, cb_ud);
        return;
    }
    if (err != JWT_OK) {
        free(a);
        auth_reply_unauthorized(req, err == JWT_EEXPIRED ? "token_expired" : "invalid_token",
                                jwt_strerror(err), me);
        cb(req, NULL, cb_ud);
        return;
    }
    json_t *sid = json_object_get(claims, "sid"), *sub = json_object_get(claims, "sub");
    json_t *roles = json_object_get(claims, "roles");
    if (!json_is_string(sid) || !json_is_string(sub) || !json_is_array(roles)) {
        free(a);
        auth_reply_unauthorized(req, "invalid_token", "The token lacks its claims.", me);
        cb(req, NULL, cb_ud);
        return;
    }
    auth_ident *id = xcalloc(1, sizeof(*id));
    id->kind = AUTH_KIND_TOKEN;
    auth_copy(id->sub, sizeof(id->sub), sub);
    auth_copy(id->sid, sizeof(id->sid), sid);
    auth_copy(id->org, sizeof(id->org), json_object_get(claims, "org"));
    auth_copy(id->email, sizeof(id->email), json_object_get(claims, "email"));
    id->roles = json_deep_copy(roles);
    id->exp = json_integer_value(json_object_get(claims, "exp"));
    a->id = id;
    auth_session_check(id->sid, authn_on_session, a);
}

static void authn_token(http_req *req, const char *token, int me, auth_ident_fn cb, void *cb_ud)
{
    authn *a = authn_new(req, me, cb, cb_ud);
    if (es256_verify_access(token, strlen(token), authn_on_claims, a) != 0) {
        free(a);
        auth_reply_es256_full(req);
        cb(req, NULL, cb_ud);
    }
}

/* ---- API keys ---- */
static void authk_answer(http_req *req, json_t *v, int me, auth_ident_fn cb, void *cb_ud)
{
    if (!json_is_object(v)) {
        auth_reply_unauthorized(req, "invalid_api_key", "The API key is unknown or revoked.", me);
        cb(req, NULL, cb_ud);
        return;
    }
    auth_ident *id = xcalloc(1, sizeof(*id));
    id->kind = AUTH_KIND_API_KEY;
    auth_copy(id->sub, sizeof(id->sub), json_object_get(v, "sub"));
    auth_copy(id->org, sizeof(id->org), json_object_get(v, "org"));
    auth_copy(id->email, sizeof(id->email), json_object_get(v, "email"));
    auth_copy(id->key_id, sizeof(id->key_id), json_object_get(v, "key_id"));
    id->roles = auth_roles(json_string_value(json_object_get(v, "roles")));
    cb(req, id, cb_ud);
}

static void authk_on_row(pg_status st, PGresult *res, void *ud)
{
    authn *k = ud;
    if (st != PG_OK) {
        service_reply_pg_error(k->req, st, res);
        k->cb(k->req, NULL, k->ud);
        free(k);
        return;
    }
    json_t *v;
    if (PQntuples(res) == 1)
        v = json_pack("{s:s,s:s,s:s,s:s,s:s}", "key_id", pg_get(res, 0, "id"), "sub",
                      pg_get(res, 0, "sub"), "org", pg_get(res, 0, "org_id"), "email",
                      pg_get(res, 0, "email"), "roles", pg_get(res, 0, "roles"));
    else
        v = json_null();
    ttl_cache_put(auth.apikey_cache, k->key, v, clock_mono_ms() + auth.positive_ttl_ms);
    authk_answer(k->req, v, k->me, k->cb, k->ud);
    json_decref(v);
    free(k);
}

static void authn_api_key(http_req *req, const char *key, int me, auth_ident_fn cb, void *cb_ud)
{
    authn *k = authn_new(req, me, cb, cb_ud);
    crypto_sha256(key, strlen(key), k->key);
    json_t *v = ttl_cache_get(auth.apikey_cache, k->key, clock_mono_ms());
    if (v) {
        free(k);
        authk_answer(req, v, me, cb, cb_ud);
        return;
    }
    char hex[65];
    crypto_hex(k->key, 32, hex);
    const char *params[] = {hex};
    auth_pg("SELECT k.id, u.id AS sub, u.email, u.org_id, array_to_json(u.roles)::text AS roles "
            "FROM api_keys k JOIN users u ON u.id = k.user_id "
            "WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
            1, params, authk_on_row, k);
}

void auth_authenticate(http_req *req, int allow_api_key, int me, auth_ident_fn cb, void *cb_ud)
{
    const char *h = http_req_header(req, "Authorization");
    char cookie[AUTH_MAX_CREDENTIAL];
    if (h) {
        if (strlen(h) > AUTH_MAX_CREDENTIAL) {
            auth_reply_unauthorized(req, "invalid_token", "The credential is too long.", me);
            cb(req, NULL, cb_ud);
            return;
        }
        const char *sp = strchr(h, ' ');
        const char *cred = sp;
        while (cred && *cred == ' ')
            cred++;
        if (sp && (size_t)(sp - h) == 6 && strncasecmp(h, "Bearer", 6) == 0 && *cred) {
            authn_token(req, cred, me, cb, cb_ud);
            return;
        }
        if (sp && (size_t)(sp - h) == 6 && strncasecmp(h, "ApiKey", 6) == 0 && *cred) {
            if (allow_api_key) {
                authn_api_key(req, cred, me, cb, cb_ud);
                return;
            }
            auth_reply_unauthorized(req, "invalid_authorization",
                                    "This endpoint needs a Bearer access token.", me);
            cb(req, NULL, cb_ud);
            return;
        }
        auth_reply_unauthorized(req, "invalid_authorization",
                                "Authorization must be \"Bearer <token>\" or \"ApiKey <key>\".",
                                me);
        cb(req, NULL, cb_ud);
        return;
    }
    if (cookie_get(req, "access_token", cookie, sizeof(cookie)) > 0) {
        authn_token(req, cookie, me, cb, cb_ud);
        return;
    }
    auth_reply_unauthorized(req, "missing_credentials", "An Authorization header is required.", me);
    cb(req, NULL, cb_ud);
}

/* ---- the router's authenticator (router_add_auth routes): an access token only ---- */
typedef struct authn_route {
    router_authed_fn done;
    void *done_ud;
} authn_route;

/* The caller as common/auth_client.h describes it. */
void auth_ident_to_identity(const auth_ident *id, auth_identity *out)
{
    memset(out, 0, sizeof(*out));
    out->kind = id->kind == AUTH_KIND_API_KEY ? AUTH_ID_API_KEY : AUTH_ID_TOKEN;
    snprintf(out->sub, sizeof(out->sub), "%s", id->sub);
    snprintf(out->email, sizeof(out->email), "%s", id->email);
    snprintf(out->org, sizeof(out->org), "%s", id->org);
    snprintf(out->sid, sizeof(out->sid), "%s", id->sid);
    out->roles = auth_identity_role_bits(id->roles);
    out->exp = id->exp;
}

static void authn_route_ident(http_req *req, auth_ident *id, void *ud)
{
    authn_route *a = ud;
    router_authed_fn done = a->done;
    void *done_ud = a->done_ud;
    free(a);
    (void)req;
    if (!id) { /* answered */
        done(done_ud, NULL);
        return;
    }
    auth_identity who;
    auth_ident_to_identity(id, &who);
    auth_ident_free(id);
    done(done_ud, &who);
}

void auth_route_authn(void *ctx, http_req *req, router_authed_fn done, void *done_ud)
{
    (void)ctx;
    authn_route *a = xcalloc(1, sizeof(*a));
    a->done = done;
    a->done_ud = done_ud;
    auth_authenticate(req, 0, 0, authn_route_ident, a);
}
