/* headers: hop-by-hop filtering, security headers and the client address (see headers.h). */
#include "headers.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "gw_config.h"

static const char *hop_names[] = {
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade", "content-length", "host",
    "date", "x-request-id", "expect", NULL,
};

/* 1 when the comma-separated list contains name (case-insensitive). */
static int list_has(const char *list, const char *name)
{
    size_t n = strlen(name);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *tok = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        if ((size_t)(p - tok) == n && strncasecmp(tok, name, n) == 0)
            return 1;
        while (*p && *p != ',')
            p++;
    }
    return 0;
}

int gw_headers_hop(const char *name, const char *conn)
{
    for (int i = 0; hop_names[i]; i++)
        if (strcasecmp(name, hop_names[i]) == 0)
            return 1;
    return conn && list_has(conn, name);
}

static const char *security_names[] = {
    "strict-transport-security", "x-content-type-options", "x-frame-options",
    "content-security-policy", "referrer-policy", NULL,
};

int gw_headers_security_name(const char *name)
{
    for (int i = 0; security_names[i]; i++)
        if (strcasecmp(name, security_names[i]) == 0)
            return 1;
    return 0;
}

void gw_headers_security(http_req *req, const char *csp)
{
    http_resp_header(req, "Strict-Transport-Security", "max-age=63072000; includeSubDomains");
    http_resp_header(req, "X-Content-Type-Options", "nosniff");
    http_resp_header(req, "X-Frame-Options", "DENY");
    http_resp_header(req, "Content-Security-Policy", csp);
    http_resp_header(req, "Referrer-Policy", "no-referrer");
}

void gw_headers_client_ip(const gw_config *c, http_req *req, char *out, size_t cap)
{
    const char *peer = http_req_peer_ip(req);
    snprintf(out, cap, "%s", peer);
    if (!c->ntrusted || !cidr_nets_match(c->trusted, c->ntrusted, peer))
        return;
    const char *xff = http_req_header(req, "X-Forwarded-For");
    if (!xff)
        return;
    /* Walk from the right: the first address that is not a trusted proxy is the client. */
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", xff);
    for (;;) {
        char *comma = strrchr(buf, ',');
        char *tok = comma ? comma + 1 : buf;
        while (*tok == ' ' || *tok == '\t')
            tok++;
        size_t n = strlen(tok);
        while (n && (tok[n - 1] == ' ' || tok[n - 1] == '\t'))
            tok[--n] = '\0';
        uint8_t probe[16];
        if (cidr_parse_addr(tok, probe) != 0)
            return;                              /* garbage: keep what we have */
        snprintf(out, cap, "%s", tok);
        if (!cidr_nets_match(c->trusted, c->ntrusted, tok) || !comma)
            return;
        *comma = '\0';
    }
}
