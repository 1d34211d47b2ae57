/* caller: authentication of svc-payments' callers through common/auth_client (see caller.h).
 * The auth client and its upstream live for the process; main frees them from the
 * service's on_stop hook, once the service has drained. */
#include "caller.h"

#include <stdlib.h>
#include <string.h>

#include "auth_client.h"
#include "log.h"
#include "payments.h"
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
    service_add_check(&payments.svc, "auth", caller_auth_up, NULL);
    return 0;
}

void caller_teardown(void)
{
    if (caller_auth) {
        auth_client_free(caller_auth);
        caller_auth = NULL;
    }
    if (caller_upstream) {
        upstream_free(caller_upstream);
        caller_upstream = NULL;
    }
}

typedef struct caller_call {
    http_req *req;
    caller_fn next;
} caller_call;

static void caller_checked(int status, const auth_identity *id, void *ud)
{
    caller_call *call = ud;
    http_req *req = call->req;
    caller_fn next = call->next;
    free(call);
    if (status != 200 || id->kind == AUTH_ID_SERVICE || id->sub[0] == '\0' ||
        id->org[0] == '\0') {
        auth_client_reply_error(req, status == 200 ? 401 : status);
        return;
    }
    caller *who = calloc(1, sizeof *who);
    who->user = strdup(id->sub);
    who->org = strdup(id->org);
    who->is_admin = auth_identity_has_role(id, AUTH_ROLE_ADMIN);
    who->is_org_admin = auth_identity_has_role(id, AUTH_ROLE_ORG_ADMIN);
    next(req, who);
}

void caller_authenticate(http_req *req, caller_fn next)
{
    if (!caller_auth) { /* shutting down */
        auth_client_reply_error(req, 503);
        return;
    }
    caller_call *call = malloc(sizeof *call);
    call->req = req;
    call->next = next;
    auth_client_check(caller_auth, req, caller_checked, call);
}

void caller_free(caller *who)
{
    if (!who)
        return;
    free(who->user);
    free(who->org);
    free(who);
}

const char *caller_scope(const caller *who)
{
    return who->is_admin ? "all" : who->is_org_admin ? "org" : "own";
}

const char *caller_scope_id(const caller *who)
{
    return who->is_admin ? "" : who->is_org_admin ? who->org : who->user;
}

int caller_is_admin(const caller *who)
{
    return who->is_admin;
}
