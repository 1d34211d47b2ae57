/* caller: who is making a request to svc-payments, as svc-auth says through common/
 * auth_client (POST /auth/me, cached at most 1 s), and what they may see. */
#ifndef PAYMENTS_CALLER_H
#define PAYMENTS_CALLER_H

#include <uv.h>

#include "http_client.h"
#include "http_server.h"

typedef struct caller {
    char *user;      /* sub */
    char *org;       /* organization id */
    int is_admin;    /* role admin: sees and moves every payment */
    int is_org_admin;/* role org_admin: sees the organization's payments */
} caller;

/* Sets up the auth client for auth_url ("host:port[,host:port...]"). Returns 0 or -1. */
int caller_setup(uv_loop_t *loop, http_client *client, const char *auth_url);
void caller_teardown(void);

typedef void (*caller_fn)(http_req *req, caller *who);

/* Validates the request's Authorization; then calls next with a caller it owns (free with
 * caller_free), or answers 401 (missing or rejected credential) / 503 (auth unreachable). */
void caller_authenticate(http_req *req, caller_fn next);
void caller_free(caller *who);

/* The visibility scope: "all" (admin), "org" (org_admin) or "own", and the org or user id
 * it is about. */
const char *caller_scope(const caller *who);
const char *caller_scope_id(const caller *who);
int caller_is_admin(const caller *who);

#endif
