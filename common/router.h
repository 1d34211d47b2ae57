/* router: method + path patterns with parameters ("/payments/{reference}/status") in front of
 * the HTTP server. Unknown path -> 404 not_found, known path with another method -> 405
 * method_not_allowed with Allow. Patterns match whole segments; a parameter matches one
 * non-empty segment (percent-decoded to UTF-8, never containing '/'). */
#ifndef COMMON_ROUTER_H
#define COMMON_ROUTER_H

#include <stddef.h>
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

/* The http_server handler: http_server_opts.handler = router_dispatch, handler_ud = r. */
void router_dispatch(http_req *req, void *r);

/* The routing decision alone, without a request (tests, diagnostics). */
#define ROUTER_MAX_PARAMS 8
typedef struct router_match {
    int status;                      /* 200 found, 404 no such path, 405 other methods only */
    const char *pattern;             /* 200: the route's pattern (owned by the router) */
    size_t nparams;                  /* 200: parameters, values percent-decoded */
    const char *names[ROUTER_MAX_PARAMS];
    char *values[ROUTER_MAX_PARAMS]; /* freed by router_match_free */
    char allow[160];                 /* 405: the Allow header value, e.g. "GET, HEAD, POST" */
} router_match;

/* Fills m for method + path (the path without its query). Returns m->status. */
int router_lookup(const router *r, const char *method, const char *path, router_match *m);
void router_match_free(router_match *m);

#endif
