/* test_http_server: the HTTP server's C API driven by a real loopback client (a thread with
 * blocking sockets, the server's loop on the main thread): listening (errors, SO_REUSEPORT,
 * inherited fd, IPv6), request accessors, a body read later than the head (with
 * 100-continue), the end observer, on_close and replies after the client left, response
 * framing rules (204, HEAD, writes over the announced length), header rules, drain and free
 * with requests in flight. Ports: 20000-20999. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "crypto.h"
#include "http_server.h"
#include "http_syntax.h"
#include "test.h"
#include "tls.h"

static uv_loop_t *loop;

/* ---------------------------------------------------------------- ports and the client */

/* A listening socket on 127.0.0.1 with a port in this suite's range. */
static int listen_in_range(int *port)
{
    for (int i = 0; i < 200; i++) {
        int p = 20000 + (int)((unsigned)rand() % 1000);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {0};
        sa.sin_family = AF_INET;
        sa.sin_port = htons((uint16_t)p);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, 64) == 0) {
            *port = p;
            return fd;
        }
        close(fd);
    }
    return -1;
}

/* A port in range that nothing listens on now. */
static int free_port(void)
{
    int port;
    int fd = listen_in_range(&port);
    close(fd);
    return port;
}

typedef struct client {
    int port;
    const char *req;
    size_t len;
    const char *req2; /* sent after pause_ms, when set */
    unsigned pause_ms;
    int leave_after_ms; /* > 0: close without reading the answer */
    int finished;
    pthread_t thread;
    char resp[262144];
    size_t rlen;
    int connect_failed;
} client;

static uv_async_t client_done;

static void *client_main(void *arg)
{
    client *c = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)c->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        c->connect_failed = 1;
        goto out;
    }
    if (send(fd, c->req, c->len, MSG_NOSIGNAL) < 0)
        goto out;
    if (c->req2) {
        usleep(c->pause_ms * 1000);
        send(fd, c->req2, strlen(c->req2), MSG_NOSIGNAL);
    }
    if (c->leave_after_ms > 0) {
        usleep((unsigned)c->leave_after_ms * 1000);
        goto out;
    }
    for (;;) {
        ssize_t n = recv(fd, c->resp + c->rlen, sizeof c->resp - 1 - c->rlen, 0);
        if (n <= 0)
            break;
        c->rlen += (size_t)n;
    }
out:
    c->resp[c->rlen] = '\0';
    close(fd);
    __atomic_store_n(&c->finished, 1, __ATOMIC_RELEASE);
    uv_async_send(&client_done); /* wakes the loop */
    return NULL;
}

static void on_client_done(uv_async_t *a)
{
    (void)a;
}

static void start_client(client *c)
{
    pthread_create(&c->thread, NULL, client_main, c);
}

/* Runs the loop until the client thread finished its exchange. */
static void wait_client(client *c)
{
    while (!__atomic_load_n(&c->finished, __ATOMIC_ACQUIRE))
        uv_run(loop, UV_RUN_ONCE);
    pthread_join(c->thread, NULL);
}

/* Aims c at port with the request req. */
static void client_aim(client *c, int port, const char *req)
{
    c->port = port;
    c->req = req;
    c->len = strlen(req);
}

static void run_client(client *c)
{
    start_client(c);
    wait_client(c);
}

static void run_until_closed(void)
{
    while (uv_run(loop, UV_RUN_NOWAIT))
        ;
}

static http_server *serve(http_handler_fn fn, void *ud, int *port, http_limits *limits)
{
    http_server_opts o = {0};
    if (limits)
        o.limits = *limits;
    o.handler = fn;
    o.handler_ud = ud;
    http_server *srv = http_server_new(loop, &o);
    int fd = listen_in_range(port);
    CHECK(fd >= 0);
    CHECK_INT(http_server_listen_fd(srv, fd), 0);
    return srv;
}

/* ---------------------------------------------------------------- handlers */

static char seen[2048];

static void h_accessors(http_req *req, void *ud)
{
    (void)ud;
    snprintf(seen, sizeof seen, "%s|%s|%s|%s|%d|%s|%s|%zu|%lld|%s|%d|%d", http_req_method(req),
             http_req_target(req), http_req_path(req), http_req_query(req),
             http_req_version_minor(req),
             http_req_header(req, "x-CUSTOM") ? http_req_header(req, "x-CUSTOM") : "-",
             http_req_header(req, "absent") ? "?" : "-", http_req_header_count(req),
             (long long)http_req_content_length(req), http_req_peer_ip(req), http_req_is_tls(req),
             http_req_server(req) != NULL);
    CHECK_INT(http_resp_header(req, "Bad\r\nName", "v"), -1);
    CHECK_INT(http_resp_header(req, "X-Injected", "a\r\nSet-Cookie: x"), -1);
    CHECK_INT(http_resp_header(req, "Content-Length", "5"), -1);
    CHECK_INT(http_resp_header(req, "X-Ok", "yes"), 0);
    http_reply(req, 204, "text/plain", "ignored", 7);
    CHECK_INT(http_resp_header(req, "X-Late", "no"), -1);
}

static void listen_errors_and_reuseport(void)
{
    http_server_opts o = {0};
    o.handler = h_accessors;
    int port;
    int busy = listen_in_range(&port);
    http_server *a = http_server_new(loop, &o);
    CHECK_INT(http_server_listen(a, "127.0.0.1", port, 0), UV_EADDRINUSE);
    close(busy);
    CHECK_INT(http_server_listen(a, "127.0.0.1", free_port(), 0), 0);
    CHECK_INT(http_server_listen(a, "127.0.0.1", free_port(), 0), UV_EBUSY);
    http_server_free(a);

    a = http_server_new(loop, &o);
    CHECK_INT(http_server_listen(a, "not-an-address", 80, 0), UV_EINVAL);
    http_server_free(a);

    int p2 = free_port();
    a = http_server_new(loop, &o);
    http_server *b = http_server_new(loop, &o);
    CHECK_INT(http_server_listen(a, "127.0.0.1", p2, 1), 0);
    CHECK_INT(http_server_listen(b, "127.0.0.1", p2, 1), 0);
    http_server_free(a);
    http_server_free(b);

    /* TLS listeners (opts.tls): tls_transport below, and through the gateway in
     * tests/integration/test_gateway.py. */
    run_until_closed();
}

static void ipv6_loopback(void)
{
    int probe = socket(AF_INET6, SOCK_STREAM, 0);
    if (probe < 0)
        return; /* no IPv6 here */
    close(probe);
    http_server_opts o = {0};
    o.handler = h_accessors;
    http_server *srv = http_server_new(loop, &o);
    int port = free_port();
    int rc = http_server_listen(srv, "::1", port, 0);
    if (rc == UV_EADDRNOTAVAIL) {
        http_server_free(srv);
        run_until_closed();
        return;
    }
    CHECK_INT(rc, 0);
    http_server_free(srv);
    run_until_closed();
}

static void accessors_and_204(void)
{
    int port;
    http_server *srv = serve(h_accessors, NULL, &port, NULL);
    static client c;
    client_aim(
        &c, port,
        "GET /a/b%20c?x=1&y HTTP/1.1\r\nHost: h\r\nX-Custom:  v  \r\nConnection: close\r\n\r\n");
    run_client(&c);
    CHECK_STR(seen, "GET|/a/b%20c?x=1&y|/a/b%20c|x=1&y|1|v|-|3|0|127.0.0.1|0|1");
    CHECK(strncmp(c.resp, "HTTP/1.1 204 No Content\r\n", 25) == 0);
    CHECK(strstr(c.resp, "X-Ok: yes\r\n") != NULL);
    CHECK(strstr(c.resp, "Content-Length") == NULL);
    CHECK(strstr(c.resp, "ignored") == NULL);
    CHECK(strstr(c.resp, "X-Late") == NULL);
    http_server_free(srv);
    run_until_closed();
}

/* ---- the body asked for after a delay, with 100-continue */

static uv_timer_t later_timer;
static http_req *later_req;

static void body_read(http_req *req)
{
    size_t len;
    const char *b = http_req_body(req, &len);
    http_reply(req, 200, "text/plain", b, len);
}

static void later_fire(uv_timer_t *t)
{
    (void)t;
    http_req_read_body(later_req, 0, body_read);
}

static void h_later(http_req *req, void *ud)
{
    (void)ud;
    later_req = req;
    uv_timer_start(&later_timer, later_fire, 150, 0);
}

static void body_read_later_with_continue(void)
{
    int port;
    http_server *srv = serve(h_later, NULL, &port, NULL);
    static client c;
    client_aim(&c, port,
               "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
               "Connection: close\r\n\r\n");
    c.req2 = "hello"; /* the client gives up waiting for 100 after 50 ms, as curl does */
    c.pause_ms = 50;
    run_client(&c);
    const char *cont = strstr(c.resp, "HTTP/1.1 100 Continue\r\n\r\n");
    const char *ok = strstr(c.resp, "HTTP/1.1 200 OK\r\n");
    CHECK(cont != NULL && ok != NULL && cont < ok);
    CHECK(strstr(c.resp, "\r\n\r\nhello") != NULL);
    http_server_free(srv);
    run_until_closed();
}

/* ---- the end observer, on_close, replies to a request whose client left */

static int done_status;
static double done_secs;
static int closed_calls;
static http_req *held;

static void observe(http_req *req, int status, double secs, void *ud)
{
    (void)req;
    CHECK(ud == &done_status);
    done_status = status;
    done_secs = secs;
}

static void reply_held(uv_timer_t *t)
{
    (void)t;
    CHECK_INT(http_req_closed(held), 1);
    http_reply(held, 200, NULL, "late", 4); /* dropped, the request is freed */
    held = NULL;
}

static void on_gone(http_req *req)
{
    CHECK(req == held);
    closed_calls++;
}

static void h_hold(http_req *req, void *ud)
{
    (void)ud;
    held = req;
    http_req_on_done(req, observe, &done_status);
    http_req_on_close(req, on_gone);
}

static void h_delay(http_req *req, void *ud)
{
    (void)ud;
    held = req;
    http_req_on_done(req, observe, &done_status);
    uv_timer_start(&later_timer, reply_held, 0, 0);
}

static void reply_after(uv_timer_t *t)
{
    (void)t;
    http_reply(held, 201, "text/plain", "done", 4);
    held = NULL;
}

static void h_timed(http_req *req, void *ud)
{
    (void)ud;
    held = req;
    http_req_on_done(req, observe, &done_status);
    uv_timer_start(&later_timer, reply_after, 120, 0);
}

static void observer_and_client_gone(void)
{
    int port;
    http_server *srv = serve(h_timed, NULL, &port, NULL);
    static client c;
    client_aim(&c, port, "GET /t HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    run_client(&c);
    CHECK_INT(done_status, 201);
    CHECK(done_secs >= 0.1 && done_secs < 2.0);
    http_server_free(srv);
    run_until_closed();

    /* the client leaves while the handler still works: on_close, then the late reply */
    srv = serve(h_hold, NULL, &port, NULL);
    static client c2 = {.leave_after_ms = 100};
    client_aim(&c2, port, c.req);
    done_status = -1;
    run_client(&c2);
    for (int i = 0; i < 50 && closed_calls == 0; i++)
        uv_run(loop, UV_RUN_ONCE);
    CHECK_INT(closed_calls, 1);
    CHECK(held != NULL);
    uv_timer_start(&later_timer, reply_held, 0, 0);
    while (held != NULL)
        uv_run(loop, UV_RUN_NOWAIT);
    CHECK_INT(done_status, 200);
    http_server_free(srv);
    run_until_closed();
    (void)h_delay;
}

/* ---- framing of streamed responses */

static void h_frames(http_req *req, void *ud)
{
    (void)ud;
    if (strcmp(http_req_path(req), "/short") == 0) {
        http_resp_start(req, 200, 10);
        http_resp_write(req, "abc", 3, NULL, NULL); /* 7 bytes short: must close */
        http_resp_end(req);
    } else {
        http_resp_start(req, 200, 4);
        http_resp_write(req, "abcdefgh", 8, NULL, NULL); /* never more than announced */
        http_resp_end(req);
    }
}

static void response_framing(void)
{
    int port;
    http_server *srv = serve(h_frames, NULL, &port, NULL);
    static client c;
    client_aim(&c, port,
               "GET /long HTTP/1.1\r\nHost: h\r\n\r\nHEAD /long HTTP/1.1\r\nHost: h\r\n\r\n"
               "GET /short HTTP/1.1\r\nHost: h\r\n\r\nGET /never HTTP/1.1\r\nHost: h\r\n\r\n");
    run_client(&c);
    const char *first = strstr(c.resp, "\r\n\r\nabcdHTTP/1.1 200 OK");
    CHECK(first != NULL);
    /* HEAD: headers only, then the short one which closes the connection */
    const char *second = first ? strstr(first + 8, "Content-Length: 4\r\n") : NULL;
    CHECK(second != NULL);
    const char *third = second ? strstr(second, "Content-Length: 10\r\n") : NULL;
    CHECK(third != NULL);
    CHECK(c.rlen > 3 && strcmp(c.resp + c.rlen - 3, "abc") == 0); /* then EOF, no 4th */
    http_server_free(srv);
    run_until_closed();
}

/* ---- drain and free with requests in flight */

static int drained;

static void on_drained(http_server *srv, void *ud)
{
    (void)srv;
    CHECK(ud == &drained);
    drained++;
}

static void drain_and_free(void)
{
    int port;
    http_server *srv = serve(h_hold, NULL, &port, NULL);
    http_server_drain(srv, 100, on_drained, &drained);
    for (int i = 0; i < 20 && !drained; i++)
        uv_run(loop, UV_RUN_ONCE);
    CHECK_INT(drained, 1); /* nothing in flight: done at once */
    http_server_free(srv);
    run_until_closed();

    /* a request in flight when the drain times out: closed, the handler told */
    srv = serve(h_hold, NULL, &port, NULL);
    static client c = {.leave_after_ms = 300};
    client_aim(&c, port, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
    closed_calls = 0;
    drained = 0;
    start_client(&c);
    while (held == NULL)
        uv_run(loop, UV_RUN_ONCE);
    http_server_drain(srv, 50, on_drained, &drained);
    while (!drained)
        uv_run(loop, UV_RUN_ONCE);
    CHECK_INT(closed_calls, 1);
    CHECK_INT(http_server_connections(srv), 0);
    wait_client(&c);
    http_reply(held, 200, NULL, "x", 1);
    held = NULL;

    /* free with a request in flight: the later reply is dropped */
    http_server_free(srv);
    run_until_closed();
    srv = serve(h_hold, NULL, &port, NULL);
    static client c3 = {.leave_after_ms = 200};
    client_aim(&c3, port, c.req);
    start_client(&c3);
    while (held == NULL)
        uv_run(loop, UV_RUN_ONCE);
    http_server_free(srv);
    run_until_closed();
    http_reply(held, 200, NULL, "x", 1);
    held = NULL;
    wait_client(&c3);
}

/* ---- TLS: the transport seam (http_transport.c) under pipelining, a large response
 * (several records in one write), a chunked one, and close_notify on Connection: close */

static void h_tls(http_req *req, void *ud)
{
    (void)ud;
    static char big[100000];
    memset(big, 'x', sizeof big);
    if (strcmp(http_req_path(req), "/big") == 0) {
        http_reply(req, 200, "text/plain", big, sizeof big);
    } else if (strcmp(http_req_path(req), "/chunked") == 0) {
        http_resp_start(req, 200, -1);
        http_resp_write(req, "hello ", 6, NULL, NULL);
        http_resp_write(req, "tls", 3, NULL, NULL);
        http_resp_end(req);
    } else {
        http_reply(req, 200, "text/plain", http_req_is_tls(req) ? "tls" : "pln", 3);
    }
}

/* Python's ssl client: sends c->req, reads until the end and says how it ended: "EOF
 * close_notify" (a clean TLS close) or "EOF ragged" (TCP closed without close_notify). */
static void *tls_client_main(void *arg)
{
    client *c = arg;
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "python3 -c '\n"
             "import socket, ssl, sys\n"
             "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n"
             "ctx.check_hostname = False\n"
             "ctx.verify_mode = ssl.CERT_NONE\n"
             "s = ctx.wrap_socket(socket.create_connection((\"127.0.0.1\", %d), timeout=5),"
             " suppress_ragged_eofs=False)\n"
             "s.sendall(bytes.fromhex(sys.argv[1]))\n"
             "data = b\"\"\n"
             "try:\n"
             "    while True:\n"
             "        d = s.recv(65536)\n"
             "        if not d:\n"
             "            end = b\"close_notify\"\n"
             "            break\n"
             "        data += d\n"
             "except ssl.SSLEOFError:\n"
             "    end = b\"ragged\"\n"
             "sys.stdout.buffer.write(data + b\"EOF \" + end)\n"
             "' ",
             c->port);
    size_t n = strlen(cmd);
    for (size_t i = 0; i < c->len && n + 3 < sizeof cmd; i++)
        n += (size_t)snprintf(cmd + n, sizeof cmd - n, "%02x", (unsigned char)c->req[i]);
    FILE *f = popen(cmd, "r");
    if (f) {
        c->rlen = fread(c->resp, 1, sizeof c->resp - 1, f);
        pclose(f);
    }
    c->resp[c->rlen] = '\0';
    __atomic_store_n(&c->finished, 1, __ATOMIC_RELEASE);
    uv_async_send(&client_done);
    return NULL;
}

static void tls_transport(void)
{
    char dir[] = "/tmp/test_http_server_XXXXXX", crt[64], key[64], cmd[512];
    if (!mkdtemp(dir)) {
        CHECK(!"mkdtemp");
        return;
    }
    snprintf(crt, sizeof crt, "%s/ec.crt", dir);
    snprintf(key, sizeof key, "%s/ec.key", dir);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=localhost -keyout %s -out %s 2>/dev/null",
             key, crt);
    CHECK_INT(system(cmd), 0);
    char err[256] = "";
    tls_server_opts to = {.cert_file = crt, .key_file = key};
    tls_server *ts = tls_server_new(&to, err, sizeof err);
    CHECK(ts != NULL);
    if (!ts) {
        printf("  tls_server_new: %s\n", err);
        return;
    }
    http_server_opts o = {0};
    o.handler = h_tls;
    o.tls = ts;
    http_server *srv = http_server_new(loop, &o);
    int port, fd = listen_in_range(&port);
    CHECK_INT(http_server_listen_fd(srv, fd), 0);

    static client c;
    client_aim(&c, port,
               "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /big HTTP/1.1\r\nHost: h\r\n\r\n"
               "GET /chunked HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    pthread_create(&c.thread, NULL, tls_client_main, &c);
    wait_client(&c);
    pthread_join(c.thread, NULL);
    const char *a = strstr(c.resp, "\r\n\r\ntls");
    CHECK(a != NULL);
    const char *big = a ? strstr(a, "Content-Length: 100000\r\n\r\nxxxx") : NULL;
    CHECK(big != NULL);
    if (big) {
        const char *body = strstr(big, "\r\n\r\n") + 4;
        size_t i = 0;
        while (body[i] == 'x')
            i++;
        CHECK_INT(i, 100000);
        CHECK(strncmp(body + i, "HTTP/1.1 200 OK\r\n", 17) == 0);
    }
    const char *ch = big ? strstr(big, "Transfer-Encoding: chunked\r\n") : NULL;
    CHECK(ch != NULL);
    CHECK(ch && strstr(ch, "Connection: close\r\n") != NULL);
    CHECK(ch && strstr(ch, "\r\n\r\n6\r\nhello \r\n3\r\ntls\r\n0\r\n\r\nEOF close_notify") != NULL);
    if (!ch)
        printf("  got %zu bytes: %.300s\n", c.rlen, c.resp);
    http_server_free(srv);
    run_until_closed();
    tls_server_free(ts);
    unlink(crt);
    unlink(key);
    rmdir(dir);
}

/* A header value is refused for a control byte (but tab) or DEL wherever it stands: every
 * byte value at every place of values 1 to 40 bytes long, against the rule itself. */
static void field_value_every_byte_everywhere(void)
{
    char v[40];
    int wrong = 0;
    for (size_t n = 1; n <= sizeof v; n++) {
        for (size_t at = 0; at < n; at++) {
            for (unsigned b = 0; b < 256; b++) {
                memset(v, 'a', n);
                v[(at + 3) % n] = (char)0xc3; /* obs-text beside it */
                v[at] = (char)b;
                int want = (b >= 0x20 || b == '\t') && b != 0x7f;
                wrong += http_syntax_field_value(v, n) != want;
            }
        }
    }
    CHECK_INT(wrong, 0);
    CHECK(http_syntax_field_value("", 0));
    static const char ok[] = "tab\tand \x80\xff obs-text, 0123456789";
    CHECK(http_syntax_field_value(ok, sizeof ok - 1));
    CHECK(!http_syntax_field_value(ok, sizeof ok)); /* with its NUL */
}

int main(void)
{
    test_suite = "http_server";
    srand((unsigned)getpid());
    crypto_init();
    loop = uv_default_loop();
    uv_async_init(loop, &client_done, on_client_done);
    uv_unref((uv_handle_t *)&client_done);
    uv_timer_init(loop, &later_timer);
    uv_unref((uv_handle_t *)&later_timer);
    RUN(field_value_every_byte_everywhere);
    RUN(listen_errors_and_reuseport);
    RUN(ipv6_loopback);
    RUN(accessors_and_204);
    RUN(body_read_later_with_continue);
    RUN(observer_and_client_gone);
    RUN(response_framing);
    RUN(drain_and_free);
    RUN(tls_transport);
    uv_close((uv_handle_t *)&client_done, NULL);
    uv_close((uv_handle_t *)&later_timer, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK_INT(uv_loop_close(loop), 0);
    return TEST_EXIT();
}
