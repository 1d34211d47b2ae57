/* gw_config: the gateway's INI configuration (libinih): [gateway], [upstream NAME] and
 * [route PREFIX] sections, parsed into plain structs with nginx-like defaults. */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "cidr.h"

#define GW_MAX_UPSTREAMS 16
#define GW_MAX_ROUTES    64
#define GW_MAX_PROXIES   16

typedef struct gw_upstream_conf {
    char name[64];
    char servers[1024];
    long resolve_every_ms;   /* 5s */
    unsigned max_fails;      /* 1 */
    long fail_timeout_ms;    /* 10s */
    char health_path[128];   /* "/health"; "" when health_check = off */
    long health_interval_ms; /* 2s */
    long health_timeout_ms;  /* 1s */
    unsigned rise, fall;     /* 2, 3 */
} gw_upstream_conf;

typedef struct gw_route_conf {
    char prefix[256];
    char upstream[64];
    int upstream_idx;  /* index in gw_config.upstreams, resolved after parsing */
    int rate_off;      /* rate = off */
    double rate_per_s; /* 100r/m by default */
    unsigned burst;    /* 20 */
    size_t max_body;   /* 1m */
    int gzip;          /* 1 */
    char csp[1024];    /* Content-Security-Policy; default for APIs */
} gw_route_conf;

typedef struct gw_config {
    char path[1024]; /* the file it was read from */
    int workers;
    char http_host[256];
    int http_port;     /* 0: no http listener */
    int http_redirect; /* 1 */
    char https_host[256];
    int https_port;               /* 0: no https listener */
    char cert[1024], key[1024];   /* first certificate (ECDSA or RSA) */
    char cert2[1024], key2[1024]; /* optional second one (the other key type) */
    char acme_webroot[1024];
    char docs_dir[1024]; /* Swagger UI files (deploy/python-deps) */
    char openapi[1024];  /* docs/openapi.yaml */
    int access_log;      /* 1: stdout */
    cidr_net trusted[GW_MAX_PROXIES];
    size_t ntrusted;
    unsigned max_conns_per_ip; /* 0: no cap */
    size_t gzip_min_length;    /* 1024 */
    long header_timeout_ms, body_timeout_ms, keepalive_timeout_ms, send_timeout_ms;
    long proxy_connect_timeout_ms, proxy_read_timeout_ms;
    long drain_timeout_ms; /* old workers' grace on reload / stop: 30s */
    long ticket_rotate_ms; /* session ticket key rotation: 12h */
    gw_upstream_conf upstreams[GW_MAX_UPSTREAMS];
    size_t nupstreams;
    gw_route_conf routes[GW_MAX_ROUTES];
    size_t nroutes;
} gw_config;

/* Reads path into *c (defaults first). Returns 0, or -1 with a message in err. */
int gw_config_load(const char *path, gw_config *c, char *err, size_t errcap);

/* The sections a key belongs to: [gateway], [upstream NAME], [route PREFIX]. */
typedef enum gw_section { GW_SEC_GATEWAY, GW_SEC_UPSTREAM, GW_SEC_ROUTE } gw_section;

/* One key of the file, as Redis's standardConfig: its section and name, the setter that parses
 * a value into the field at off (size bytes; set_listen also writes the port at off2), the
 * bounds of an unsigned number and the default (parsed by the same setter). */
typedef struct gw_key {
    gw_section section;
    const char *name;
    int (*set)(const struct gw_key *k, void *obj, const char *v);
    size_t off, size, off2;
    long min, max;
    const char *def;
} gw_key;

/* All the keys the file may contain (n of them). */
const gw_key *gw_config_keys(size_t *n);
/* "gateway", "upstream" or "route". */
const char *gw_config_section_name(gw_section s);

/* "100r/m", "10r/s" -> requests per second. Returns 0 on success. */
int gw_config_parse_rate(const char *s, double *per_s);

/* The default CSP of API routes and of /docs. */
#define GW_CSP_API "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
#define GW_CSP_DOCS                                                                                \
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "                    \
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; frame-ancestors 'none'; "          \
    "base-uri 'none'; form-action 'none'"

#endif
