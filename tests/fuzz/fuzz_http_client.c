/* fuzz_http_client: libFuzzer target for the HTTP client's response path (http_client.c:
 * status line, headers, Content-Length / chunked / close-delimited bodies, 1xx, HEAD, limits)
 * over a real loopback TCP connection. A listening socket stands in for the server: it
 * accepts the client's connection, reads its request, then answers the fuzzer's bytes cut into
 * writes (byte 0 picks the cut and the method) and closes. Each input gets a client of its
 * own, freed afterwards, so no state carries over. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
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
    loop = uv_default_loop();
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listen_fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listen_fd, 16) != 0)
        abort();
    socklen_t len = sizeof addr;
    getsockname(listen_fd, (struct sockaddr *)&addr, &len);
    fcntl(listen_fd, F_SETFL, O_NONBLOCK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!loop)
        setup();
    if (size < 1)
        return 0;
    static const size_t cuts[] = {1, 2, 3, 7, 16, 64, 512, 1 << 20};
    size_t cut = cuts[data[0] & 7];
    const char *method = (data[0] & 8) ? "HEAD" : "GET";
    data++;
    size--;

    http_client_opts o;
    http_client_opts_default(&o);
    o.max_response = 64 * 1024;
    o.read_timeout_ms = 500;
    http_client *c = http_client_new(loop, &o);
    done = 0;
    http_client_fetch(c, (struct sockaddr *)&addr, method, "/", NULL, 0, NULL, 0, 1000, fetched,
                      NULL);

    int fd = -1;
    for (int i = 0; i < 2000 && fd < 0 && !done; i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        fd = accept(listen_fd, NULL, NULL);
        if (fd < 0)
            usleep(100);
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
        for (size_t off = 0; off < size && !done; off += cut) {
            size_t n = size - off < cut ? size - off : cut;
            if (send(fd, data + off, n, MSG_NOSIGNAL) < 0)
                break;
            uv_run(loop, UV_RUN_NOWAIT);
        }
        close(fd);
    }
    for (int i = 0; i < 100000 && !done; i++)
        uv_run(loop, UV_RUN_ONCE);
    if (!done)
        abort(); /* the exchange must always end */
    http_client_free(c);
    uv_run(loop, UV_RUN_NOWAIT);
    return 0;
}
