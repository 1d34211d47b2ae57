/* healthcheck: a blocking HTTP/1.0 GET against the process's own port, for `--healthcheck`
 * (container HEALTHCHECK without curl). */
#include "healthcheck.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"

/* Waits for fd to be ready for events until deadline (ms on clock_mono_ms). */
static int healthcheck_wait(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = clock_mono_ms();
        if (now >= deadline)
            return -1;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)(deadline - now));
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

int healthcheck_get(int port, const char *path, unsigned timeout_ms)
{
    uint64_t deadline = clock_mono_ms() + timeout_ms;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int status = -1;
    char req[512], resp[64];
    int len = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (len <= 0 || (size_t)len >= sizeof req)
        goto out;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS)
        goto out;
    if (healthcheck_wait(fd, POLLOUT, deadline) != 0)
        goto out;
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0)
        goto out;
    for (int off = 0; off < len;) {
        ssize_t n = send(fd, req + off, (size_t)(len - off), MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            goto out;
        if (n > 0)
            off += (int)n;
        else if (healthcheck_wait(fd, POLLOUT, deadline) != 0)
            goto out;
    }
    size_t got = 0;
    while (got < sizeof resp - 1 && !memchr(resp, '\n', got)) {
        if (healthcheck_wait(fd, POLLIN, deadline) != 0)
            goto out;
        ssize_t n = recv(fd, resp + got, sizeof resp - 1 - got, 0);
        if (n == 0)
            break;
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            goto out;
        if (n > 0)
            got += (size_t)n;
    }
    resp[got] = '\0';
    int code;
    if (sscanf(resp, "HTTP/1.%*d %3d", &code) == 1 && code >= 100 && code <= 599)
        status = code;
out:
    close(fd);
    return status;
}

int healthcheck_main(int argc, char **argv, const char *port_env, const char *path)
{
    if (argc < 2 || strcmp(argv[1], "--healthcheck") != 0)
        return -1;
    const char *p = getenv(port_env);
    char *end;
    long port = p ? strtol(p, &end, 10) : 0;
    if (!p || *end || port < 1 || port > 65535) {
        fprintf(stderr, "healthcheck: %s must be the port to check\n", port_env);
        return 1;
    }
    int status = healthcheck_get((int)port, path, 3000);
    if (status < 0)
        printf("healthcheck: no answer on 127.0.0.1:%ld%s\n", port, path);
    else
        printf("healthcheck: %s on 127.0.0.1:%ld answered %d\n", path, port, status);
    return status == 200 ? 0 : 1;
}
