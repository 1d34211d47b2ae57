/* caller: what svc-payments' callers, authenticated by svc-auth (service_use_auth, see
 * caller.h), may see. */
#include "caller.h"

#include <stdlib.h>
#include <string.h>

#include "auth_client.h"

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
