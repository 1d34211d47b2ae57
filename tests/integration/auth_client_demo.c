/* auth_client_demo: a minimal service on common/auth_client for test_auth.py. GET /whoami
 * is a route that needs a caller (router_add_auth): the router checks the caller's
 * Authorization through auth (POST /auth/me) before it runs; GET /internal/whoami checks
 * X-Service-Token against auth's JWKS. Environment: PORT, AUTH_UPSTREAM ("host:port,..."),
 * SERVICE_NAME (the audience of service tokens), AUTH_ISSUER, DEMO_JWKS_REFRESH (ms). */
#include <stdlib.h>

#include "auth_client.h"
#include "config.h"
#include "service.h"

static service demo;
static upstream *demo_auth;
static auth_client *demo_client;

static void demo_whoami(http_req *req, const auth_identity *id)
{
    static const char *kinds[] = {"", "token", "api_key", "service"};
    json_t *roles = json_array();
    if (auth_identity_has_role(id, AUTH_ROLE_USER))
        json_array_append_new(roles, json_string("user"));
    if (auth_identity_has_role(id, AUTH_ROLE_ORG_ADMIN))
        json_array_append_new(roles, json_string("org_admin"));
    if (auth_identity_has_role(id, AUTH_ROLE_ADMIN))
        json_array_append_new(roles, json_string("admin"));
    http_reply_json(req, 200,
                    json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:I}", "kind", kinds[id->kind], "sub",
                              id->sub, "email", id->email, "org", id->org, "sid", id->sid, "roles",
                              roles, "exp", (json_int_t)id->exp));
}

static void demo_answer(int status, const auth_identity *id, void *ud)
{
    http_req *req = ud;
    if (status != 200) {
        auth_client_reply_error(req, status);
        return;
    }
    demo_whoami(req, id);
}

static void demo_internal(http_req *req)
{
    auth_client_check_service(demo_client, req, demo_answer, req);
}

int main(void)
{
    if (service_init(&demo, "auth_client_demo") != 0)
        return 1;
    upstream_opts uo;
    upstream_opts_default(&uo);
    demo_auth = upstream_new(demo.loop, demo.client, "auth",
                             config_str("AUTH_UPSTREAM", "127.0.0.1:3000"), &uo);
    if (!demo_auth)
        return 2;
    auth_client_opts o;
    auth_client_opts_default(&o);
    o.service = config_str("SERVICE_NAME", "storage");
    o.jwks_refresh_min_ms = (unsigned)config_ms("DEMO_JWKS_REFRESH", 5000);
    demo_client = auth_client_new(demo.loop, demo_auth, &o);
    router_use_auth_client(demo.router, demo_client);
    router_add_auth(demo.router, "GET", "/whoami", demo_whoami, 0);
    router_add(demo.router, "GET", "/internal/whoami", demo_internal, 0);
    int rc = service_run(&demo);
    auth_client_free(demo_client);
    upstream_free(demo_auth);
    return rc;
}
