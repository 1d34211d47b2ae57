/* fuzz_http_server: libFuzzer target driving the real connection code of http_server.c (read
 * path, parser callbacks and strict checks, pipelining, body modes, pauses, responses,
 * timeouts, close) through a loopback TCP connection in one libuv loop.
 *
 * Input: byte 0 chooses how the rest is cut into writes (bits 0-2: 1, 2, 3, 7, 16, 64, 512
 * bytes or all at once); the server reads each write separately (the loop runs between
 * writes), so read boundaries are reproducible. Bits 3-4 choose how the client leaves:
 *   0  after the last byte it half-closes and reads every answer (the polite client);
 *   1  it resets (RST: SO_LINGER 0) at a point byte 1 chooses (a fraction of the input);
 *   2  it half-closes at that point, lets the server run a little, then resets;
 *   3  it sends everything, lets the server run byte 1 loop turns, then resets.
 * Bit 5: the client never reads, with a tiny receive buffer, so the server's responses
 * (/big, /huge) block and its writes fail when the reset comes. The loop then runs until the
 * server closed the connection and every handler finished: each input leaves no state. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "crypto.h"
#include "http_server.h"
#include "test_routes.h"
#include "http_syntax.h"
#include "router.h"

static uv_loop_t *loop;
static http_server *srv;
static router *routes;
static int port;
static int pending_work; /* handler timers not fired yet */

/* ---- handlers of every kind: sync, async, buffered, streamed with pauses, refused */

static void h_hello(http_req *req)
{
    http_reply(req, 200, "text/plain", "hello", 5);
}

static void h_echo(http_req *req)
{
    size_t len;
    const char *body = http_req_body(req, &len);
    http_reply(req, 200, "application/octet-stream", body, len);
}

static void h_json(http_req *req)
{
    json_t *j = http_req_json(req);
    if (j)
        http_reply_json(req, 200, j);
}

static void h_refuse(http_req *req)
{
    http_reply_error(req, 403, "forbidden", "no");
}

typedef struct later {
    uv_timer_t timer;
    http_req *req;
    int kind;
    size_t bytes;
} later;

static void later_closed(uv_handle_t *h)
{
    free(h->data);
    pending_work--;
}

static void later_fire(uv_timer_t *t)
{
    later *l = t->data;
    if (l->kind == 0) {
        http_reply(l->req, 200, "text/plain", "slow", 4);
        uv_close((uv_handle_t *)t, later_closed);
    } else {
        http_req_resume(l->req); /* a stream consumer's pause ends */
    }
}

static later *later_new(http_req *req, int kind)
{
    later *l = calloc(1, sizeof *l);
    l->req = req;
    l->kind = kind;
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    pending_work++;
    return l;
}

static void h_slow(http_req *req)
{
    later *l = later_new(req, 0);
    uv_timer_start(&l->timer, later_fire, 1, 0);
}

static void stream_data(http_req *req, const char *data, size_t len)
{
    later *l = http_req_data(req);
    (void)data;
    l->bytes += len;
    if (len & 1) {
        http_req_pause(req);
        uv_timer_start(&l->timer, later_fire, 0, 0);
    }
}

static void stream_done(later *l)
{
    uv_timer_stop(&l->timer);
    uv_close((uv_handle_t *)&l->timer, later_closed);
}

static void stream_end(http_req *req)
{
    later *l = http_req_data(req);
    char n[32];
    int len = snprintf(n, sizeof n, "%zu", l->bytes);
    http_resp_start(req, 200, -1);
    http_resp_write(req, n, (size_t)len, NULL, NULL);
    http_resp_write(req, "", 0, NULL, NULL);
    http_resp_end(req);
    stream_done(l);
}

static void stream_gone(http_req *req)
{
    later *l = http_req_data(req);
    stream_done(l);
    http_resp_end(req);
}

static void h_stream(http_req *req)
{
    later *l = later_new(req, 1);
    http_req_set_data(req, l);
    http_req_on_close(req, stream_gone);
    http_req_stream_body(req, stream_data, stream_end);
}

static void big_next(http_req *req, int status, void *ud)
{
    uintptr_t left = (uintptr_t)ud;
    if (status < 0 || left == 0) {
        http_resp_end(req);
        return;
    }
    static char chunk[3000];
    if (http_resp_write(req, chunk, sizeof chunk, big_next, (void *)(left - 1)) != 0)
        http_resp_end(req);
}

static void h_big(http_req *req)
{
    http_resp_header(req, "X-Big", "1");
    http_resp_start(req, 200, http_req_version_minor(req) ? -1 : 9000);
    big_next(req, 0, (void *)(uintptr_t)3);
}

/* Every request a handler sees has passed the strict syntax checks. */
static void fuzz_dispatch(http_req *req, void *ud)
{
    const char *t = http_req_target(req), *host = http_req_header(req, "Host");
    if (!http_syntax_target(t, strlen(t)) || (host && !http_syntax_host(host, strlen(host))))
        abort();
    for (size_t i = 0; i < http_req_header_count(req); i++) {
        const char *name, *value;
        http_req_header_at(req, i, &name, &value);
        if (!http_syntax_token(name, strlen(name)) ||
            !http_syntax_field_value(value, strlen(value)))
            abort();
    }
    router_dispatch(req, ud);
}

/* A response larger than the socket buffers: written while the client may vanish. */
static void h_huge(http_req *req)
{
    http_resp_start(req, 200, 120 * 3000);
    big_next(req, 0, (void *)(uintptr_t)120);
}

/* ---- set-up */

static int fuzz_listen_socket(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sl) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        perror("fuzz_http_server: listen");
        abort();
    }
    port = ntohs(sa.sin_port);
    return fd;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN); /* as the services: a write to a reset peer is an error */
    crypto_init();
    loop = uv_default_loop();
    routes = router_new();
    test_echo_handlers echo = {h_echo, 8, h_json, h_slow, h_big, h_refuse, h_hello};
    test_echo_routes(routes, &echo);
    router_add(routes, "GET", "/a", h_hello, 0);
    router_add(routes, "GET", "/huge", h_huge, 0);
    router_add_stream(routes, "POST", "/stream", h_stream);

    http_server_opts o = {0};
    http_limits_default(&o.limits);
    o.limits.max_request_line = 256;
    o.limits.max_header_line = 256;
    o.limits.max_headers_size = 1024;
    o.limits.max_headers = 16;
    o.limits.max_body = 4096;
    o.limits.header_timeout_ms = 20;
    o.limits.body_timeout_ms = 20;
    o.limits.idle_timeout_ms = 20;
    o.limits.send_timeout_ms = 50;
    o.limits.max_pipeline = 4;
    o.handler = fuzz_dispatch;
    o.handler_ud = routes;
    srv = http_server_new(loop, &o);
    if (!srv || http_server_listen_fd(srv, fuzz_listen_socket()) != 0) {
        fprintf(stderr, "fuzz_http_server: cannot serve\n");
        abort();
    }
    return 0;
}

static void client_drain(int fd)
{
    char buf[16384];
    while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0)
        ;
}

static void client_send(int fd, const uint8_t *p, size_t n)
{
    int spins = 0;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return; /* the server closed: the rest is not wanted */
        if (++spins > 1000)
            return;
        uv_run(loop, UV_RUN_NOWAIT);
        client_drain(fd);
    }
}

/* connect(), finished when a signal (libFuzzer's -timeout alarm) interrupted it. */
static int client_connect(int fd, const struct sockaddr_in *sa)
{
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0)
        return 0;
    if (errno != EINTR)
        return -1;
    struct pollfd p = {fd, POLLOUT, 0};
    while (poll(&p, 1, -1) < 0)
        if (errno != EINTR)
            return -1;
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    errno = err;
    return err ? -1 : 0;
}

/* 1 when the server closed the connection (EOF or reset waiting on the client's socket). */
static int client_closed(int fd)
{
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* Closes with a reset: the server's pending writes and reads fail. */
static void client_reset(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t cuts[8] = {1, 2, 3, 7, 16, 64, 512, (size_t)-1};
    if (size == 0)
        return 0;
    size_t cut = cuts[data[0] & 7];
    int leave = (data[0] >> 3) & 3;
    int no_read = (data[0] >> 5) & 1;
    data++;
    size--;
    size_t stop_at = size; /* where the client stops sending */
    unsigned turns = 0;    /* loop turns before the reset (leave 3) */
    if (leave != 0) {
        if (size == 0)
            return 0;
        if (leave == 3)
            turns = data[0];
        else
            stop_at = (size - 1) * data[0] / 255;
        data++;
        size--;
        if (stop_at > size)
            stop_at = size;
    }

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (no_read) {
        int small = 2048; /* set before connect: the window stays small */
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    }
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    if (fd < 0 || client_connect(fd, &sa) != 0) {
        perror("fuzz_http_server: connect");
        abort();
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* the accept; under load the header timeout may close it within the same loop turn,
     * so the client's socket closing also ends the wait */
    while (http_server_connections(srv) == 0 && !client_closed(fd))
        uv_run(loop, UV_RUN_NOWAIT);

    for (size_t off = 0; off < stop_at;) {
        size_t n = stop_at - off < cut ? stop_at - off : cut;
        client_send(fd, data + off, n);
        off += n;
        uv_run(loop, UV_RUN_NOWAIT);
        if (!no_read)
            client_drain(fd);
    }
    switch (leave) {
    case 0: shutdown(fd, SHUT_WR); break;
    case 1:
        client_reset(fd);
        fd = -1;
        break;
    case 2:
        shutdown(fd, SHUT_WR);
        for (int i = 0; i < 3; i++)
            uv_run(loop, UV_RUN_NOWAIT);
        client_reset(fd);
        fd = -1;
        break;
    case 3:
        for (unsigned i = 0; i < turns; i++)
            uv_run(loop, UV_RUN_NOWAIT);
        client_reset(fd);
        fd = -1;
        break;
    }
    /* the server answers what it can and closes; timers bound every wait */
    while (http_server_connections(srv) > 0 || pending_work > 0) {
        uv_run(loop, UV_RUN_ONCE);
        if (fd >= 0 && !no_read)
            client_drain(fd);
    }
    if (fd >= 0) {
        client_drain(fd);
        close(fd);
    }
    uv_run(loop, UV_RUN_NOWAIT); /* close callbacks */
    return 0;
}
