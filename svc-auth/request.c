/* request: svc-auth's request helpers: strict JSON bodies of string fields, the client's
 * address, cookies, ids, roles, hashes and the 401 answers. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth.h"
#include "crypto.h"
#include "xalloc.h"

int64_t auth_now_s(void)
{
    return (int64_t)time(NULL);
}

void auth_pg(const char *sql, int nparams, const char *const *params, pg_query_fn cb, void *ud)
{
    if (!auth.svc.pg) {
        cb(PG_DOWN, NULL, ud);
        return;
    }
    pg_query(auth.svc.pg, sql, nparams, params, cb, ud);
}

typedef struct own_row {
    http_req *req;
    const char *missing;
    void (*done)(const PGresult *res);
} own_row;

static void own_row_on_update(pg_status st, PGresult *res, void *ud)
{
    own_row *o = ud;
    if (st != PG_OK) {
        service_reply_pg_error(o->req, st, res);
    } else if (PQntuples(res) == 0) {
        http_reply_error(o->req, 404, "not_found", o->missing);
    } else {
        o->done(res);
        http_reply(o->req, 204, NULL, NULL, 0);
    }
    free(o);
}

int auth_pg_failed(http_req *req, pg_status st, const PGresult *res, void (*ctx_free)(void *),
                   void *ctx)
{
    if (st == PG_OK)
        return 0;
    service_reply_pg_error(req, st, res);
    ctx_free(ctx);
    return 1;
}

void auth_pg_own_row(http_req *req, const auth_identity *id, const char *param, const char *missing,
                     const char *sql, void (*done)(const PGresult *res))
{
    const char *uuid = http_req_param(req, param);
    if (!uuid || !auth_is_uuid(uuid)) {
        http_reply_error(req, 404, "not_found", missing);
        return;
    }
    own_row *o = xmalloc(sizeof *o);
    *o = (own_row){req, missing, done};
    const char *params[] = {uuid, id->sub};
    auth_pg(sql, 2, params, own_row_on_update, o);
}

size_t auth_utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

json_t *auth_body_fields(http_req *req, auth_field *fields, size_t n, int allow_empty)
{
    size_t len = 0;
    const char *body = http_req_body(req, &len);
    json_t *obj;
    if (allow_empty && (!body || len == 0)) {
        obj = json_object();
    } else {
        obj = http_req_json(req); /* replies 400 / 415 itself */
        if (!obj)
            return NULL;
    }
    for (size_t i = 0; i < n; i++)
        *fields[i].out = NULL;
    const char *key;
    json_t *v;
    char msg[160];
    json_object_foreach(obj, key, v)
    {
        size_t i;
        for (i = 0; i < n && strcmp(fields[i].name, key) != 0; i++)
            ;
        if (i == n) {
            snprintf(msg, sizeof(msg), "Unknown field \"%.60s\".", key);
            goto bad;
        }
        if (!json_is_string(v)) {
            snprintf(msg, sizeof(msg), "Field \"%s\" must be a string.", key);
            goto bad;
        }
        if (strlen(json_string_value(v)) != json_string_length(v)) {
            snprintf(msg, sizeof(msg), "Field \"%s\" must not contain NUL characters.", key);
            goto bad;
        }
        if (fields[i].max_chars && auth_utf8_chars(json_string_value(v)) > fields[i].max_chars) {
            snprintf(msg, sizeof(msg), "Field \"%s\" is longer than %zu characters.", key,
                     fields[i].max_chars);
            goto bad;
        }
        *fields[i].out = json_string_value(v);
    }
    for (size_t i = 0; i < n; i++) {
        if (fields[i].required && !*fields[i].out) {
            snprintf(msg, sizeof(msg), "Field \"%s\" is required.", fields[i].name);
            goto bad;
        }
    }
    return obj;
bad:
    json_decref(obj);
    http_reply_error(req, 400, "invalid_request", msg);
    return NULL;
}

const char *auth_client_ip(http_req *req)
{
    const char *peer = http_req_peer_ip(req);
    if (!cidr_list_match(auth.trusted_proxies, peer))
        return peer; /* anyone else could write any X-Real-IP: the peer is the client */
    uint8_t addr[16];
    const char *ip = http_req_header(req, "X-Real-IP");
    if (ip && cidr_parse_addr(ip, addr) == 0)
        return ip;
    return peer;
}

int auth_is_uuid(const char *s)
{
    if (strlen(s) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!isxdigit((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

void auth_sha256_hex(const char *s, size_t len, char out[65])
{
    uint8_t d[32];
    crypto_sha256(s, len, d);
    crypto_hex(d, 32, out);
}

void auth_reply_unauthorized(http_req *req, const char *code, const char *message, int me)
{
    http_resp_header(req, "WWW-Authenticate", "Bearer realm=\"suite\"");
    if (me) {
        http_reply_json(
            req, 401,
            json_pack("{s:b,s:{s:s,s:s}}", "active", 0, "error", "code", code, "message", message));
        return;
    }
    http_reply_error(req, 401, code, message);
}

void auth_reply_es256_full(http_req *req)
{
    http_resp_header(req, "Retry-After", "1");
    http_reply_error(req, 503, "overloaded",
                     "Too many token operations in progress; retry shortly.");
}

json_t *auth_roles(const char *stored_json)
{
    json_error_t jerr;
    json_t *roles = stored_json ? json_loads(stored_json, 0, &jerr) : NULL;
    if (!json_is_array(roles)) {
        json_decref(roles);
        roles = json_pack("[s]", "user");
    }
    return roles;
}

int auth_roles_has(json_t *roles, const char *role)
{
    size_t i;
    json_t *v;
    json_array_foreach(roles, i, v) if (json_is_string(v) &&
                                        strcmp(json_string_value(v), role) == 0) return 1;
    return 0;
}

void auth_clear_cookies(http_req *req)
{
    http_resp_header(req, "Set-Cookie",
                     "access_token=; Max-Age=0; Path=/; HttpOnly; Secure; SameSite=Strict");
    http_resp_header(req, "Set-Cookie",
                     "refresh_token=; Max-Age=0; Path=/auth; HttpOnly; Secure; SameSite=Strict");
}
