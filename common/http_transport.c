/* http_transport: the socket's side of a server connection, the one place that knows
 * whether a connection is plain TCP or TLS (common/tls.c). On a TLS connection the socket's
 * bytes are fed to the connection's tls_conn and pulled, decrypted, into the read buffer when
 * it is empty; output is encrypted in one run of records per write; what TLS sends on its own
 * (handshake, alerts, close_notify) goes out through conn_tls_flush(). */
#include "http_server_int.h"

#include <stdlib.h>

/* ---------------------------------------------------------------- TLS I/O */

/* TLS output not tied to a response (handshake, alerts, close_notify). */
typedef struct tls_write {
    uv_write_t wr;
    char *data;
} tls_write;

static void conn_tls_on_write(uv_write_t *wr, int status)
{
    tls_write *w = wr->data;
    (void)status;
    free(w->data);
    free(w);
}

/* Sends what TLS produced on its own. 0 or a uv error. */
static int conn_tls_flush(http_conn *c)
{
    char *out;
    size_t n = tls_conn_take_out(c->tls, &out);
    if (n == 0)
        return 0;
    tls_write *w = xcalloc(1, sizeof *w);
    w->data = out;
    w->wr.data = w;
    uv_buf_t b = uv_buf_init(out, (unsigned)n);
    int rc = uv_write(&w->wr, (uv_stream_t *)&c->tcp, &b, 1, conn_tls_on_write);
    if (rc != 0) {
        free(out);
        free(w);
    }
    return rc;
}

/* TLS: decrypts what was fed into the empty read buffer (and runs the handshake), sends what
 * TLS has to send. Returns 0, or -1 when the connection was closed or ended. */
static int conn_tls_pull(http_conn *c)
{
    if (c->tls_closed || c->lingering)
        return 0;
    conn_input_buffer(c); /* called with no input left */
    int n = TLS_AGAIN;
    while (c->rlen < HTTP_READ_SIZE) {
        n = tls_conn_read(c->tls, c->rbuf + c->rlen, HTTP_READ_SIZE - c->rlen);
        if (n <= 0)
            break;
        c->rlen += (size_t)n;
    }
    if (conn_tls_flush(c) != 0 || n == TLS_ERROR) {
        conn_close(c);
        return -1;
    }
    if (n == TLS_CLOSED) {
        c->tls_closed = 1;
        if (c->rlen == 0) {
            int was = c->in_feed;
            c->in_feed = 0;
            conn_input_end(c, UV_EOF);
            c->in_feed = was;
            return -1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- plain TCP */

/* Nothing to set up, pull or free: the socket's bytes are read into the read buffer. */
static int plain_nothing(http_conn *c)
{
    (void)c;
    return 0;
}

static void plain_nothing_void(http_conn *c)
{
    (void)c;
}

static uv_buf_t plain_read_buf(http_conn *c)
{
    return uv_buf_init(conn_input_buffer(c), HTTP_READ_SIZE);
}

static void plain_received(http_conn *c, const char *data, size_t n)
{
    (void)data; /* read into c->rbuf already */
    c->roff = 0;
    c->rlen = n;
}

static int plain_pending(const http_conn *c)
{
    (void)c;
    return 0;
}

static int plain_encode(http_conn *c, http_out *first, uv_buf_t *bufs)
{
    int nb = 0;
    (void)c;
    for (http_out *o = first; o; o = o->next)
        bufs[nb++] = uv_buf_init(o->data, (unsigned)o->len);
    return nb;
}

const http_transport http_transport_plain = {
    .open = plain_nothing,
    .read_buf = plain_read_buf,
    .received = plain_received,
    .pull = plain_nothing,
    .pending = plain_pending,
    .encode = plain_encode,
    .shutdown = plain_nothing_void,
    .free = plain_nothing_void,
};

/* ---------------------------------------------------------------- TLS ops */

static int tls_open(http_conn *c)
{
    c->tls = tls_conn_new(c->srv->tls);
    return c->tls ? 0 : -1;
}

/* The ciphertext goes into one buffer shared by the server's connections: it is fed to TLS
 * at once. */
static uv_buf_t tls_read_buf(http_conn *c)
{
    if (!c->srv->tls_rbuf)
        c->srv->tls_rbuf = xmalloc(HTTP_READ_SIZE);
    return uv_buf_init(c->srv->tls_rbuf, HTTP_READ_SIZE);
}

static void tls_received(http_conn *c, const char *data, size_t n)
{
    tls_conn_feed(c->tls, data, n);
}

static int tls_pending(const http_conn *c)
{
    return tls_conn_pending(c->tls);
}

/* The whole batch in one run of records, one write. */
static int tls_encode(http_conn *c, http_out *first, uv_buf_t *bufs)
{
    if (conn_tls_flush(c) != 0)
        return UV_EPROTO;
    for (http_out *o = first; o; o = o->next)
        if (tls_conn_write(c->tls, o->data, o->len) != 0)
            return UV_EPROTO;
    size_t n = tls_conn_take_out(c->tls, &first->tls_data);
    bufs[0] = uv_buf_init(first->tls_data ? first->tls_data : first->data, (unsigned)n);
    return 1;
}

static void tls_shutdown(http_conn *c)
{
    if (tls_conn_handshake_done(c->tls) && !c->tls_closed) {
        tls_conn_close_notify(c->tls);
        conn_tls_flush(c);
    }
}

static void tls_free(http_conn *c)
{
    tls_conn_free(c->tls);
    c->tls = NULL;
}

const http_transport http_transport_tls = {
    .open = tls_open,
    .read_buf = tls_read_buf,
    .received = tls_received,
    .pull = conn_tls_pull,
    .pending = tls_pending,
    .encode = tls_encode,
    .shutdown = tls_shutdown,
    .free = tls_free,
};
