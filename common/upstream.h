/* upstream: a named service given as "host:port[,host:port...]". Each host name is re-resolved
 * with uv_getaddrinfo every resolve_every_ms; every address it returns is one instance (docker
 * compose and Swarm return one address per container), so scaling needs no config change.
 * Picks instances round-robin over the healthy ones. Passive health as nginx (max_fails within
 * fail_timeout marks an instance down for fail_timeout); optional active checks as HAProxy
 * (GET health_path every interval; rise successes to come back, fall failures to go down). */
#ifndef COMMON_UPSTREAM_H
#define COMMON_UPSTREAM_H

#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>
#include "http_client.h"

typedef struct upstream upstream;
typedef struct upstream_peer upstream_peer;

typedef struct upstream_opts {
    unsigned resolve_every_ms;   /* 5000 */
    unsigned max_fails;          /* 1 (nginx) */
    unsigned fail_timeout_ms;    /* 10000 (nginx) */
    const char *health_path;     /* NULL: no active checks; else e.g. "/health" */
    unsigned health_interval_ms; /* 2000 */
    unsigned health_timeout_ms;  /* 1000 */
    unsigned rise;               /* 2 */
    unsigned fall;               /* 3 */
} upstream_opts;

void upstream_opts_default(upstream_opts *o);

/* servers: "svc-auth:3000" or "127.0.0.1:3001,127.0.0.1:3002". Returns NULL when it does not
 * parse. Resolution starts at once; client is used for active health checks. */
upstream *upstream_new(uv_loop_t *loop, http_client *client, const char *name, const char *servers,
                       const upstream_opts *opts);
void upstream_free(upstream *u);
const char *upstream_name(const upstream *u);

/* The next healthy instance round-robin, skipping `avoid` when another is healthy (retries).
 * NULL when none is healthy. The peer stays valid until upstream_peer_release. */
upstream_peer *upstream_pick(upstream *u, const upstream_peer *avoid);
void upstream_peer_release(upstream_peer *p);
const struct sockaddr *upstream_peer_addr(const upstream_peer *p);
const char *upstream_peer_text(const upstream_peer *p); /* "127.0.0.1:3001" */
/* Passive health: report the outcome of a request to this peer. */
void upstream_peer_failed(upstream *u, upstream_peer *p);
void upstream_peer_succeeded(upstream *u, upstream_peer *p);

/* A second opinion on health kept outside this upstream (the gateway's workers: what the
 * master's active checks published): upstream_pick skips a peer for which skip returns 1. */
typedef int (*upstream_skip_fn)(const upstream_peer *p, void *ud);
void upstream_set_skip(upstream *u, upstream_skip_fn skip, void *ud);

/* The one retry policy of every request to a service (upstream_exchange_start and
 * upstream_fetch): at most UPSTREAM_MAX_TRIES tries, each on another peer. A try is retried
 * when the peer failed before it answered (refused, timed out, reset; a malformed answer,
 * HC_EPROTO, counts against the peer but is not retried) and the request can be sent again:
 * nothing reached the peer, or the connection never opened, or the method is idempotent
 * (RFC 9110 §9.2.2: GET HEAD OPTIONS TRACE PUT DELETE) and its body is still whole. */
#define UPSTREAM_MAX_TRIES 2

typedef struct upstream_try {
    const char *method;
    unsigned tries;      /* tries made, this one included */
    int sent;            /* some of the request may have reached the peer */
    int body_replayable; /* the body (if any) can be sent again */
    int final;           /* the caller cannot try again (its answer already started) */
} upstream_try;

/* 1 for the idempotent methods of RFC 9110 §9.2.2. */
int upstream_method_idempotent(const char *method);

void upstream_counts(const upstream *u, unsigned *healthy, unsigned *total);
/* Calls fn for each instance (for /health and shared state publishing). */
void upstream_each(const upstream *u, void (*fn)(const upstream_peer *p, int healthy, void *ud),
                   void *ud);

/* A streamed request to the service, the one seam of the gateway (and of any caller that
 * streams), as h2o's connect-with-pool: picks a healthy peer, starts the exchange on the
 * client's pool, reports each try's outcome to passive health and retries on another peer as
 * the policy above says. A body (body_len as for http_exchange_start) is never replayed: once
 * it was sent a try is final. */
typedef struct upstream_exchange_cbs {
    /* A try starts on p with exchange x: write the body to x, pause, resume or abort it. Called
     * again, with another x, for each retry (inside the on_done of the failed try). */
    void (*on_try)(http_exchange *x, const upstream_peer *p, void *ud);
    /* 1 once the caller cannot send the request again (its answer or its body started). */
    int (*no_retry)(void *ud);
    /* As http_exchange_cbs; on_done only once, at the end of the last try (x NULL and
     * HC_ECANCELED when the client was being freed before a retry could start). */
    http_exchange_cbs x;
} upstream_exchange_cbs;

enum { UPSTREAM_ENOPEER = -1, UPSTREAM_ECLOSING = -2 };

/* 0 when the first try started (on_try has run); UPSTREAM_ENOPEER when no peer is healthy,
 * UPSTREAM_ECLOSING when the client is being freed: then nothing started and no callback
 * follows. method, target and headers (names and values) are borrowed: they must stay valid
 * until on_done, as a retry sends them again. */
int upstream_exchange_start(upstream *u, const char *method, const char *target,
                            const http_header *headers, size_t nheaders, int64_t body_len,
                            const upstream_exchange_cbs *cbs, void *ud);

/* A buffered request to the service: picks a peer and retries as upstream_try_done says. When no peer is healthy: cb gets
 * HC_ECONNECT without trying. */
void upstream_fetch(upstream *u, const char *method, const char *target, const http_header *headers,
                    size_t nheaders, const void *body, size_t body_len, unsigned timeout_ms,
                    http_fetch_fn cb, void *ud);

#endif
