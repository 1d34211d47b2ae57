/* caller: who is making a request to svc-payments, as svc-auth says through common/
 * auth_client (POST /auth/me, cached at most 1 s; main sets it up with service_use_auth) in
 * the router (router_add_auth), and what they may see. */
#ifndef PAYMENTS_CALLER_H
#define PAYMENTS_CALLER_H

#include <uv.h>

#include "auth_client.h"
#include "http_client.h"
#include "http_server.h"

/* The visibility scope: "all" (role admin: sees and moves every payment), "org" (org_admin:
 * the organization's payments) or "own", and the org or user id it is about. */
const char *caller_scope(const auth_identity *who);
const char *caller_scope_id(const auth_identity *who);
int caller_is_admin(const auth_identity *who);

#endif
