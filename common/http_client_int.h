/* http_client_int: the private structures of the HTTP client, shared by http_client.c (the
 * connections, the pool, the exchange and its writes) and http_client_parse.c (the llhttp
 * callbacks that read a response into its exchange). Not for callers: use http_client.h. */
#ifndef COMMON_HTTP_CLIENT_INT_H
#define COMMON_HTTP_CLIENT_INT_H

#include <llhttp.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "buf.h"
#include "http_client.h"

#define HC_RBUF             (64 * 1024)
#define HC_MAX_HEADER_BYTES (64 * 1024)
#define HC_MAX_HEADERS      128
#define HC_NO_TIME          UINT64_MAX

enum { HC_CONNECTING, HC_ACTIVE, HC_IDLE, HC_CLOSING };
enum { HC_W_HEAD, HC_W_BODY, HC_W_END };

typedef struct hc_conn hc_conn;
typedef struct hc_bucket hc_bucket;
typedef struct hc_wreq hc_wreq;

/* One write: the request head (with fetch()'s body), a body piece, or the last chunk. */
struct hc_wreq {
    uv_write_t req;
    hc_conn *conn;    /* set when submitted */
    http_exchange *x; /* NULL once detached: libuv's callback then only frees it */
    void (*cb)(http_exchange *x, int status, void *ud);
    void *ud;
    int kind;
    int submitted;
    uv_buf_t bufs[3];
    unsigned nbufs;
    char line[24]; /* chunk size line */
    hc_wreq *prev, *next;
    hc_wreq *done_next; /* written at once, completed from the timer (hc_conn.wdone) */
};

/* Idle connections to one address. */
struct hc_bucket {
    struct sockaddr_storage addr;
    hc_conn *idle; /* most recently used first */
    unsigned n;
    hc_bucket *next;
};

struct hc_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t creq;
    http_client *c;
    struct sockaddr_storage addr;
    int state;
    int reused; /* served a whole exchange before */
    int reading;
    int waiting; /* the read gap timer runs */
    int parked;  /* the parser stopped where the caller paused */
    int kick;    /* resume parsing pend on the next timer tick */
    int nclosing;
    hc_err pending_err;          /* report on the next timer tick */
    unsigned inflight;           /* submitted writes not completed */
    hc_wreq *wdone, *wdone_tail; /* writes the socket took at once: completed from the timer */
    uint64_t connect_deadline, last_progress, idle_since;
    llhttp_t parser;
    http_exchange *x;
    hc_bucket *bucket; /* while idle */
    hc_conn *idle_next;
    hc_conn *prev, *next; /* every connection of the client */
    char *pend;           /* a copy of the bytes read and not parsed yet (parked; may be none) */
    size_t pend_len;
};

struct http_client {
    uv_loop_t *loop;
    char *rbuf; /* HC_RBUF bytes, shared by the connections: a read is parsed at once */
    http_client_opts opts;
    hc_conn *conns;
    hc_bucket *buckets;
    int freeing;
};

typedef struct hc_hoff {
    size_t name, value;
} hc_hoff;

struct http_exchange {
    http_client *c;
    hc_conn *conn;
    struct sockaddr_storage addr;
    http_exchange_cbs cbs;
    void *ud;
    char *head;
    size_t head_len, head_cap;
    hc_err early_err;       /* a bad address (ECONNECT) or request (EPROTO) */
    const char *owned_body; /* fetch(): sent with the head, replayable */
    size_t owned_len;
    int64_t body_len;
    uint64_t body_written;
    uint64_t deadline; /* fetch(): absolute, uv_now based; 0 none */
    hc_wreq *wfirst, *wlast;
    unsigned body_submitted; /* streamed body writes handed to a socket */
    int chunked, is_head, req_close;
    int head_submitted, head_cb_done, sent_any, body_ended, end_sent, retried;
    int paused, got_byte, informational, headers_done, resp_complete, keep_alive, extra;
    int finished;
    unsigned holds; /* > 0 while our code up the stack still uses x */
    /* response */
    int status;
    buf hbuf; /* header names and values, each NUL-terminated */
    hc_hoff *hoff;
    size_t nh, hoff_cap;
    int hstate;       /* 0 between headers, 1 in a name, 2 in a value */
    size_t chunk_ext; /* extension bytes of the chunk whose size line is parsed */
    http_header *hdrs;
    size_t hdrs_cap;
    http_exchange *spare_next; /* in the thread's spare exchanges (hc_exchange_new) */
};

/* The llhttp callbacks of a response (http_client_parse.c). */
extern const llhttp_settings_t hc_settings;
/* Ends x with err (http_client.c): on_done, then the connection is pooled or closed. */
void hc_exchange_finish(http_exchange *x, hc_err err);
/* Forgets the response headers read so far (a 1xx answer, or a retry). */
void hc_headers_reset(http_exchange *x);

#endif
