/* router: method + path patterns with parameters ("/payments/{reference}/status") in front of
 * the HTTP server. Unknown path -> 404 not_found, known path with another method -> 405
 * method_not_allowed with Allow. Patterns match whole segments; a parameter matches one
 * non-empty segment (percent-decoded to UTF-8, never containing '/'). */
#ifndef COMMON_ROUTER_H
#define COMMON_ROUTER_H

#include <stddef.h>
#include "auth_client.h"
#include "http_server.h"

typedef struct router router;

router *router_new(void);
void router_free(router *r);

/* fn runs once the whole body is read (max_body 0: the server's default; GET/HEAD/DELETE
 * with a body larger than max_body are refused the same way). */
void router_add(router *r, const char *method, const char *pattern, http_req_fn fn,
                size_t max_body);
/* fn runs when the headers are complete; it reads or streams the body itself. */
void router_add_stream(router *r, const char *method, const char *pattern, http_req_fn fn);

/* ---- routes that need a caller (lwan's HANDLER_MUST_AUTHORIZE) ----
 * The one way to authenticate a route: register it with router_add_auth. The router reads
 * the body, asks the router's authenticator who is calling, then runs fn with the caller;
 * `who` stays valid until the reply ends (the router frees it then: handlers neither copy nor
 * free it). A missing or bad credential never reaches fn: the authenticator has answered
 * (401 JSON with WWW-Authenticate, or 503). A router without an authenticator answers 503.
 *
 *     router_use_auth_client(r, ac);                 (once, at start-up)
 *     router_add_auth(r, "GET", "/files/{id}", files_get, 0);
 *     static void files_get(http_req *req, const auth_identity *who) { ... who->sub ... } */
typedef void (*router_caller_fn)(http_req *req, const auth_identity *who);
void router_add_auth(router *r, const char *method, const char *pattern, router_caller_fn fn,
                     size_t max_body);
/* Same, but fn runs once the caller is known, before the body is read: it streams it. */
void router_add_auth_stream(router *r, const char *method, const char *pattern,
                            router_caller_fn fn);

/* A route for other services only (/internal/...): the body is read, then the caller's
 * X-Service-Token is checked (common/auth_client: auth_client_check_service, this service's
 * name in aud); fn runs with who->kind == AUTH_ID_SERVICE, who->sub the calling service. A
 * user's credential or none: 401. Set the checker with router_use_service_auth (none: 503). */
void router_add_service(router *r, const char *method, const char *pattern, router_caller_fn fn,
                        size_t max_body);
void router_use_service_auth(router *r, auth_client *c);

/* An authenticator: learns the caller of req, then calls done(done_ud, who) once, with who
 * valid during that call, or, after it answered the request itself (401/503), with NULL. */
typedef void (*router_authed_fn)(void *done_ud, const auth_identity *who);
typedef void (*router_authn_fn)(void *ctx, http_req *req, router_authed_fn done, void *done_ud);
/* Sets the router's authenticator (NULL: none, auth routes answer 503). */
void router_set_authn(router *r, router_authn_fn fn, void *ctx);
/* The authenticator of every service but svc-auth itself: common/auth_client
 * (auth_client_check); accepts a user's access token or API key of an organization, and
 * answers auth_client_reply_error's 401/503 otherwise. c stays the caller's; c NULL: none. */
void router_use_auth_client(router *r, auth_client *c);

/* The http_server handler: http_server_opts.handler = router_dispatch, handler_ud = r. */
void router_dispatch(http_req *req, void *r);

/* The routing decision alone, without a request (tests, diagnostics). */
#define ROUTER_MAX_PARAMS 8
typedef struct router_match {
    int status;          /* 200 found, 404 no such path, 405 other methods only */
    const char *pattern; /* 200: the route's pattern (owned by the router) */
    int needs_caller;    /* 200: registered with router_add_auth(_stream) */
    size_t nparams;      /* 200: parameters, values percent-decoded */
    const char *names[ROUTER_MAX_PARAMS];
    char *values[ROUTER_MAX_PARAMS]; /* freed by router_match_free */
    char allow[160];                 /* 405: the Allow header value, e.g. "GET, HEAD, POST" */
} router_match;

/* Fills m for method + path (the path without its query). Returns m->status. */
int router_lookup(const router *r, const char *method, const char *path, router_match *m);
void router_match_free(router_match *m);

#endif
