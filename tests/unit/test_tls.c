/* test_tls: common/tls.c driven by real `openssl s_client` processes over loopback TCP:
 * handshake and data with ECDSA and RSA certificates, the cipher policy (server order, AEAD
 * only, TLS 1.2 only), ALPN, and session tickets accepted by a second server instance that
 * shares the ticket keys (as the gateway's workers do). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"
#include "tls.h"

#define PORT 25011

static char dir[] = "/tmp/test_tls_XXXXXX";
static char path_ec_crt[256], path_ec_key[256], path_rsa_crt[256], path_rsa_key[256];
static char path_sess[256], path_out[256];
static int listen_fd = -1;

static tls_ticket_key keys_a[2], keys_b[1];
static size_t nkeys_a = 1;

static size_t keys_fn(void *ud, tls_ticket_key *out, size_t max)
{
    (void)max;
    if (ud == keys_a) {
        memcpy(out, keys_a, sizeof(tls_ticket_key) * nkeys_a);
        return nkeys_a;
    }
    memcpy(out, keys_b, sizeof keys_b);
    return 1;
}

static tls_server *server(tls_ticket_key *keys)
{
    char err[256];
    tls_server_opts o = {path_ec_crt, path_ec_key, path_rsa_crt, path_rsa_key, keys_fn, keys, 0};
    tls_server *s = tls_server_new(&o, err, sizeof err);
    if (!s)
        printf("  tls_server_new: %s\n", err);
    return s;
}

static void flush(tls_conn *c, int fd)
{
    char *out;
    size_t n = tls_conn_take_out(c, &out);
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, out + off, n - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    free(out);
}

/* Runs s_client with args against srv; serves "ping" -> "pong". Returns 1 when the server
 * side answered; *resumed tells whether the handshake was resumed. out holds s_client output. */
static int run(tls_server *srv, const char *args, int *resumed, char *out, size_t outcap)
{
    pid_t pid = fork();
    if (pid == 0) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "printf 'ping\\n' | timeout 10 openssl s_client -connect 127.0.0.1:%d -ign_eof "
                 "-servername localhost %s >%s 2>&1",
                 PORT, args, path_out);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int answered = 0;
    struct pollfd pf = {listen_fd, POLLIN, 0};
    if (poll(&pf, 1, 10000) == 1) {
        int fd = accept(listen_fd, NULL, NULL);
        tls_conn *c = tls_conn_new(srv);
        char buf[4096], plain[4096];
        size_t got = 0;
        for (;;) {
            struct pollfd cf = {fd, POLLIN, 0};
            if (poll(&cf, 1, 10000) != 1)
                break;
            ssize_t r = read(fd, buf, sizeof buf);
            if (r <= 0)
                break;
            tls_conn_feed(c, buf, (size_t)r);
            int n, stop = 0;
            while ((n = tls_conn_read(c, plain + got, sizeof plain - got - 1)) > 0)
                got += (size_t)n;
            flush(c, fd);
            if (n == TLS_ERROR || n == TLS_CLOSED)
                stop = 1;
            plain[got] = '\0';
            if (strstr(plain, "ping\n")) {
                tls_conn_write(c, "pong\n", 5);
                tls_conn_close_notify(c);
                flush(c, fd);
                answered = 1;
                stop = 1;
            }
            if (stop)
                break;
        }
        *resumed = tls_conn_resumed(c);
        tls_conn_free(c);
        close(fd);
    }
    int st;
    waitpid(pid, &st, 0);
    FILE *f = fopen(path_out, "r");
    size_t n = f ? fread(out, 1, outcap - 1, f) : 0;
    out[n] = '\0';
    if (f)
        fclose(f);
    return answered;
}

static char out[65536];

/* A TLS 1.2 handshake with s that saves ("out") or offers ("in") the session in path_sess. */
static int ticket_run(tls_server *s, const char *sess, int *resumed)
{
    char args[512];
    snprintf(args, sizeof args, "-tls1_2 -sess_%s %s", sess, path_sess);
    return run(s, args, resumed, out, sizeof out);
}

static void ecdsa_first_in_server_order(void)
{
    tls_server *s = server(keys_a);
    CHECK(s != NULL);
    int resumed = -1;
    CHECK(run(s, "-alpn http/1.1", &resumed, out, sizeof out));
    CHECK(strstr(out, "pong") != NULL);
    CHECK(strstr(out, "TLSv1.2") != NULL);
    CHECK(strstr(out, "ECDHE-ECDSA-CHACHA20-POLY1305") != NULL);
    CHECK(strstr(out, "ALPN protocol: http/1.1") != NULL);
    CHECK_INT(resumed, 0);
    tls_server_free(s);
}

static void server_order_wins(void)
{
    tls_server *s = server(keys_a);
    int resumed;
    CHECK(run(s, "-tls1_2 -cipher ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256",
              &resumed, out, sizeof out));
    CHECK(strstr(out, "ECDHE-ECDSA-AES128-GCM-SHA256") != NULL);
    tls_server_free(s);
}

static void rsa_certificate(void)
{
    tls_server *s = server(keys_a);
    int resumed;
    CHECK(run(s, "-tls1_2 -cipher ECDHE-RSA-AES256-GCM-SHA384", &resumed, out, sizeof out));
    CHECK(strstr(out, "ECDHE-RSA-AES256-GCM-SHA384") != NULL);
    CHECK(strstr(out, "pong") != NULL);
    tls_server_free(s);
}

static void refuses_cbc_and_rsa_kx(void)
{
    tls_server *s = server(keys_a);
    int resumed;
    CHECK(!run(s, "-tls1_2 -cipher AES128-SHA256:AES128-GCM-SHA256:ECDHE-RSA-AES128-SHA256",
               &resumed, out, sizeof out));
    CHECK(strstr(out, "pong") == NULL);
    tls_server_free(s);
}

static void refuses_tls13_only_client(void)
{
    tls_server *s = server(keys_a);
    int resumed;
    CHECK(!run(s, "-tls1_3", &resumed, out, sizeof out));
    tls_server_free(s);
}

static void ticket_resumes_on_other_server(void)
{
    tls_server *a = server(keys_a), *b = server(keys_a);
    int resumed = -1;
    CHECK(ticket_run(a, "out", &resumed));
    CHECK_INT(resumed, 0);
    CHECK(ticket_run(b, "in", &resumed));
    CHECK_INT(resumed, 1);
    CHECK(strstr(out, "Reused, TLSv1.2") != NULL);
    tls_server_free(a);
    tls_server_free(b);
}

static void rotated_key_still_opens_old_tickets(void)
{
    tls_server *a = server(keys_a);
    int resumed = -1;
    CHECK(ticket_run(a, "out", &resumed));
    /* Rotate: a new sealing key, the old one kept for opening. */
    keys_a[1] = keys_a[0];
    memset(keys_a[0].name, 0x77, 16);
    nkeys_a = 2;
    CHECK(ticket_run(a, "in", &resumed));
    CHECK_INT(resumed, 1);
    nkeys_a = 1;
    tls_server_free(a);
}

static void unknown_key_falls_back_to_full_handshake(void)
{
    tls_server *a = server(keys_a), *b = server(keys_b);
    int resumed = -1;
    CHECK(ticket_run(a, "out", &resumed));
    CHECK(ticket_run(b, "in", &resumed));
    CHECK_INT(resumed, 0);
    CHECK(strstr(out, "pong") != NULL);
    CHECK(strstr(out, "New, TLSv1.2") != NULL);
    tls_server_free(a);
    tls_server_free(b);
}

static void bad_key_file_is_an_error(void)
{
    char err[256] = "";
    tls_server_opts o = {path_ec_crt, "/nonexistent.key", NULL, NULL, NULL, NULL, 0};
    CHECK(tls_server_new(&o, err, sizeof err) == NULL);
    CHECK(strstr(err, "/nonexistent.key") != NULL);
}

int main(void)
{
    test_suite = "tls";
    signal(SIGPIPE, SIG_IGN);
    if (!mkdtemp(dir))
        return 1;
    snprintf(path_ec_crt, sizeof path_ec_crt, "%s/ec.crt", dir);
    snprintf(path_ec_key, sizeof path_ec_key, "%s/ec.key", dir);
    snprintf(path_rsa_crt, sizeof path_rsa_crt, "%s/rsa.crt", dir);
    snprintf(path_rsa_key, sizeof path_rsa_key, "%s/rsa.key", dir);
    snprintf(path_sess, sizeof path_sess, "%s/sess.pem", dir);
    snprintf(path_out, sizeof path_out, "%s/out.txt", dir);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=localhost -keyout %s -out %s 2>/dev/null && "
             "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
             "-keyout %s -out %s 2>/dev/null",
             path_ec_key, path_ec_crt, path_rsa_key, path_rsa_crt);
    if (system(cmd) != 0) {
        printf("FAIL tls/setup: openssl could not make certificates\n");
        return 1;
    }
    memset(keys_a[0].name, 0xaa, 16);
    memset(keys_a[0].key, 0x11, 32);
    memset(keys_b[0].name, 0xbb, 16);
    memset(keys_b[0].key, 0x22, 32);

    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(PORT)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(listen_fd, 8) != 0) {
        printf("FAIL tls/setup: bind %d: %s\n", PORT, strerror(errno));
        return 1;
    }

    RUN(ecdsa_first_in_server_order);
    RUN(server_order_wins);
    RUN(rsa_certificate);
    RUN(refuses_cbc_and_rsa_kx);
    RUN(refuses_tls13_only_client);
    RUN(ticket_resumes_on_other_server);
    RUN(rotated_key_still_opens_old_tickets);
    RUN(unknown_key_falls_back_to_full_handshake);
    RUN(bad_key_file_is_an_error);

    close(listen_fd);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("  could not remove %s\n", dir);
    return TEST_EXIT();
}
