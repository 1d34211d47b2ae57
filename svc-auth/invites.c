/* invites: POST /auth/organizations/invites (org_admin): a one-use code valid 7 days, stored
 * only as its SHA-256; POST /auth/register {"invite"} spends it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "crypto.h"
#include "xalloc.h"

#define INVITE_BYTES 24
#define INVITE_TTL_S (7 * 24 * 3600)

typedef struct invite_ctx {
    http_req *req;
    char code[48];
} invite_ctx;

static void invite_on_insert(pg_status st, PGresult *res, void *ud)
{
    invite_ctx *c = ud;
    if (st != PG_OK || PQntuples(res) != 1) {
        service_reply_pg_error(c->req, st, res);
    } else {
        http_resp_header(c->req, "Cache-Control", "no-store");
        http_reply_json(
            c->req, 201,
            json_pack("{s:s,s:s}", "code", c->code, "expires_at", pg_get(res, 0, "expires_at")));
    }
    free(c);
}

static void invite_handler(http_req *req, const auth_identity *id)
{
    json_t *body = auth_body_fields(req, NULL, 0, 1); /* {} or nothing */
    if (!body)
        return;
    json_decref(body);
    if (!auth_identity_has_role(id, AUTH_ROLE_ORG_ADMIN)) {
        http_reply_error(req, 403, "forbidden", "Only an org_admin may invite.");
        return;
    }
    invite_ctx *c = xcalloc(1, sizeof(*c));
    c->req = req;
    crypto_random_token(c->code, INVITE_BYTES);
    char hash[65], ttl[24];
    auth_sha256_hex(c->code, strlen(c->code), hash);
    snprintf(ttl, sizeof(ttl), "%d", INVITE_TTL_S);
    const char *params[] = {hash, id->org, id->sub, ttl};
    auth_pg("INSERT INTO invites (code_hash, org_id, created_by, expires_at)"
            " VALUES ($1, $2, $3, now() + $4::int * interval '1 second')"
            " RETURNING " AUTH_TS("expires_at") " AS expires_at",
            4, params, invite_on_insert, c);
}

void invites_routes(router *r)
{
    router_add_auth(r, "POST", "/auth/organizations/invites", invite_handler, 16384);
}
