/* gw_config: parses the gateway's INI file with libinih into a gw_config. Unknown keys and
 * values that do not parse are errors: a typo must never run silently with another value. */
#include "gw_config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <ini.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "http_server.h"

typedef struct parse_ctx {
    gw_config *c;
    char *err;
    size_t errcap;
} parse_ctx;

static int set_str(char *dst, size_t cap, const char *v)
{
    size_t n = strlen(v);
    if (n >= cap)
        return -1;
    memcpy(dst, v, n + 1);
    return 0;
}

int gw_config_parse_rate(const char *s, double *per_s)
{
    char *end;
    double n = strtod(s, &end);
    if (end == s || n <= 0 || *end != 'r' || end[1] != '/')
        return -1;
    const char *unit = end + 2;
    if (strcmp(unit, "s") == 0)
        *per_s = n;
    else if (strcmp(unit, "m") == 0)
        *per_s = n / 60.0;
    else if (strcmp(unit, "h") == 0)
        *per_s = n / 3600.0;
    else
        return -1;
    return 0;
}

/* ---------------------------------------------------------------- value setters */

#define KEY_AT(k, obj, type) ((type *)(void *)((char *)(obj) + (k)->off))

static int set_string(const gw_key *k, void *obj, const char *v)
{
    return set_str(KEY_AT(k, obj, char), k->size, v);
}

static int set_uint(const gw_key *k, void *obj, const char *v)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || *end || n < k->min || n > k->max)
        return -1;
    *KEY_AT(k, obj, unsigned) = (unsigned)n;
    return 0;
}

static int set_bool(const gw_key *k, void *obj, const char *v)
{
    return config_parse_bool(v, KEY_AT(k, obj, int));
}

static int set_ms(const gw_key *k, void *obj, const char *v)
{
    return config_parse_ms(v, KEY_AT(k, obj, long));
}

static int set_size(const gw_key *k, void *obj, const char *v)
{
    return config_parse_size(v, KEY_AT(k, obj, size_t));
}

/* "host:port", or "off" / "" for no listener; off is the host, off2 the port. */
static int set_listen(const gw_key *k, void *obj, const char *v)
{
    char *host = KEY_AT(k, obj, char);
    int *port = (int *)(void *)((char *)obj + k->off2);
    if (strcmp(v, "off") == 0 || *v == '\0') {
        *port = 0;
        host[0] = '\0';
        return 0;
    }
    return config_parse_hostport(v, host, k->size, port);
}

static int set_access_log(const gw_key *k, void *obj, const char *v)
{
    int *on = KEY_AT(k, obj, int);
    if (strcmp(v, "stdout") == 0)
        *on = 1;
    else if (strcmp(v, "off") == 0)
        *on = 0;
    else
        return -1;
    return 0;
}

static int set_trusted(const gw_key *k, void *obj, const char *v)
{
    (void)k;
    gw_config *c = obj;
    char buf[1024];
    if (set_str(buf, sizeof buf, v) != 0)
        return -1;
    const char *why;
    c->ntrusted = 0;
    for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        if (c->ntrusted == GW_MAX_PROXIES || cidr_net_parse(t, &c->trusted[c->ntrusted], &why) != 0)
            return -1;
        c->ntrusted++;
    }
    return 0;
}

/* A path, or "off" (no active health checks: the path is left empty). */
static int set_health_check(const gw_key *k, void *obj, const char *v)
{
    char *path = KEY_AT(k, obj, char);
    if (strcmp(v, "off") == 0) {
        path[0] = '\0';
        return 0;
    }
    if (v[0] != '/')
        return -1;
    return set_str(path, k->size, v);
}

static int set_rate(const gw_key *k, void *obj, const char *v)
{
    (void)k;
    gw_route_conf *r = obj;
    if (strcmp(v, "off") == 0) {
        r->rate_off = 1;
        return 0;
    }
    r->rate_off = 0;
    return gw_config_parse_rate(v, &r->rate_per_s);
}

/* ---------------------------------------------------------------- the keys */

#define UINT_MAX_KEY 1000000
#define G(field)     offsetof(gw_config, field), sizeof(((gw_config *)0)->field)
#define U(field)     offsetof(gw_upstream_conf, field), sizeof(((gw_upstream_conf *)0)->field)
#define R(field)     offsetof(gw_route_conf, field), sizeof(((gw_route_conf *)0)->field)
#define NB           0, UINT_MAX_KEY /* the bounds of an unsigned number without others */

/* Every key of the file, its setter, field, bounds and default. A NULL default leaves the
 * field zero, except the four client timeouts (the HTTP server's own defaults) and workers
 * (the number of cores), which config_defaults computes. The documentation of these keys is
 * deploy/local/gateway.ini's reference block; tests/unit/test_gw_config_keys.c checks the two
 * agree. */
static const gw_key gw_keys[] = {
    {GW_SEC_GATEWAY, "workers", set_uint, G(workers), 0, 1, 64, NULL},
    {GW_SEC_GATEWAY, "http", set_listen, G(http_host), offsetof(gw_config, http_port), NB, NULL},
    {GW_SEC_GATEWAY, "https", set_listen, G(https_host), offsetof(gw_config, https_port), NB, NULL},
    {GW_SEC_GATEWAY, "http_redirect", set_bool, G(http_redirect), 0, NB, "on"},
    {GW_SEC_GATEWAY, "cert", set_string, G(cert), 0, NB, NULL},
    {GW_SEC_GATEWAY, "key", set_string, G(key), 0, NB, NULL},
    {GW_SEC_GATEWAY, "cert2", set_string, G(cert2), 0, NB, NULL},
    {GW_SEC_GATEWAY, "key2", set_string, G(key2), 0, NB, NULL},
    {GW_SEC_GATEWAY, "acme_webroot", set_string, G(acme_webroot), 0, NB, NULL},
    {GW_SEC_GATEWAY, "docs_dir", set_string, G(docs_dir), 0, NB, "var/swagger-ui"},
    {GW_SEC_GATEWAY, "openapi", set_string, G(openapi), 0, NB, "docs/openapi.yaml"},
    {GW_SEC_GATEWAY, "access_log", set_access_log, G(access_log), 0, NB, "stdout"},
    {GW_SEC_GATEWAY, "trusted_proxies", set_trusted, G(trusted), 0, NB, NULL},
    {GW_SEC_GATEWAY, "max_conns_per_ip", set_uint, G(max_conns_per_ip), 0, NB, "256"},
    {GW_SEC_GATEWAY, "gzip_min_length", set_size, G(gzip_min_length), 0, NB, "1024"},
    {GW_SEC_GATEWAY, "header_timeout", set_ms, G(header_timeout_ms), 0, NB, NULL},
    {GW_SEC_GATEWAY, "body_timeout", set_ms, G(body_timeout_ms), 0, NB, NULL},
    {GW_SEC_GATEWAY, "keepalive_timeout", set_ms, G(keepalive_timeout_ms), 0, NB, NULL},
    {GW_SEC_GATEWAY, "send_timeout", set_ms, G(send_timeout_ms), 0, NB, NULL},
    {GW_SEC_GATEWAY, "proxy_connect_timeout", set_ms, G(proxy_connect_timeout_ms), 0, NB, "60s"},
    {GW_SEC_GATEWAY, "proxy_read_timeout", set_ms, G(proxy_read_timeout_ms), 0, NB, "60s"},
    {GW_SEC_GATEWAY, "drain_timeout", set_ms, G(drain_timeout_ms), 0, NB, "30s"},
    {GW_SEC_GATEWAY, "ticket_rotate", set_ms, G(ticket_rotate_ms), 0, NB, "12h"},

    {GW_SEC_UPSTREAM, "servers", set_string, U(servers), 0, NB, NULL},
    {GW_SEC_UPSTREAM, "resolve_every", set_ms, U(resolve_every_ms), 0, NB, "5s"},
    {GW_SEC_UPSTREAM, "max_fails", set_uint, U(max_fails), 0, NB, "1"},
    {GW_SEC_UPSTREAM, "fail_timeout", set_ms, U(fail_timeout_ms), 0, NB, "10s"},
    {GW_SEC_UPSTREAM, "health_check", set_health_check, U(health_path), 0, NB, "/health"},
    {GW_SEC_UPSTREAM, "health_interval", set_ms, U(health_interval_ms), 0, NB, "2s"},
    {GW_SEC_UPSTREAM, "health_timeout", set_ms, U(health_timeout_ms), 0, NB, "1s"},
    {GW_SEC_UPSTREAM, "rise", set_uint, U(rise), 0, NB, "2"},
    {GW_SEC_UPSTREAM, "fall", set_uint, U(fall), 0, NB, "3"},

    {GW_SEC_ROUTE, "upstream", set_string, R(upstream), 0, NB, NULL},
    {GW_SEC_ROUTE, "rate", set_rate, R(rate_per_s), 0, NB, "100r/m"},
    {GW_SEC_ROUTE, "burst", set_uint, R(burst), 0, NB, "20"},
    {GW_SEC_ROUTE, "max_body", set_size, R(max_body), 0, NB, "1m"},
    {GW_SEC_ROUTE, "gzip", set_bool, R(gzip), 0, NB, "on"},
    {GW_SEC_ROUTE, "csp", set_string, R(csp), 0, NB, GW_CSP_API},
};

#define GW_NKEYS (sizeof gw_keys / sizeof gw_keys[0])

const gw_key *gw_config_keys(size_t *n)
{
    *n = GW_NKEYS;
    return gw_keys;
}

const char *gw_config_section_name(gw_section s)
{
    static const char *names[] = {"gateway", "upstream", "route"};
    return names[s];
}

/* Sets key k of section s in obj; -1 for an unknown key or a value that does not parse. */
static int key_set(gw_section s, void *obj, const char *k, const char *v)
{
    for (size_t i = 0; i < GW_NKEYS; i++)
        if (gw_keys[i].section == s && strcmp(gw_keys[i].name, k) == 0)
            return gw_keys[i].set(&gw_keys[i], obj, v);
    return -1;
}

/* Applies the table's defaults of section s to obj (already zeroed). */
static void key_defaults(gw_section s, void *obj)
{
    for (size_t i = 0; i < GW_NKEYS; i++) {
        if (gw_keys[i].section != s || !gw_keys[i].def)
            continue;
        if (gw_keys[i].set(&gw_keys[i], obj, gw_keys[i].def) != 0) {
            fprintf(stderr, "gw_config: default of %s does not parse\n", gw_keys[i].name);
            abort(); /* a programming error in the table above */
        }
    }
}

/* ---------------------------------------------------------------- sections */

static gw_upstream_conf *find_upstream(gw_config *c, const char *name, int create)
{
    for (size_t i = 0; i < c->nupstreams; i++)
        if (strcmp(c->upstreams[i].name, name) == 0)
            return &c->upstreams[i];
    if (!create || c->nupstreams == GW_MAX_UPSTREAMS || strlen(name) >= 64 || !*name)
        return NULL;
    gw_upstream_conf *u = &c->upstreams[c->nupstreams++];
    memset(u, 0, sizeof *u);
    strcpy(u->name, name);
    key_defaults(GW_SEC_UPSTREAM, u);
    return u;
}

static gw_route_conf *find_route(gw_config *c, const char *prefix, int create)
{
    for (size_t i = 0; i < c->nroutes; i++)
        if (strcmp(c->routes[i].prefix, prefix) == 0)
            return &c->routes[i];
    if (!create || c->nroutes == GW_MAX_ROUTES || prefix[0] != '/' || strlen(prefix) >= 256)
        return NULL;
    gw_route_conf *r = &c->routes[c->nroutes++];
    memset(r, 0, sizeof *r);
    strcpy(r->prefix, prefix);
    r->upstream_idx = -1;
    key_defaults(GW_SEC_ROUTE, r);
    return r;
}

static int on_entry(void *user, const char *section, const char *name, const char *value)
{
    parse_ctx *p = user;
    int rc = -1;
    if (strcmp(section, "gateway") == 0) {
        rc = key_set(GW_SEC_GATEWAY, p->c, name, value);
    } else if (strncmp(section, "upstream ", 9) == 0) {
        gw_upstream_conf *u = find_upstream(p->c, section + 9, 1);
        rc = u ? key_set(GW_SEC_UPSTREAM, u, name, value) : -1;
    } else if (strncmp(section, "route ", 6) == 0) {
        gw_route_conf *r = find_route(p->c, section + 6, 1);
        rc = r ? key_set(GW_SEC_ROUTE, r, name, value) : -1;
    }
    if (rc != 0 && p->err[0] == '\0')
        snprintf(p->err, p->errcap, "[%s] %s = %s: invalid", section, name, value);
    return rc == 0;
}

static void config_defaults(gw_config *c)
{
    memset(c, 0, sizeof *c);
    key_defaults(GW_SEC_GATEWAY, c);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    c->workers = cores > 0 ? (int)cores : 1;
    http_limits l; /* the client-side timeouts: the HTTP server's nginx-like defaults */
    http_limits_default(&l);
    c->header_timeout_ms = l.header_timeout_ms;
    c->body_timeout_ms = l.body_timeout_ms;
    c->keepalive_timeout_ms = l.idle_timeout_ms;
    c->send_timeout_ms = l.send_timeout_ms;
}

int gw_config_load(const char *path, gw_config *c, char *err, size_t errcap)
{
    config_defaults(c);
    err[0] = '\0';
    if (set_str(c->path, sizeof c->path, path) != 0) {
        snprintf(err, errcap, "config path too long");
        return -1;
    }
    parse_ctx p = {c, err, errcap};
    int rc = ini_parse(path, on_entry, &p);
    if (rc < 0) {
        snprintf(err, errcap, "%s: cannot read", path);
        return -1;
    }
    if (rc > 0) {
        if (err[0] == '\0')
            snprintf(err, errcap, "%s:%d: syntax error", path, rc);
        return -1;
    }
    if (!c->http_port && !c->https_port) {
        snprintf(err, errcap, "no listener: set http and/or https in [gateway]");
        return -1;
    }
    if (c->https_port && (!c->cert[0] || !c->key[0])) {
        snprintf(err, errcap, "https needs cert and key");
        return -1;
    }
    for (size_t i = 0; i < c->nupstreams; i++) {
        if (!c->upstreams[i].servers[0]) {
            snprintf(err, errcap, "[upstream %s] has no servers", c->upstreams[i].name);
            return -1;
        }
    }
    for (size_t i = 0; i < c->nroutes; i++) {
        gw_route_conf *r = &c->routes[i];
        gw_upstream_conf *u = find_upstream(c, r->upstream, 0);
        if (!u) {
            snprintf(err, errcap, "[route %s]: unknown upstream '%s'", r->prefix, r->upstream);
            return -1;
        }
        r->upstream_idx = (int)(u - c->upstreams);
    }
    return 0;
}
