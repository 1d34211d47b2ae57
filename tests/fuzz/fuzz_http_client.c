/* fuzz_http_client: libFuzzer target for the HTTP client's response path (http_client.c:
 * status line, headers, Content-Length / chunked / close-delimited bodies, 1xx, HEAD, limits)
 * and its connection paths, over a real loopback TCP connection. A listening socket (with a
 * small receive buffer) stands in for the server: it accepts the client's connection, reads
 * its request head, then answers the fuzzer's bytes cut into writes and closes. Byte 0:
 *   bits 0-2  the cut (1, 2, 3, 7, 16, 64, 512 bytes or all at once); bit 3: HEAD;
 *   bits 4-5  how the server leaves: 0 close (FIN) after the answer, 1 reset (RST, SO_LINGER
 *             0) after it, 2 reset at a point byte 1 chooses, 3 reset at once, unread;
 *   bit 6     a streamed exchange (http_exchange_*, as the gateway proxies) with a 256 KiB
 *             chunked body the server never reads: its writes are pending when the reset
 *             comes; on_data pauses and a timer resumes (backpressure);
 *   bit 7     that exchange is aborted from inside its first on_data.
 * The checks: the exchange always ends, on_done comes once and after every write callback.
 * Each input gets a client of its own, freed afterwards, so no state carries over. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_client.h"
#include "http_syntax.h"

static uv_loop_t *loop;
static int listen_fd = -1;
static struct sockaddr_in addr;
static int done;

/* the streamed exchange */
#define FX_PIECES 16
static char fx_piece[16384];
static http_exchange *fx;  /* NULL once on_done ran */
static unsigned fx_writes; /* write callbacks still due */
static int fx_abort_in_data;
static uv_timer_t fx_resume;

static void fx_written(http_exchange *x, int status, void *ud)
{
    (void)x;
    (void)status;
    (void)ud;
    if (fx_writes == 0 || done)
        abort(); /* a write callback twice, or after on_done */
    fx_writes--;
}

static void fx_resume_cb(uv_timer_t *t)
{
    (void)t;
    if (fx)
        http_exchange_resume(fx);
}

static int fx_on_response(http_exchange *x, int status, const http_header *h, size_t n, void *ud)
{
    (void)x;
    (void)h;
    (void)n;
    (void)ud;
    if (status < 100 || status > 599)
        abort();
    return 0;
}

static void fx_on_data(http_exchange *x, const char *data, size_t len, void *ud)
{
    (void)ud;
    if (fx_abort_in_data) {
        fx_abort_in_data = 0;
        http_exchange_abort(x); /* on_done runs inside: x is gone after this */
        if (!done)
            abort();
        return;
    }
    if (len && (data[0] & 1)) {
        http_exchange_pause(x);
        uv_timer_start(&fx_resume, fx_resume_cb, 0, 0);
    }
}

static void fx_on_done(http_exchange *x, hc_err err, void *ud)
{
    (void)x;
    (void)err;
    (void)ud;
    if (done || fx_writes != 0)
        abort(); /* on_done twice, or before a write callback */
    fx = NULL;
    done = 1;
}

static const http_exchange_cbs fx_cbs = {NULL, fx_on_response, fx_on_data, fx_on_done};

static void fx_start(http_client *c, const char *method, int abort_in_data)
{
    fx_abort_in_data = abort_in_data;
    fx = http_exchange_start(c, (struct sockaddr *)&addr, method, "/", NULL, 0, -1, &fx_cbs, NULL);
    for (int i = 0; i < FX_PIECES && fx; i++) {
        if (http_exchange_write(fx, fx_piece, sizeof fx_piece, fx_written, NULL) != 0)
            abort();
        fx_writes++;
    }
    http_exchange_end_body(fx);
}

static void server_reset(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

static void fetched(hc_err err, const http_response *resp, void *ud)
{
    (void)ud;
    if (err == HC_OK && (resp->status < 200 || resp->status > 599))
        abort(); /* the client must never hand out an impossible status */
    for (size_t i = 0; err == HC_OK && i < resp->nheaders; i++) {
        const http_header *h = &resp->headers[i];
        if (!http_syntax_token(h->name, strlen(h->name)) ||
            !http_syntax_field_value(h->value, strlen(h->value)))
            abort(); /* nor a header that could not be relayed as it is ("Set Cookie") */
    }
    done = 1;
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the gateway: a write to a reset peer is an error */
    loop = uv_default_loop();
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int small = 4096; /* a request body the server does not read fills it: writes pend */
    setsockopt(listen_fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    if (bind(listen_fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listen_fd, 16) != 0)
        abort();
    socklen_t len = sizeof addr;
    getsockname(listen_fd, (struct sockaddr *)&addr, &len);
    fcntl(listen_fd, F_SETFL, O_NONBLOCK);
    uv_timer_init(loop, &fx_resume);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!loop)
        setup();
    if (size < 1)
        return 0;
    static const size_t cuts[] = {1, 2, 3, 7, 16, 64, 512, 1 << 20};
    size_t cut = cuts[data[0] & 7];
    int leave = (data[0] >> 4) & 3;
    int streamed = (data[0] >> 6) & 1;
    const char *method = (data[0] & 8) ? "HEAD" : streamed ? "POST" : "GET";
    int abort_in_data = data[0] >> 7;
    data++;
    size--;
    size_t stop_at = size;
    if (leave == 2) {
        if (size == 0)
            return 0;
        stop_at = (size - 1) * data[0] / 255;
        data++;
        size--;
    }

    http_client_opts o;
    http_client_opts_default(&o);
    o.max_response = 64 * 1024;
    o.read_timeout_ms = 500;
    http_client *c = http_client_new(loop, &o);
    done = 0;
    if (streamed)
        fx_start(c, method, abort_in_data);
    else
        http_client_fetch(c, (struct sockaddr *)&addr, method, "/", NULL, 0, NULL, 0, 1000, fetched,
                          NULL);

    int fd = -1;
    for (int i = 0; i < 2000 && fd < 0 && !done; i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        fd = accept(listen_fd, NULL, NULL);
        if (fd < 0)
            usleep(100);
    }
    if (fd >= 0 && leave == 3) {
        server_reset(fd);
        fd = -1;
    }
    if (fd >= 0) {
        char req[4096];
        for (int i = 0; i < 50; i++) { /* the request head (small): read what has come */
            uv_run(loop, UV_RUN_NOWAIT);
            ssize_t n = recv(fd, req, sizeof req, MSG_DONTWAIT);
            if (n > 0 && memmem(req, (size_t)n, "\r\n\r\n", 4))
                break;
            usleep(100);
        }
        for (size_t off = 0; off < stop_at && !done; off += cut) {
            size_t n = stop_at - off < cut ? stop_at - off : cut;
            if (send(fd, data + off, n, MSG_NOSIGNAL) < 0)
                break;
            uv_run(loop, UV_RUN_NOWAIT);
        }
        if (leave == 0)
            close(fd);
        else
            server_reset(fd);
    }
    for (int i = 0; i < 100000 && !done; i++)
        uv_run(loop, UV_RUN_ONCE);
    if (!done)
        abort(); /* the exchange must always end */
    uv_timer_stop(&fx_resume);
    http_client_free(c);
    uv_run(loop, UV_RUN_NOWAIT);
    return 0;
}
