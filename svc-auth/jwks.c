/* jwks: GET /.well-known/jwks.json, the public keys (every configured key: during a rotation
 * the old and the new one) that verify access and service tokens. */
#include <stdlib.h>

#include "auth.h"

static void jwks_handler(http_req *req)
{
    http_resp_header(req, "Cache-Control", "public, max-age=300");
    http_reply_json(req, 200, jwt_keyset_jwks(auth.keys));
}

void jwks_routes(router *r)
{
    router_add(r, "GET", "/.well-known/jwks.json", jwks_handler, 0);
}
