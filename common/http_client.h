/* http_client: HTTP/1.1 client on libuv + llhttp with a keep-alive pool per peer address.
 *
 * Two levels:
 *   - http_client_fetch(): a whole request and a buffered response (service to service calls);
 *   - http_exchange_*: streaming both ways with backpressure (the gateway's proxying).
 * Idle pooled connections are closed after idle_timeout_ms, kept shorter than the servers'
 * keep-alive timeout; a pooled connection that turns out closed by the peer before any
 * response byte is retried once on a fresh connection (the request had not been seen).
 * No TLS: services talk plain HTTP on the internal network. */
#ifndef COMMON_HTTP_CLIENT_H
#define COMMON_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct http_client http_client;
typedef struct http_exchange http_exchange;

typedef struct http_header {
    const char *name;
    const char *value;
} http_header;

typedef enum {
    HC_OK = 0,
    HC_ECONNECT,  /* could not connect: nothing was sent, always safe to retry */
    HC_ETIMEOUT,  /* connect, send or response timeout */
    HC_ERESET,    /* connection broke after the request (partly) went out */
    HC_EPROTO,    /* unparsable response */
    HC_ETOOBIG,   /* buffered response over max_response */
    HC_ECANCELED, /* http_exchange_abort */
} hc_err;

const char *hc_strerror(hc_err err);

typedef struct http_client_opts {
    unsigned connect_timeout_ms; /* 2000 */
    unsigned read_timeout_ms;    /* 30000: between two reads while awaiting the response */
    unsigned idle_timeout_ms;    /* 30000: pooled idle connections are closed after */
    unsigned max_idle_per_peer;  /* 32 */
    size_t max_response;         /* fetch(): 8 MiB */
} http_client_opts;

void http_client_opts_default(http_client_opts *o);
http_client *http_client_new(uv_loop_t *loop, const http_client_opts *opts);
void http_client_free(http_client *c); /* closes pooled connections; in-flight: ECANCELED */
/* Whether any connection (idle or in use) goes to addr. */
int http_client_has_peer(const http_client *c, const struct sockaddr *addr);
/* For a peer known to be gone: closes its idle connections and ends each exchange on it, from
 * here, with HC_ECONNECT (still connecting) or HC_ERESET. Returns how many exchanges ended. */
unsigned http_client_drop_peer(http_client *c, const struct sockaddr *addr);

/* ---- buffered ---- */
typedef struct http_response {
    int status;
    size_t nheaders;
    http_header *headers; /* names as received */
    char *body;           /* NUL-terminated */
    size_t body_len;
} http_response;

const char *http_response_header(const http_response *r, const char *name);
/* resp is valid only during the callback; NULL when err != HC_OK. */
typedef void (*http_fetch_fn)(hc_err err, const http_response *resp, void *ud);

/* Sends method target to addr with headers (Host and Content-Length are added), body.
 * timeout_ms bounds the whole exchange (0: the client's read timeout). */
void http_client_fetch(http_client *c, const struct sockaddr *addr, const char *method,
                       const char *target, const http_header *headers, size_t nheaders,
                       const void *body, size_t body_len, unsigned timeout_ms, http_fetch_fn cb,
                       void *ud);

/* ---- streaming ---- */
typedef struct http_exchange_cbs {
    /* The request head has been written to a connection (a fresh or pooled one). */
    void (*on_sent_head)(http_exchange *x, void *ud);
    /* Response status and headers; return 0 to go on, -1 to abort. */
    int (*on_response)(http_exchange *x, int status, const http_header *h, size_t n, void *ud);
    void (*on_data)(http_exchange *x, const char *data, size_t len, void *ud);
    /* The end, exactly once: HC_OK after the whole response, else the error. x is freed after. */
    void (*on_done)(http_exchange *x, hc_err err, void *ud);
} http_exchange_cbs;

/* body_len: 0 none, > 0 Content-Length, -1 chunked. The caller writes the body with
 * http_exchange_write and ends it with http_exchange_end_body. headers are copied. */
http_exchange *http_exchange_start(http_client *c, const struct sockaddr *addr, const char *method,
                                   const char *target, const http_header *headers, size_t nheaders,
                                   int64_t body_len, const http_exchange_cbs *cbs, void *ud);
/* cb fires when the data has been handed to the socket (backpressure). */
int http_exchange_write(http_exchange *x, const void *data, size_t len,
                        void (*cb)(http_exchange *x, int status, void *ud), void *ud);
void http_exchange_end_body(http_exchange *x);
void http_exchange_pause(http_exchange *x); /* stop reading the response */
void http_exchange_resume(http_exchange *x);
void http_exchange_abort(http_exchange *x); /* on_done(HC_ECANCELED) follows */
/* 1 once any byte of the request went out (then a non-idempotent request must not retry). */
int http_exchange_sent_any(const http_exchange *x);

#endif
