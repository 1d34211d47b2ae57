/* http_server_int.h: what the files of the HTTP server share, not for its users (they use
 * http_server.h). The server is split by concern, as lwan and h2o are:
 *   http_server.c     the listener, connections, reading, timers, drain and free
 *   http_wire.c       the llhttp callbacks and the strict framing checks (the wire format)
 *   http_request.c    the request's lifetime (req_hold/req_release) and the request API
 *   http_response.c   the response, and the output queue that writes it in request order
 *   http_transport.c  the socket's bytes: plain TCP or TLS (common/tls.c), behind one seam
 */
#ifndef COMMON_HTTP_SERVER_INT_H
#define COMMON_HTTP_SERVER_INT_H

#include "http_server.h"
#include "xalloc.h"
#include "buf.h"
#include "tls.h"

#include <llhttp.h>
#include <netinet/in.h>
#include <stdint.h>

#define HTTP_WRITE_BATCH 16    /* response pieces handed to one uv_write */
#define HTTP_READ_SIZE   65536 /* one read; also the largest body piece given to a handler */
#define HTTP_DISCARD_MAX 65536 /* unread request body still swallowed to keep the connection */
#define HTTP_LINGER_MS   2000  /* reading (and dropping) after our last response, before close */
#define HTTP_MAX_ID      128   /* X-Request-ID kept up to this length */

typedef struct http_conn http_conn;
typedef struct http_out http_out;
typedef struct http_transport http_transport;

/* A piece of output (a response head, body bytes with their chunk framing) of one request. */
struct http_out {
    http_out *next;
    http_out *batch_next; /* the next batch written at once, waiting for its completion */
    uv_write_t wr;
    http_conn *conn;
    http_req *req;
    http_write_fn cb;
    void *ud;
    size_t len;
    size_t cap;     /* bytes allocated for data: a response head has room for a small body */
    char *tls_data; /* the ciphertext of data on a TLS connection, freed after */
    char data[];
};

typedef enum {
    BODY_NONE = 0, /* the handler has not asked for the body (yet) */
    BODY_READ,     /* buffered for http_req_read_body */
    BODY_STREAM,   /* handed to on_data */
    BODY_DISCARD,  /* replied without reading: small rest swallowed */
    BODY_ABANDON,  /* replied without reading: the connection closes after the response */
} body_mode;

typedef enum { TIMER_NONE = 0, TIMER_HEADER, TIMER_BODY, TIMER_IDLE, TIMER_LINGER } timer_kind;

typedef struct http_hdr {
    size_t name, value; /* offsets into req->hbuf */
} http_hdr;

typedef struct http_param {
    char *name, *value;
} http_param;

struct http_req {
    http_conn *conn; /* NULL once the connection is gone */
    http_server *srv;
    uv_loop_t *loop;
    http_req *next; /* in the connection's queue */

    /* the head */
    const char *method;
    buf target;
    char *path;
    const char *query;
    buf hbuf;
    http_hdr *hdrs;
    size_t nhdrs, hcap;
    size_t field_start; /* offset of the header being parsed */
    size_t value_start;
    int version_minor;
    int64_t content_length;
    int keep_alive;
    int is_head;
    int expect_continue;
    int host_count, te_count, expect_count;
    char id[HTTP_MAX_ID + 1];
    char peer[INET6_ADDRSTRLEN];
    http_param *params;
    size_t nparams;
    void *data;

    /* the body */
    body_mode body_mode;
    int has_body, headers_done, body_done;
    size_t body_max;
    uint64_t body_received;
    uint64_t ext_received; /* chunk extension bytes, counted against the body limit */
    buf body;
    http_req_fn read_done;
    http_data_fn on_data;
    http_req_fn on_end;
    int paused;
    int continue_sent;

    /* the response */
    int status;
    buf rhdrs;
    int head_composed; /* the response head is queued */
    int resp_ended;    /* the whole response is queued */
    int srv_replied;   /* the server answered in the handler's place (error, timeout) */
    int no_body;       /* HEAD, 1xx, 204, 304: body bytes are not written */
    int chunked;
    int64_t resp_cl; /* -1: chunked or close-delimited */
    uint64_t resp_sent;
    int close_after;
    int truncated;            /* http_resp_abort: no last chunk, the close tells the client */
    http_out *out, *out_tail; /* queued, not yet handed to the socket */
    unsigned writes_inflight;

    /* lifetime: the request is freed (req_maybe_free) once none of these refer to it */
    int handler_owes; /* dispatched, the handler has not ended its reply */
    int in_queue;     /* in the connection's response queue */
    int parsing;      /* the parser still delivers to this request */
    int pins;         /* req_hold: code up the stack still uses it (see req_hold) */
    int closed;
    http_req_fn on_close;
    http_done_fn on_done;
    void *done_ud;
    int done_fired;
    uint64_t t_start;
};

struct http_conn {
    http_server *srv;
    http_conn *prev, *next; /* the server's list */
    http_conn *kick_next;
    uv_tcp_t tcp;
    uv_timer_t timer; /* header, body, idle and linger timeouts */
    uv_timer_t send_timer;
    uv_shutdown_t shutdown_req;
    int handles_open;
    llhttp_t parser;

    char *rbuf;           /* the input: the server's read buffer while it is parsed right after
                             the read, else rbuf_own (conn_keep_input); NULL when none */
    char *rbuf_own;       /* a copy of the input left unparsed (the parser is blocked) */
    size_t roff, rlen;    /* unparsed bytes kept in rbuf */
    uint64_t in_total;    /* bytes consumed by the parser so far */
    const char *feed_ptr; /* the slice being parsed, and its absolute offset */
    size_t feed_len;
    uint64_t feed_abs;

    http_req *head, *tail; /* requests in arrival order */
    unsigned nreqs;
    http_req *cur;   /* the request being parsed */
    unsigned served; /* requests begun on this connection */

    int reading, closing, shutting, lingering, eof, kicked, in_feed, llhttp_paused;
    int no_more; /* parse no further request */
    unsigned writes_inflight;
    http_out *wdone, *wdone_tail; /* batches written at once: completed from the loop */
    size_t send_queued;           /* bytes queued in libuv when the send timer was armed */
    timer_kind tkind;
    uint64_t tdue; /* when tkind is due (uv_now time) */
    char peer[INET6_ADDRSTRLEN];

    /* raw scan of the request head */
    int scan;             /* 0 waiting for the method, 1 scanning, 2 done */
    const char *scan_ptr; /* where to resume in the current slice (NULL: its start) */
    int scan_line_start, scan_cr, scan_reqline;
    size_t head_bytes;

    /* chunk framing: the CRLF expected after a chunk's data */
    uint64_t chunk_left;
    size_t chunk_ext; /* extension bytes of the chunk whose size line is parsed */
    uint64_t crlf_abs;
    int crlf_left; /* bytes of that CRLF not checked yet */

    int err_status; /* set by a parser callback that rejects the request */
    const char *err_msg;

    const http_transport *tp; /* plain TCP or TLS (http_transport.c) */
    tls_conn *tls;            /* TLS between the socket and the parser (https listeners) */
    int tls_closed;           /* the peer sent close_notify */
    int hooked;               /* conn_hook accepted it: told again at close */
};

struct http_server {
    uv_loop_t *loop;
    http_limits limits;
    http_handler_fn handler;
    void *handler_ud;
    char *server_name;
    uv_tcp_t listener;
    int listener_state; /* 0 none, 1 listening, 2 closing or closed */
    uv_idle_t kick;
    uv_timer_t drain_timer;
    int handles_open;
    http_conn *conns;
    http_conn *kick_list;
    unsigned nconns; /* open connections */
    unsigned nalive; /* connection structures not freed yet */
    int draining, drain_fired, freeing;
    void (*drain_done)(http_server *, void *);
    void *drain_ud;
    struct tls_server *tls;
    int (*conn_hook)(void *ud, const char *peer_ip, int open);
    const char *const *error_headers;
    char *tls_rbuf;  /* ciphertext read buffer, shared (fed to TLS at once) */
    char *rbuf;      /* input read buffer, shared (see conn_input_buffer) */
    http_req *spare; /* freed requests kept for reuse (req_new), linked by next */
    unsigned nspare;
};

/* The socket's side of a connection, chosen at accept (http_transport.c): plain TCP, or TLS
 * between the socket and the parser. The connection code never asks which one it has. */
struct http_transport {
    /* At accept: 0, or -1 to refuse the connection. */
    int (*open)(http_conn *c);
    /* Where the socket's next bytes are read to. */
    uv_buf_t (*read_buf)(http_conn *c);
    /* n bytes were read there. */
    void (*received)(http_conn *c, const char *data, size_t n);
    /* The read buffer is empty: fills it from what the transport holds (TLS: decrypts, runs
     * the handshake). 0, or -1 when the connection was closed or its input ended. */
    int (*pull)(http_conn *c);
    /* 1 when the transport holds input not yet in the read buffer. */
    int (*pending)(const http_conn *c);
    /* The socket bytes of a batch of output (linked by next) into bufs[HTTP_WRITE_BATCH]:
     * their count, or a uv error. */
    int (*encode)(http_conn *c, http_out *first, uv_buf_t *bufs);
    /* Before the TCP shutdown: the last word (TLS close_notify). */
    void (*shutdown)(http_conn *c);
    void (*free)(http_conn *c);
};

extern const http_transport http_transport_plain;
extern const http_transport http_transport_tls;

static inline int is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* http_server.c: connections, timers (memory: xalloc.h; the read buffer is not zeroed, as only
 * the rlen bytes read into it are ever looked at) */
void conn_close(http_conn *c);
char *conn_input_buffer(http_conn *c);
void conn_update(http_conn *c);
void conn_kick(http_conn *c);
void conn_input_end(http_conn *c, ssize_t nread);
void conn_arm(http_conn *c, timer_kind kind, unsigned ms);
void conn_disarm(http_conn *c);

/* http_wire.c: parsing */
const llhttp_settings_t *http_wire_settings(void);
int conn_blocked(http_conn *c);
long conn_parse(http_conn *c, const char *data, size_t len);
void conn_fail(http_conn *c, int status, const char *msg);

/* http_request.c: the request's lifetime and queue. req_hold/req_release is the one rule of
 * the request's lifetime (see there): hold r around any call out that may end it. */
http_req *req_new(http_conn *c);
void req_maybe_free(http_req *r);
/* Frees the requests the server kept for reuse. */
void req_spare_free(http_server *srv);
void req_hold(http_req *r);
void req_release(http_req *r);
void req_fire_done(http_req *r, int status);
void queue_append(http_conn *c, http_req *r);
void queue_pop(http_conn *c);
void req_set_id(http_req *r);
int http_token_equals(const char *s, size_t n, const char *word);

/* http_response.c: output and the server's own replies */
http_out *out_new(http_req *r, size_t len);
void req_enqueue(http_req *r, http_out *o);
void req_cancel_out(http_req *r);
void conn_flush(http_conn *c);
void conn_write_completions(http_conn *c);
void req_error_reply(http_req *r, int status, const char *msg);

#endif
