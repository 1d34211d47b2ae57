/* test_gateway: the gateway's pure parts: INI config parsing and validation, path
 * normalization, longest-prefix routing and the never-routed paths, the shared leaky-bucket
 * rate limit (also across processes), gzip negotiation and round-trip, CIDR matching. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "../../gateway/gw_config.h"
#include "../../gateway/gzip.h"
#include "../../gateway/builtin.h"
#include "../../gateway/route.h"
#include "../../gateway/ratelimit.h"
#include "../../gateway/shm.h"
#include "http_headers.h"
#include "test.h"

static char ini_path[] = "/tmp/test_gateway_XXXXXX";

static int write_ini(const char *text)
{
    FILE *f = fopen(ini_path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    fclose(f);
    return 0;
}

static gw_config cfg;

static void config_full(void)
{
    write_ini("[gateway]\nworkers = 3\nhttp = 127.0.0.1:8080\nhttps = 0.0.0.0:8443\n"
              "cert = /c.pem\nkey = /k.pem\naccess_log = off\ntrusted_proxies = 10.0.0.0/8, ::1\n"
              "http_redirect = off\n"
              "[upstream auth]\nservers = svc-auth:3000\nresolve_every = 2s\n"
              "[upstream storage]\nservers = 127.0.0.1:1,127.0.0.1:2\nhealth_check = off\n"
              "[route /auth/]\nupstream = auth\nrate = 10r/s\nburst = 5\ngzip = off\n"
              "[route /documents]\nupstream = storage\nmax_body = 50m\nrate = off\n"
              "[route /]\nupstream = auth\n");
    char err[256];
    CHECK_INT(gw_config_load(ini_path, &cfg, err, sizeof err), 0);
    CHECK_INT(cfg.workers, 3);
    CHECK_STR(cfg.http_host, "127.0.0.1");
    CHECK_INT(cfg.http_port, 8080);
    CHECK_INT(cfg.https_port, 8443);
    CHECK_INT(cfg.access_log, 0);
    CHECK_INT(cfg.http_redirect, 0);
    CHECK_INT(cfg.ntrusted, 2);
    CHECK_INT(cfg.nupstreams, 2);
    CHECK_INT(cfg.upstreams[0].resolve_every_ms, 2000);
    CHECK_STR(cfg.upstreams[0].health_path, "/health");
    CHECK_STR(cfg.upstreams[1].health_path, "");
    CHECK_INT(cfg.nroutes, 3);
    CHECK(cfg.routes[0].rate_per_s == 10.0);
    CHECK_INT(cfg.routes[0].burst, 5);
    CHECK_INT(cfg.routes[0].gzip, 0);
    CHECK_INT(cfg.routes[1].max_body, 50 * 1024 * 1024);
    CHECK_INT(cfg.routes[1].rate_off, 1);
    CHECK_INT(cfg.routes[1].upstream_idx, 1);
    CHECK_INT(cfg.routes[2].max_body, 1024 * 1024);                            /* nginx's default */
    CHECK(cfg.routes[2].rate_per_s > 1.66 && cfg.routes[2].rate_per_s < 1.67); /* 100r/m */
    CHECK_INT(cfg.routes[2].burst, 20);
}

static void config_errors(void)
{
    char err[256];
    write_ini("[gateway]\nhttp = 127.0.0.1:8080\nwokers = 2\n");
    CHECK(gw_config_load(ini_path, &cfg, err, sizeof err) != 0);
    CHECK(strstr(err, "wokers") != NULL);
    write_ini("[gateway]\nhttp = 127.0.0.1:8080\n[route /x/]\nupstream = nope\n");
    CHECK(gw_config_load(ini_path, &cfg, err, sizeof err) != 0);
    CHECK(strstr(err, "nope") != NULL);
    write_ini("[gateway]\nhttps = 127.0.0.1:8443\n");
    CHECK(gw_config_load(ini_path, &cfg, err, sizeof err) != 0);
    write_ini("[gateway]\nhttp = 127.0.0.1:8080\n[route /x/]\nrate = 5 per minute\n");
    CHECK(gw_config_load(ini_path, &cfg, err, sizeof err) != 0);
    CHECK(gw_config_load("/nonexistent.ini", &cfg, err, sizeof err) != 0);
}

static const char *norm(const char *in)
{
    static char out[512];
    if (gw_path_normalize(in, out, sizeof out) != 0)
        return "ERR";
    return out;
}

static void path_normalization(void)
{
    CHECK_STR(norm("/"), "/");
    CHECK_STR(norm("//auth///me"), "/auth/me");
    CHECK_STR(norm("/auth/./me"), "/auth/me");
    CHECK_STR(norm("/auth/x/../me"), "/auth/me");
    CHECK_STR(norm("/auth/me/"), "/auth/me/");
    CHECK_STR(norm("/auth/%2e%2E/internal/x"), "/internal/x");
    CHECK_STR(norm("/a/.%2e/b"), "/b");
    CHECK_STR(norm("/a/%2F/b"), "/a/%2F/b"); /* encoded slashes stay */
    CHECK_STR(norm("/a/b/.."), "/a/");
    CHECK_STR(norm("/.."), "ERR");
    CHECK_STR(norm("/a/../../b"), "ERR");
    CHECK_STR(norm("*"), "ERR");
    CHECK_STR(norm("/a%00b"), "ERR");
    CHECK_STR(norm("http://example.com/x//y"), "/x/y");
}

static void routing(void)
{
    config_full();
    CHECK_STR(gw_route_match(&cfg, "/auth/login")->prefix, "/auth/");
    CHECK_STR(gw_route_match(&cfg, "/documents")->prefix, "/documents");
    CHECK_STR(gw_route_match(&cfg, "/documents/12")->prefix, "/documents");
    CHECK_STR(gw_route_match(&cfg, "/documentsX")->prefix, "/"); /* a whole segment only */
    CHECK_STR(gw_route_match(&cfg, "/auth")->prefix, "/");
    CHECK(gw_path_blocked("/internal/service-token"));
    CHECK(gw_path_blocked("/internal"));
    CHECK(gw_path_blocked("/livez"));
    CHECK(gw_path_blocked("/metrics"));
    CHECK(!gw_path_blocked("/metricsx"));
    CHECK(!gw_path_blocked("/auth/internal"));
}

/* The one table of header names (common/http_headers.c) that the proxy's filters use. */
static void header_table(void)
{
    static const char *hop[] = {
        "Connection",        "keep-alive", "Proxy-Connection",   "TE",   "Trailer",
        "Transfer-Encoding", "Upgrade",    "Content-Length",     "HOST", "Date",
        "X-Request-ID",      "Expect",     "Proxy-Authorization"};
    for (size_t i = 0; i < sizeof hop / sizeof hop[0]; i++)
        CHECK(http_headers_hop(hop[i], NULL));
    CHECK(!http_headers_hop("Authorization", NULL));
    CHECK(!http_headers_hop("Content-Type", NULL));
    CHECK(http_headers_hop("X-Secret", "keep-alive, x-secret")); /* named by Connection */
    CHECK(!http_headers_hop("X-Secret", "x-secretive"));
    CHECK(http_headers_flags("x-forwarded-for") & HTTP_HDR_FORWARDING);
    CHECK(http_headers_flags("Forwarded") & HTTP_HDR_FORWARDING);
    CHECK(http_headers_flags("X-Frame-Options") & HTTP_HDR_SECURITY);
    CHECK(http_headers_flags("content-length") & HTTP_HDR_FRAMING);
    CHECK_INT(http_headers_flags("X-Instance"), 0);
    /* the first and last entries of the table, any case; near misses; odd first bytes */
    CHECK_INT(http_headers_flags("CONNECTION"), HTTP_HDR_HOP);
    CHECK_INT(http_headers_flags("X-Request-Id"), HTTP_HDR_REPLACED);
    CHECK_INT(http_headers_flags("Te"), HTTP_HDR_HOP);
    CHECK_INT(http_headers_flags("Trailers"), HTTP_HDR_HOP);
    CHECK_INT(http_headers_flags("Transfer-Encoding"), HTTP_HDR_FRAMING);
    CHECK_INT(http_headers_flags("X-Forwarded-Fox"), 0);
    CHECK_INT(http_headers_flags("Conneclion"), 0);
    CHECK_INT(http_headers_flags("Hosts"), 0);
    CHECK_INT(http_headers_flags(""), 0);
    CHECK_INT(http_headers_flags("~connection"), 0);
    CHECK_INT(http_headers_flags("\xc3onnection"), 0);
    CHECK(http_headers_list_has(" close ,foo", "close"));
    CHECK(!http_headers_list_has(NULL, "close"));
}

/* The master publishes upstream health; workers read it without a lock on every pick. */
static void shared_health_read_without_lock(void)
{
    int fd;
    gw_shm *s = gw_shm_create(&fd);
    CHECK(s != NULL);
    struct sockaddr_in a, b;
    uv_ip4_addr("127.0.0.1", 3001, &a);
    uv_ip4_addr("127.0.0.1", 3002, &b);
    unsigned healthy = 9, total = 9;
    CHECK_INT(gw_shm_upstream_counts(s, "api", &healthy, &total), -1); /* not published */
    CHECK_INT(gw_shm_peer_down(s, 0, "api", (struct sockaddr *)&a), 0);
    static gw_shm_upstream ups[1];
    snprintf(ups[0].name, sizeof ups[0].name, "api");
    ups[0].healthy = 1;
    ups[0].total = 2;
    ups[0].npeers = 2;
    memcpy(&ups[0].peers[0].sa, &a, sizeof a);
    ups[0].peers[0].healthy = 0;
    memcpy(&ups[0].peers[1].sa, &b, sizeof b);
    ups[0].peers[1].healthy = 1;
    gw_shm_publish_health(s, ups, 1);
    CHECK_INT(gw_shm_upstream_counts(s, "api", &healthy, &total), 0);
    CHECK_INT(healthy, 1);
    CHECK_INT(total, 2);
    CHECK_INT(gw_shm_peer_down(s, 0, "api", (struct sockaddr *)&a), 1);
    CHECK_INT(gw_shm_peer_down(s, 0, "api", (struct sockaddr *)&b), 0);
    CHECK_INT(gw_shm_peer_down(s, 0, "other", (struct sockaddr *)&a), 0); /* newer config */
    CHECK_INT(gw_shm_peer_down(s, 1, "api", (struct sockaddr *)&a), 0);
    /* a master that died while writing: readers give up, they never spin forever */
    atomic_fetch_add(&s->health_seq, 1);
    CHECK_INT(gw_shm_peer_down(s, 0, "api", (struct sockaddr *)&a), 0);
    CHECK_INT(gw_shm_upstream_counts(s, "api", &healthy, &total), -1);
    munmap(s, sizeof *s);
    close(fd);
}

static void rate_limit_leaky_bucket(void)
{
    int fd;
    gw_shm *s = gw_shm_create(&fd);
    CHECK(s != NULL);
    /* 1 r/s with burst 3: 4 admitted at once (1 + burst), the 5th refused. */
    unsigned r[6];
    for (int i = 0; i < 6; i++)
        r[i] = gw_ratelimit_check(s, 0, "192.0.2.1", 1.0, 3);
    CHECK_INT(r[0], 0);
    CHECK_INT(r[3], 0);
    CHECK(r[4] >= 1 && r[4] <= 2);
    CHECK(r[5] >= 1);
    /* Another address and another route have their own buckets. */
    CHECK_INT(gw_ratelimit_check(s, 0, "192.0.2.2", 1.0, 3), 0);
    CHECK_INT(gw_ratelimit_check(s, 1, "192.0.2.1", 1.0, 3), 0);
    /* The bucket leaks: after 1.1 s one more is admitted. */
    usleep(1100 * 1000);
    CHECK_INT(gw_ratelimit_check(s, 0, "192.0.2.1", 1.0, 3), 0);
    CHECK(gw_ratelimit_check(s, 0, "192.0.2.1", 1.0, 3) > 0);
    /* Shared: a child process that maps the same memory sees the same bucket. */
    pid_t pid = fork();
    if (pid == 0) {
        gw_shm *c = gw_shm_attach(fd);
        _exit(c && gw_ratelimit_check(c, 0, "192.0.2.1", 1.0, 3) > 0 ? 0 : 1);
    }
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* Connection counts per address across worker slots, and a dead slot cleared. */
    CHECK_INT(gw_shm_conn_inc(s, 0, "192.0.2.9"), 1);
    CHECK_INT(gw_shm_conn_inc(s, 1, "192.0.2.9"), 2);
    gw_shm_conn_dec(s, 0, "192.0.2.9");
    CHECK_INT(gw_shm_conn_inc(s, 0, "192.0.2.9"), 2);
    gw_shm_conn_clear_slot(s, 1);
    CHECK_INT(gw_shm_conn_inc(s, 2, "192.0.2.9"), 2);
    close(fd);
}

static void gzip_negotiation_and_roundtrip(void)
{
    CHECK(gw_gzip_accepted("gzip, deflate, br"));
    CHECK(gw_gzip_accepted("br;q=1.0, gzip;q=0.5"));
    CHECK(!gw_gzip_accepted("gzip;q=0"));
    CHECK(!gw_gzip_accepted("identity"));
    CHECK(gw_gzip_accepted("*"));
    CHECK(!gw_gzip_accepted(NULL));
    CHECK(gw_gzip_type_ok("application/json"));
    CHECK(gw_gzip_type_ok("application/json; charset=utf-8"));
    CHECK(gw_gzip_type_ok("text/html"));
    CHECK(gw_gzip_type_ok("image/svg+xml"));
    CHECK(!gw_gzip_type_ok("image/png"));
    CHECK(!gw_gzip_type_ok("application/jsonx"));
    /* Streaming in pieces, then inflated back with zlib. */
    char in[100000];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = "{\"a\":12345,\"b\":\"text\"}"[i % 22];
    gw_gzip *z = gw_gzip_new(1);
    char *all = NULL;
    size_t alllen = 0;
    for (size_t off = 0; off <= sizeof in; off += 30000) {
        size_t n = sizeof in - off < 30000 ? sizeof in - off : 30000;
        char *out;
        size_t outlen;
        CHECK_INT(gw_gzip_push(z, in + off, n, off + 30000 > sizeof in, &out, &outlen), 0);
        all = realloc(all, alllen + outlen + 1);
        if (outlen)
            memcpy(all + alllen, out, outlen);
        alllen += outlen;
        free(out);
    }
    gw_gzip_free(z);
    CHECK(alllen > 0 && alllen < sizeof in / 10);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    inflateInit2(&zs, 15 + 16);
    char *back = malloc(sizeof in + 16);
    zs.next_in = (Bytef *)all;
    zs.avail_in = (uInt)alllen;
    zs.next_out = (Bytef *)back;
    zs.avail_out = sizeof in + 16;
    CHECK_INT(inflate(&zs, Z_FINISH), Z_STREAM_END);
    CHECK_INT(zs.total_out, sizeof in);
    CHECK(memcmp(back, in, sizeof in) == 0);
    inflateEnd(&zs);
    free(back);
    free(all);
}

static void cidrs(void)
{
    cidr_net l[3];
    const char *why;
    CHECK_INT(cidr_net_parse("10.0.0.0/8", &l[0], &why), 0);
    CHECK_INT(cidr_net_parse("2001:db8::/32", &l[1], &why), 0);
    CHECK_INT(cidr_net_parse("192.168.1.7", &l[2], &why), 0);
    CHECK(cidr_nets_match(l, 3, "10.1.2.3"));
    CHECK(cidr_nets_match(l, 3, "::ffff:10.9.9.9"));
    CHECK(cidr_nets_match(l, 3, "2001:db8:1::1"));
    CHECK(cidr_nets_match(l, 3, "192.168.1.7"));
    CHECK(!cidr_nets_match(l, 3, "192.168.1.8"));
    CHECK(!cidr_nets_match(l, 3, "11.0.0.1"));
    CHECK(cidr_net_parse("10.0.0.0/33", &l[0], &why) != 0);
    CHECK(cidr_net_parse("nonsense", &l[0], &why) != 0);
}

int main(void)
{
    test_suite = "gateway";
    int fd = mkstemp(ini_path);
    if (fd < 0)
        return 1;
    close(fd);
    RUN(config_full);
    RUN(config_errors);
    RUN(path_normalization);
    RUN(routing);
    RUN(header_table);
    RUN(shared_health_read_without_lock);
    RUN(rate_limit_leaky_bucket);
    RUN(gzip_negotiation_and_roundtrip);
    RUN(cidrs);
    unlink(ini_path);
    return TEST_EXIT();
}
