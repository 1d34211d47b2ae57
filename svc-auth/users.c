/* users: POST /auth/register (new, invited or personal organization), GET/POST /auth/me,
 * POST /auth/password (revokes every other session of the user). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "log.h"
#include "passwords.h"
#include "xalloc.h"

int auth_email_valid(const char *e)
{
    size_t n = strlen(e);
    const char *at = strchr(e, '@');
    if (n < 3 || n > 254 || !at || at == e || strchr(at + 1, '@') || (size_t)(at - e) > 64)
        return 0;
    for (const char *p = e; p < at; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch <= ' ' || ch >= 127 || strchr("\"(),:;<>[\\]", ch))
            return 0;
    }
    const char *d = at + 1;
    size_t dl = strlen(d);
    if (dl < 3 || !strchr(d, '.') || d[0] == '.' || d[0] == '-' || d[dl - 1] == '.' ||
        strstr(d, ".."))
        return 0;
    for (const char *p = d; *p; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '.'))
            return 0;
    }
    return 1;
}

static void lower_copy(char *dst, size_t cap, const char *src)
{
    size_t i;
    for (i = 0; src[i] && i + 1 < cap; i++)
        dst[i] = (char)((src[i] >= 'A' && src[i] <= 'Z') ? src[i] + 32 : src[i]);
    dst[i] = '\0';
}

static int password_len_ok(http_req *req, const char *pw)
{
    size_t n = auth_utf8_chars(pw);
    if (n < PASSWORDS_MIN_CHARS || n > PASSWORDS_MAX_CHARS) {
        http_reply_error(req, 400, "invalid_password",
                         "The password must have 8 to 256 characters.");
        return 0;
    }
    return 1;
}

static void reply_hash_queue_full(http_req *req)
{
    http_resp_header(req, "Retry-After", "1");
    http_reply_error(req, 503, "overloaded",
                     "Too many password operations in progress; retry shortly.");
}

/* ---- POST /auth/register ---- */
typedef struct reg_ctx {
    http_req *req;
    json_t *body;
    const char *password, *name, *organization, *invite;
    char email[256];
} reg_ctx;

static void reg_free(reg_ctx *c)
{
    json_decref(c->body);
    free(c);
}

static void reg_on_insert(pg_status st, PGresult *res, void *ud)
{
    reg_ctx *c = ud;
    if (st == PG_ERR_SQL && strcmp(pg_sqlstate(res), "23505") == 0) {
        http_reply_error(c->req, 409, "email_taken", "An account with this email already exists.");
    } else if (st != PG_OK) {
        service_reply_pg_error(c->req, st, res);
    } else if (PQntuples(res) != 1) {
        http_reply_error(c->req, 400, "invalid_invite", "The invite is unknown, used or expired.");
    } else {
        const char *name = pg_get(res, 0, "name");
        json_t *roles = auth_roles(pg_get(res, 0, "roles"));
        log_emit(LOG_INFO, http_req_id(c->req), json_pack("{s:s}", "user", pg_get(res, 0, "id")),
                 "user registered");
        http_reply_json(c->req, 201,
                        json_pack("{s:s,s:s,s:o,s:{s:s,s:s},s:o,s:s}", "id", pg_get(res, 0, "id"),
                                  "email", c->email, "name", name ? json_string(name) : json_null(),
                                  "organization", "id", pg_get(res, 0, "org_id"), "name",
                                  pg_get(res, 0, "org_name"), "roles", roles, "created_at",
                                  pg_get(res, 0, "created_at")));
    }
    reg_free(c);
}

static void reg_on_hash(int result, const char *hash, void *ud)
{
    reg_ctx *c = ud;
    if (result != 0) {
        reply_hash_queue_full(c->req);
        reg_free(c);
        return;
    }
    /* the platform admin's address is taken by the configuration, whether or not its
     * account was bootstrapped yet (answered after the hash, like any taken address) */
    if (auth.admin_email[0] && strcmp(c->email, auth.admin_email) == 0) {
        http_reply_error(c->req, 409, "email_taken", "An account with this email already exists.");
        reg_free(c);
        return;
    }
    if (c->invite) {
        char code_hash[65];
        auth_sha256_hex(c->invite, strlen(c->invite), code_hash);
        const char *params[] = {code_hash, c->email, c->name, hash};
        auth_pg("WITH inv AS (UPDATE invites SET used_at = now() WHERE code_hash = $1"
                " AND used_at IS NULL AND expires_at > now() RETURNING id, org_id),"
                " u AS (INSERT INTO users (org_id, email, name, password_hash, roles)"
                " SELECT org_id, $2, $3, $4, '{user}' FROM inv RETURNING *)"
                " SELECT u.id, u.name, u.org_id, o.name AS org_name,"
                " array_to_json(u.roles)::text AS roles, " AUTH_TS(
                    "u.created_at") " AS created_at"
                                    " FROM u JOIN organizations o ON o.id = u.org_id",
                4, params, reg_on_insert, c);
        return;
    }
    const char *org = c->organization ? c->organization : c->name ? c->name : c->email;
    const char *params[] = {org, c->email, c->name, hash};
    auth_pg("WITH o AS (INSERT INTO organizations (name) VALUES ($1) RETURNING id, name),"
            " u AS (INSERT INTO users (org_id, email, name, password_hash, roles)"
            " SELECT id, $2, $3, $4, '{user,org_admin}' FROM o RETURNING *)"
            " SELECT u.id, u.name, u.org_id, o.name AS org_name,"
            " array_to_json(u.roles)::text AS roles, " AUTH_TS(
                "u.created_at") " AS created_at"
                                " FROM u JOIN o ON o.id = u.org_id",
            4, params, reg_on_insert, c);
}

static void register_handler(http_req *req)
{
    reg_ctx *c = xcalloc(1, sizeof(*c));
    const char *email = NULL;
    auth_field f[] = {{"email", 1, 254, &email},
                      {"password", 1, 0, &c->password},
                      {"name", 0, 200, &c->name},
                      {"organization", 0, 200, &c->organization},
                      {"invite", 0, 128, &c->invite}};
    c->req = req;
    c->body = auth_body_fields(req, f, 5, 0);
    if (!c->body) {
        free(c);
        return;
    }
    if (c->organization && c->invite) {
        http_reply_error(req, 400, "invalid_request",
                         "Give either organization or invite, not both.");
        reg_free(c);
        return;
    }
    if (c->organization && !*c->organization) {
        http_reply_error(req, 400, "invalid_request", "organization must not be empty.");
        reg_free(c);
        return;
    }
    if (!auth_email_valid(email)) {
        http_reply_error(req, 400, "invalid_email", "The email address is malformed.");
        reg_free(c);
        return;
    }
    lower_copy(c->email, sizeof(c->email), email);
    if (!password_len_ok(req, c->password)) {
        reg_free(c);
        return;
    }
    if (c->invite && !*c->invite) {
        http_reply_error(req, 400, "invalid_invite", "The invite is unknown, used or expired.");
        reg_free(c);
        return;
    }
    if (passwords_hash(c->password, strlen(c->password), reg_on_hash, c) != 0) {
        reply_hash_queue_full(req);
        reg_free(c);
    }
}

/* ---- GET/POST /auth/me ---- */
static void me_on_ident(http_req *req, auth_ident *id, void *ud)
{
    (void)ud;
    if (!id)
        return;
    json_t *o = json_pack("{s:b,s:s,s:s,s:s,s:O,s:s}", "active", 1, "sub", id->sub, "email",
                          id->email, "organization", id->org, "roles", id->roles, "auth",
                          id->kind == AUTH_KIND_TOKEN ? "token" : "api_key");
    if (id->kind == AUTH_KIND_TOKEN) {
        json_object_set_new(o, "sid", json_string(id->sid));
        json_object_set_new(o, "exp", json_integer(id->exp));
    } else {
        json_object_set_new(o, "key_id", json_string(id->key_id));
    }
    auth_ident_free(id);
    http_resp_header(req, "Cache-Control", "no-store");
    http_reply_json(req, 200, o);
}

static void me_handler(http_req *req)
{
    auth_authenticate(req, 1, 1, me_on_ident, NULL);
}

/* ---- POST /auth/password ---- */
typedef struct pw_ctx {
    http_req *req;
    json_t *body;
    const char *old_pw, *new_pw;
    char sub[64], sid[64];
} pw_ctx;

static void pw_free(void *ud)
{
    pw_ctx *c = ud;
    json_decref(c->body);
    free(c);
}

static void pw_on_update(pg_status st, PGresult *res, void *ud)
{
    pw_ctx *c = ud;
    if (st != PG_OK) {
        service_reply_pg_error(c->req, st, res);
    } else {
        for (int i = 0; i < PQntuples(res); i++)
            auth_session_revoked(pg_get(res, i, "id"));
        log_emit(LOG_INFO, http_req_id(c->req),
                 json_pack("{s:s,s:i}", "user", c->sub, "revoked_sessions", PQntuples(res)),
                 "password changed");
        http_reply(c->req, 204, NULL, NULL, 0);
    }
    pw_free(c);
}

static void pw_on_new_hash(int result, const char *hash, void *ud)
{
    pw_ctx *c = ud;
    if (result != 0) {
        reply_hash_queue_full(c->req);
        pw_free(c);
        return;
    }
    const char *params[] = {c->sub, hash, c->sid};
    auth_pg("WITH u AS (UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1"
            " RETURNING id)"
            " UPDATE sessions SET revoked_at = now() WHERE user_id IN (SELECT id FROM u)"
            " AND id <> $3 AND revoked_at IS NULL RETURNING id",
            3, params, pw_on_update, c);
}

static void pw_on_verify(int result, const char *hash, void *ud)
{
    pw_ctx *c = ud;
    (void)hash;
    if (result < 0) {
        reply_hash_queue_full(c->req);
    } else if (result != 0) {
        http_reply_error(c->req, 403, "invalid_credentials", "The current password is wrong.");
    } else if (passwords_hash(c->new_pw, strlen(c->new_pw), pw_on_new_hash, c) == 0) {
        return;
    } else {
        reply_hash_queue_full(c->req);
    }
    pw_free(c);
}

static void pw_on_user(pg_status st, PGresult *res, void *ud)
{
    pw_ctx *c = ud;
    if (auth_pg_failed(c->req, st, res, pw_free, c))
        return;
    const char *phc = PQntuples(res) == 1 ? pg_get(res, 0, "password_hash") : NULL;
    if (passwords_verify(phc, c->old_pw, strlen(c->old_pw), pw_on_verify, c) != 0) {
        reply_hash_queue_full(c->req);
        pw_free(c);
    }
}

static void password_handler(http_req *req, const auth_identity *id)
{
    pw_ctx *c = xcalloc(1, sizeof(*c));
    c->req = req;
    snprintf(c->sub, sizeof(c->sub), "%s", id->sub);
    snprintf(c->sid, sizeof(c->sid), "%s", id->sid);
    auth_field f[] = {{"old_password", 1, 1024, &c->old_pw}, {"new_password", 1, 0, &c->new_pw}};
    c->body = auth_body_fields(req, f, 2, 0);
    if (!c->body) {
        free(c);
        return;
    }
    if (!password_len_ok(req, c->new_pw)) {
        pw_free(c);
        return;
    }
    const char *params[] = {c->sub};
    auth_pg("SELECT password_hash FROM users WHERE id = $1", 1, params, pw_on_user, c);
}

void users_routes(router *r)
{
    router_add(r, "POST", "/auth/register", register_handler, 16384);
    router_add(r, "GET", "/auth/me", me_handler, 0);
    router_add(r, "POST", "/auth/me", me_handler, 16384);
    router_add_auth(r, "POST", "/auth/password", password_handler, 16384);
}
