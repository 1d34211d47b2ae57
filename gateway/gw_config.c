/* gw_config: parses the gateway's INI file with libinih into a gw_config. Unknown keys and
 * values that do not parse are errors: a typo must never run silently with another value. */
#include "gw_config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <ini.h>
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

static int parse_listen(const char *v, char *host, size_t hostcap, int *port)
{
    if (strcmp(v, "off") == 0 || *v == '\0') {
        *port = 0;
        host[0] = '\0';
        return 0;
    }
    return config_parse_hostport(v, host, hostcap, port);
}

static int parse_uint(const char *v, unsigned *out)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || *end || n < 0 || n > 1000000)
        return -1;
    *out = (unsigned)n;
    return 0;
}

static int gateway_key(gw_config *c, const char *k, const char *v)
{
    unsigned u;
    if (strcmp(k, "workers") == 0) {
        if (parse_uint(v, &u) != 0 || u == 0 || u > 64)
            return -1;
        c->workers = (int)u;
        return 0;
    }
    if (strcmp(k, "http") == 0)
        return parse_listen(v, c->http_host, sizeof c->http_host, &c->http_port);
    if (strcmp(k, "https") == 0)
        return parse_listen(v, c->https_host, sizeof c->https_host, &c->https_port);
    if (strcmp(k, "http_redirect") == 0)
        return config_parse_bool(v, &c->http_redirect);
    if (strcmp(k, "cert") == 0)
        return set_str(c->cert, sizeof c->cert, v);
    if (strcmp(k, "key") == 0)
        return set_str(c->key, sizeof c->key, v);
    if (strcmp(k, "cert2") == 0)
        return set_str(c->cert2, sizeof c->cert2, v);
    if (strcmp(k, "key2") == 0)
        return set_str(c->key2, sizeof c->key2, v);
    if (strcmp(k, "acme_webroot") == 0)
        return set_str(c->acme_webroot, sizeof c->acme_webroot, v);
    if (strcmp(k, "docs_dir") == 0)
        return set_str(c->docs_dir, sizeof c->docs_dir, v);
    if (strcmp(k, "openapi") == 0)
        return set_str(c->openapi, sizeof c->openapi, v);
    if (strcmp(k, "access_log") == 0) {
        if (strcmp(v, "stdout") == 0)
            c->access_log = 1;
        else if (strcmp(v, "off") == 0)
            c->access_log = 0;
        else
            return -1;
        return 0;
    }
    if (strcmp(k, "trusted_proxies") == 0) {
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
    if (strcmp(k, "max_conns_per_ip") == 0)
        return parse_uint(v, &c->max_conns_per_ip);
    if (strcmp(k, "gzip_min_length") == 0)
        return config_parse_size(v, &c->gzip_min_length);
    if (strcmp(k, "header_timeout") == 0)
        return config_parse_ms(v, &c->header_timeout_ms);
    if (strcmp(k, "body_timeout") == 0)
        return config_parse_ms(v, &c->body_timeout_ms);
    if (strcmp(k, "keepalive_timeout") == 0)
        return config_parse_ms(v, &c->keepalive_timeout_ms);
    if (strcmp(k, "send_timeout") == 0)
        return config_parse_ms(v, &c->send_timeout_ms);
    if (strcmp(k, "proxy_connect_timeout") == 0)
        return config_parse_ms(v, &c->proxy_connect_timeout_ms);
    if (strcmp(k, "proxy_read_timeout") == 0)
        return config_parse_ms(v, &c->proxy_read_timeout_ms);
    if (strcmp(k, "drain_timeout") == 0)
        return config_parse_ms(v, &c->drain_timeout_ms);
    if (strcmp(k, "ticket_rotate") == 0)
        return config_parse_ms(v, &c->ticket_rotate_ms);
    return -1;
}

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
    u->resolve_every_ms = 5000;
    u->max_fails = 1;
    u->fail_timeout_ms = 10000;
    strcpy(u->health_path, "/health");
    u->health_interval_ms = 2000;
    u->health_timeout_ms = 1000;
    u->rise = 2;
    u->fall = 3;
    return u;
}

static int upstream_key(gw_upstream_conf *u, const char *k, const char *v)
{
    if (strcmp(k, "servers") == 0)
        return set_str(u->servers, sizeof u->servers, v);
    if (strcmp(k, "resolve_every") == 0)
        return config_parse_ms(v, &u->resolve_every_ms);
    if (strcmp(k, "max_fails") == 0)
        return parse_uint(v, &u->max_fails);
    if (strcmp(k, "fail_timeout") == 0)
        return config_parse_ms(v, &u->fail_timeout_ms);
    if (strcmp(k, "health_check") == 0) {
        if (strcmp(v, "off") == 0) {
            u->health_path[0] = '\0';
            return 0;
        }
        if (v[0] != '/')
            return -1;
        return set_str(u->health_path, sizeof u->health_path, v);
    }
    if (strcmp(k, "health_interval") == 0)
        return config_parse_ms(v, &u->health_interval_ms);
    if (strcmp(k, "health_timeout") == 0)
        return config_parse_ms(v, &u->health_timeout_ms);
    if (strcmp(k, "rise") == 0)
        return parse_uint(v, &u->rise);
    if (strcmp(k, "fall") == 0)
        return parse_uint(v, &u->fall);
    return -1;
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
    r->rate_per_s = 100.0 / 60.0;
    r->burst = 20;
    r->max_body = 1024 * 1024;
    r->gzip = 1;
    strcpy(r->csp, GW_CSP_API);
    return r;
}

static int route_key(gw_route_conf *r, const char *k, const char *v)
{
    if (strcmp(k, "upstream") == 0)
        return set_str(r->upstream, sizeof r->upstream, v);
    if (strcmp(k, "rate") == 0) {
        if (strcmp(v, "off") == 0) {
            r->rate_off = 1;
            return 0;
        }
        r->rate_off = 0;
        return gw_config_parse_rate(v, &r->rate_per_s);
    }
    if (strcmp(k, "burst") == 0)
        return parse_uint(v, &r->burst);
    if (strcmp(k, "max_body") == 0)
        return config_parse_size(v, &r->max_body);
    if (strcmp(k, "gzip") == 0)
        return config_parse_bool(v, &r->gzip);
    if (strcmp(k, "csp") == 0)
        return set_str(r->csp, sizeof r->csp, v);
    return -1;
}

static int on_entry(void *user, const char *section, const char *name, const char *value)
{
    parse_ctx *p = user;
    int rc = -1;
    if (strcmp(section, "gateway") == 0) {
        rc = gateway_key(p->c, name, value);
    } else if (strncmp(section, "upstream ", 9) == 0) {
        gw_upstream_conf *u = find_upstream(p->c, section + 9, 1);
        rc = u ? upstream_key(u, name, value) : -1;
    } else if (strncmp(section, "route ", 6) == 0) {
        gw_route_conf *r = find_route(p->c, section + 6, 1);
        rc = r ? route_key(r, name, value) : -1;
    }
    if (rc != 0 && p->err[0] == '\0')
        snprintf(p->err, p->errcap, "[%s] %s = %s: invalid", section, name, value);
    return rc == 0;
}

static void config_defaults(gw_config *c)
{
    memset(c, 0, sizeof *c);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    c->workers = cores > 0 ? (int)cores : 1;
    c->http_redirect = 1;
    c->access_log = 1;
    c->max_conns_per_ip = 256;
    c->gzip_min_length = 1024;
    http_limits l; /* the client-side timeouts: the HTTP server's nginx-like defaults */
    http_limits_default(&l);
    c->header_timeout_ms = l.header_timeout_ms;
    c->body_timeout_ms = l.body_timeout_ms;
    c->keepalive_timeout_ms = l.idle_timeout_ms;
    c->send_timeout_ms = l.send_timeout_ms;
    c->proxy_connect_timeout_ms = 60000;
    c->proxy_read_timeout_ms = 60000;
    c->drain_timeout_ms = 30000;
    c->ticket_rotate_ms = 12L * 3600 * 1000;
    strcpy(c->docs_dir, "var/swagger-ui");
    strcpy(c->openapi, "docs/openapi.yaml");
}

int gw_config_load(const char *path, gw_config *c, char *err, size_t errcap)
{
    config_defaults(c);
    err[0] = '\0';
    if (set_str(c->path, sizeof c->path, path) != 0) {
        snprintf(err, errcap, "config path too long");
        return -1;
    }
    parse_ctx p = { c, err, errcap };
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
