/* http_server: HTTP/1.1 server on libuv + llhttp.
 *
 * One handler is called per request when its headers are complete. The handler then either
 *   - replies at once (http_reply*, the body, if any, is discarded or the connection closed),
 *   - asks for the whole body: http_req_read_body() buffers it (up to a limit, else 413) and
 *     calls back when complete, or
 *   - streams it: http_req_stream_body() calls on_data for each piece; http_req_pause() stops
 *     reading from the socket until http_req_resume() (backpressure).
 * "100 Continue" is sent when the handler first asks for the body of an Expect: 100-continue
 * request, so a request refused before that never uploads its body.
 *
 * Every request gets exactly one reply: http_reply() (whole) or http_resp_start() ... 
 * http_resp_end() (streamed). The request object stays valid until the reply ends, even if the
 * client has gone away (then what is written is dropped; http_req_on_close tells you early).
 * The call that ends the reply (http_reply*, http_resp_end/abort) may free the request: it
 * must not be used after it. A handler whose http_req_read_body() is refused (413) or whose
 * client left before the body arrived is never called back and must not use the request
 * after that call either.
 *
 * Pipelining: requests are parsed ahead (up to limits.max_pipeline) and dispatched at once;
 * responses go out in request order, a later response being held until the earlier ones end.
 *
 * Strict framing: no lenient llhttp flag; the server also rejects what llhttp 8.1 lets
 * through: obs-fold, Transfer-Encoding on HTTP/1.0, a duplicate Host (or a missing one on
 * HTTP/1.1), whitespace before a header's colon, chunk data not followed by CRLF, and both
 * Content-Length and Transfer-Encoding. A framing error answers 400 and closes.
 */
#ifndef COMMON_HTTP_SERVER_H
#define COMMON_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <jansson.h>

typedef struct http_server http_server;
typedef struct http_req http_req;

typedef void (*http_handler_fn)(http_req *req, void *ud);
typedef void (*http_req_fn)(http_req *req);
typedef void (*http_data_fn)(http_req *req, const char *data, size_t len);
/* Called when written data has left for the socket (or was dropped: status < 0). */
typedef void (*http_write_fn)(http_req *req, int status, void *ud);

typedef struct http_limits {
    size_t max_request_line;    /* 8 KiB: longer URL -> 414 */
    size_t max_header_line;     /* 8 KiB: a longer header line -> 431 */
    size_t max_headers_size;    /* 32 KiB in all (nginx: 4 x 8k) -> 431 */
    size_t max_headers;         /* 100 header lines -> 431 */
    size_t max_body;            /* default for http_req_read_body(req, 0, ..): 1 MiB -> 413 */
    unsigned header_timeout_ms; /* whole request head must arrive within: 60 s -> 408, close */
    unsigned body_timeout_ms;   /* gap between two body reads: 60 s -> 408, close */
    unsigned idle_timeout_ms;   /* keep-alive idle: 75 s -> close silently */
    unsigned send_timeout_ms;   /* client not reading our response: 60 s -> close */
    unsigned max_pipeline;      /* parsed-ahead requests per connection: 16 */
    unsigned max_connections;   /* per server (per process): 10000; over -> accept and close */
} http_limits;

/* Fills nginx-like defaults. */
void http_limits_default(http_limits *l);

/* Header lines a proxy in front of a service (the gateway) may add to a request it accepted:
 * X-Forwarded-Host, X-Forwarded-For, X-Forwarded-Proto, X-Real-IP, X-Request-ID, and a Host
 * or Content-Length its upstream client writes (at most 6). A service allows max_headers plus
 * this many (service.c), so that a request the gateway accepted under its own max_headers is
 * never refused by the service: the edge answers 431 itself. */
#define HTTP_PROXY_ADDED_HEADERS 8

typedef struct http_server_opts {
    http_limits limits;
    http_handler_fn handler;
    void *handler_ud;
    const char *server_name; /* "Server" header; NULL: none */
    struct tls_server *tls;  /* NULL: plain HTTP (the gateway sets this, see tls.h) */
    /* Told of each accepted connection with the peer address (open 1: nonzero refuses it,
     * closed at once) and again when an admitted one closes (open 0); ud is handler_ud.
     * NULL: none. The gateway caps connections per client address with it. */
    int (*conn_hook)(void *ud, const char *peer_ip, int open);
    /* NULL-terminated name, value pairs added to the responses the server makes itself
     * (framing errors, limits, timeouts), e.g. the gateway's security headers. NULL: none.
     * The strings must outlive the server. */
    const char *const *error_headers;
} http_server_opts;

http_server *http_server_new(uv_loop_t *loop, const http_server_opts *opts);
/* Binds and listens. reuseport sets SO_REUSEPORT before bind. Returns 0 or a -errno/uv code. */
int http_server_listen(http_server *srv, const char *host, int port, int reuseport);
/* Serves an already listening socket (inherited from a master process). */
int http_server_listen_fd(http_server *srv, int fd);
/* Stops accepting, closes idle connections, lets in-flight requests finish (new responses
 * carry Connection: close) for at most timeout_ms, then closes the rest and calls done. */
void http_server_drain(http_server *srv, unsigned timeout_ms, void (*done)(http_server *, void *),
                       void *ud);
/* Closes every handle; frees the server from the close callbacks (run the loop after). */
void http_server_free(http_server *srv);
unsigned http_server_connections(const http_server *srv);
uv_loop_t *http_server_loop(const http_server *srv);

/* ---- the request ---- */
const char *http_req_method(const http_req *req); /* "GET" */
const char *http_req_target(const http_req *req); /* raw request-target as sent */
const char *http_req_path(const http_req *req);   /* target without the query, raw */
const char *http_req_query(const http_req *req);  /* after '?', "" when none */
int http_req_version_minor(const http_req *req);  /* 0 or 1 */
/* First value of a header (case-insensitive name), NULL when absent. */
const char *http_req_header(const http_req *req, const char *name);
size_t http_req_header_count(const http_req *req);
void http_req_header_at(const http_req *req, size_t i, const char **name, const char **value);
/* -1 when the request is chunked, else its Content-Length (0 when none). */
int64_t http_req_content_length(const http_req *req);
const char *http_req_peer_ip(const http_req *req); /* TCP peer address, text */
/* X-Request-ID as received (if sane: printable, <= 128 chars), else a generated one. */
const char *http_req_id(const http_req *req);
int http_req_is_tls(const http_req *req);
http_server *http_req_server(const http_req *req);
uv_loop_t *http_req_loop(const http_req *req);

/* Per-request data for the handler; and the router's path parameters. */
void http_req_set_data(http_req *req, void *data);
void *http_req_data(const http_req *req);
void http_req_set_param(http_req *req, const char *name, const char *value); /* copies */
const char *http_req_param(const http_req *req, const char *name);

/* Buffers the whole body (max 0: limits.max_body), then calls done. Over the limit: the
 * server answers 413 itself and done is never called. */
void http_req_read_body(http_req *req, size_t max, http_req_fn done);
const char *http_req_body(const http_req *req, size_t *len); /* NUL-terminated copy */
/* Streams the body: on_data per piece (never more than 64 KiB), on_end once complete. */
void http_req_stream_body(http_req *req, http_data_fn on_data, http_req_fn on_end);
void http_req_pause(http_req *req);
void http_req_resume(http_req *req);
/* Called once if the connection closes before the reply ended (client gone, timeout). */
void http_req_on_close(http_req *req, http_req_fn on_close);
int http_req_closed(const http_req *req);
/* Observer of the request's end, for metrics and access logs (one per request): fn runs once,
 * when the reply ended (the server's own 408/413 included), with the status and the seconds
 * since the request's head was complete. */
typedef void (*http_done_fn)(http_req *req, int status, double seconds, void *ud);
void http_req_on_done(http_req *req, http_done_fn fn, void *ud);
/* The response's status once its head is composed, else 0. */
int http_resp_status(const http_req *req);

/* ---- the response ---- */
/* Adds a response header (copied). Date, Content-Length / Transfer-Encoding, Connection and
 * X-Request-ID are written by the server. Returns 0, or -1 after the head went out. */
int http_resp_header(http_req *req, const char *name, const char *value);
/* A whole response: status, Content-Type (NULL: none), body. */
void http_reply(http_req *req, int status, const char *content_type, const void *body, size_t len);
/* JSON body (stolen). */
void http_reply_json(http_req *req, int status, json_t *body);
/* {"error":{"code","message"}} */
void http_reply_error(http_req *req, int status, const char *code, const char *message);
/* Streamed response: content_length -1 = chunked (HTTP/1.1) or close-delimited (HTTP/1.0). */
void http_resp_start(http_req *req, int status, int64_t content_length);
/* Queues data; cb (may be NULL) fires when it has been handed to the socket, or with a
 * status < 0 when it was dropped (the connection closed meanwhile). Returns 0; or
 * UV_ECANCELED when the response can no longer be written (the client is gone, the reply
 * ended or the server answered instead): then nothing is queued and cb is never called.
 * Callbacks never run inside the call that queued their data. */
int http_resp_write(http_req *req, const void *data, size_t len, http_write_fn cb, void *ud);
void http_resp_end(http_req *req);
/* Ends a streamed response that broke midway (its source failed): no terminating chunk is
 * written and the connection closes after what was queued, so the client sees a truncated
 * response rather than a complete one. */
void http_resp_abort(http_req *req);
/* Closes the connection after this response instead of keeping it alive. */
void http_resp_close_after(http_req *req);

/* Parses the request body as a JSON object; on failure answers 400 invalid_json (or
 * 415 when Content-Type is present and not JSON) and returns NULL. The caller owns the result. */
json_t *http_req_json(http_req *req);

const char *http_status_text(int status);

#endif
