/* builtin: the answers the gateway writes itself (health, docs, ACME challenges, the redirect
 * to https, never-routed paths, and the router's and proxy's own errors), all through one reply
 * helper that adds the security headers (https) and writes the access line. */
#ifndef GW_BUILTIN_H
#define GW_BUILTIN_H

#include <stdint.h>

#include "gateway.h"

/* One request as the gateway answers it. */
typedef struct gw_answer {
    gw_worker *w;
    http_req *req;
    const char *path;   /* normalized ("-" when it is not a path) */
    const char *client; /* the client's address (gw_headers_client_ip) */
    const char *route;  /* the access line's route: a prefix, "health", ... or NULL */
    const char *csp;    /* Content-Security-Policy of the answer */
    uint64_t t0;        /* uv_hrtime() when the request came */
} gw_answer;

/* Writes the answer: returns its status, or 0 when it writes the access line itself later. */
typedef int (*gw_answer_fn)(const gw_answer *a, void *ud);

/* The one exit of the gateway's own answers: security headers, fn, the access line. */
void gw_answer_with(const gw_answer *a, gw_answer_fn fn, void *ud);
/* A JSON error ({"error":{"code","message"}}) through gw_answer_with. */
void gw_answer_error(const gw_answer *a, int status, const char *code, const char *msg);

/* Answers a built-in endpoint (ACME, the redirect, never-routed paths, /health, /docs); returns
 * 1 when it answered, 0 when the request is for a route. a->route and a->csp are set here. */
int gw_builtin_handle(gw_answer *a);

/* 1 for the paths never routed: /internal/, /livez, /metrics. */
int gw_path_blocked(const char *path);

/* Milliseconds since t0 (uv_hrtime). */
int64_t gw_us_since(uint64_t t0);

#endif
