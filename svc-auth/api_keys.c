/* api_keys: POST /auth/api-keys (the key is shown once and stored only as its SHA-256, looked
 * up by that hash, never argon2) and DELETE /auth/api-keys/{id}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "crypto.h"
#include "xalloc.h"

#define API_KEY_PREFIX "ak_"
#define API_KEY_BYTES  32

typedef struct key_ctx {
    http_req *req;
    json_t *body;
    char key[64];
} key_ctx;

static void key_on_insert(pg_status st, PGresult *res, void *ud)
{
    key_ctx *c = ud;
    if (st != PG_OK || PQntuples(res) != 1) {
        service_reply_pg_error(c->req, st, res);
    } else {
        http_resp_header(c->req, "Cache-Control", "no-store");
        http_reply_json(c->req, 201,
                        json_pack("{s:s,s:s,s:s,s:s}", "id", pg_get(res, 0, "id"), "name",
                                  pg_get(res, 0, "name"), "key", c->key, "created_at",
                                  pg_get(res, 0, "created_at")));
    }
    explicit_bzero(c->key, sizeof(c->key));
    json_decref(c->body);
    free(c);
}

static void create_handler(http_req *req, const auth_identity *id)
{
    key_ctx *c = xcalloc(1, sizeof(*c));
    c->req = req;
    const char *name = NULL;
    auth_field f[] = {{"name", 1, 100, &name}};
    c->body = auth_body_fields(req, f, 1, 0);
    if (!c->body) {
        free(c);
        return;
    }
    if (!*name) {
        json_decref(c->body);
        free(c);
        http_reply_error(req, 400, "invalid_request", "name must not be empty.");
        return;
    }
    memcpy(c->key, API_KEY_PREFIX, strlen(API_KEY_PREFIX));
    crypto_random_token(c->key + strlen(API_KEY_PREFIX), API_KEY_BYTES);
    char hash[65];
    auth_sha256_hex(c->key, strlen(c->key), hash);
    const char *params[] = {id->sub, name, hash};
    auth_pg("INSERT INTO api_keys (user_id, name, key_hash) VALUES ($1, $2, $3)"
            " RETURNING id, name, " AUTH_TS("created_at") " AS created_at",
            3, params, key_on_insert, c);
}

/* Forgets it here at once; other instances trust their cache < 1 s. */
static void key_on_revoke(const PGresult *res)
{
    uint8_t h[32];
    const char *hex = pg_get(res, 0, "key_hash");
    if (hex && crypto_unhex(hex, strlen(hex), h, 32) == 0)
        ttl_cache_remove(auth.apikey_cache, h);
}

static void revoke_handler(http_req *req, const auth_identity *id)
{
    auth_pg_own_row(req, id, "id", "No such API key.",
                    "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND user_id = $2"
                    " AND revoked_at IS NULL RETURNING key_hash",
                    key_on_revoke);
}

void api_keys_routes(router *r)
{
    router_add_auth(r, "POST", "/auth/api-keys", create_handler, 16384);
    router_add_auth(r, "DELETE", "/auth/api-keys/{id}", revoke_handler, 0);
}
