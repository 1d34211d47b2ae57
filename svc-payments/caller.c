/* caller: authentication of svc-payments' callers through common/auth_client, set as the
 * router's authenticator (see caller.h).
 * The auth client and its upstream live for the process; main frees them from the
 * service's on_stop hook, once the service has drained. */
#include "caller.h"

#include <stdlib.h>
#include <string.h>

#include "auth_client.h"
#include "log.h"
#include "payments.h"
#include "router.h"
#include "upstream.h"

static upstream *caller_upstream;
static auth_client *caller_auth;

static int caller_auth_up(void *ud)
{
    unsigned healthy, total;
    (void)ud;
    upstream_counts(caller_upstream, &healthy, &total);
    return healthy > 0;
}

int caller_setup(uv_loop_t *loop, http_client *client, const char *auth_url)
{
    upstream_opts uo;
    upstream_opts_default(&uo);
    caller_upstream = upstream_new(loop, client, "auth", auth_url, &uo);
    if (!caller_upstream)
        return -1;
    auth_client_opts ao;
    auth_client_opts_default(&ao);
    ao.service = "payments";
    caller_auth = auth_client_new(loop, caller_upstream, &ao);
    if (!caller_auth) {
        upstream_free(caller_upstream);
        caller_upstream = NULL;
        return -1;
    }
    router_use_auth_client(payments.svc.router, caller_auth);
    service_add_check(&payments.svc, "auth", caller_auth_up, NULL);
    return 0;
}

void caller_teardown(void)
{
    if (caller_auth) {
        router_use_auth_client(payments.svc.router, NULL); /* now answered 503 */
        auth_client_free(caller_auth);
        caller_auth = NULL;
    }
    if (caller_upstream) {
        upstream_free(caller_upstream);
        caller_upstream = NULL;
    }
}

const char *caller_scope(const auth_identity *who)
{
    return caller_is_admin(who)                               ? "all"
           : auth_identity_has_role(who, AUTH_ROLE_ORG_ADMIN) ? "org"
                                                              : "own";
}

const char *caller_scope_id(const auth_identity *who)
{
    return caller_is_admin(who)                               ? ""
           : auth_identity_has_role(who, AUTH_ROLE_ORG_ADMIN) ? who->org
                                                              : who->sub;
}

int caller_is_admin(const auth_identity *who)
{
    return auth_identity_has_role(who, AUTH_ROLE_ADMIN);
}
