/* headers: security headers and the client address (see headers.h). */
#include "headers.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "gw_config.h"

void gw_headers_security(http_req *req, const char *csp)
{
    http_resp_header(req, "Strict-Transport-Security", "max-age=63072000; includeSubDomains");
    http_resp_header(req, "X-Content-Type-Options", "nosniff");
    http_resp_header(req, "X-Frame-Options", "DENY");
    http_resp_header(req, "Content-Security-Policy", csp);
    http_resp_header(req, "Referrer-Policy", "no-referrer");
}

/* The entry of an X-Forwarded-For list that ends just before end (a comma or the value's end),
 * trimmed of blanks, as [*from, end'); returns where the list goes on leftwards (its comma), or
 * NULL when this was the first entry. */
static const char *xff_prev(const char *value, const char *end, const char **from, const char **to)
{
    const char *p = end;
    while (p > value && p[-1] != ',')
        p--;
    const char *a = p, *b = end;
    while (a < b && (*a == ' ' || *a == '\t'))
        a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
        b--;
    *from = a;
    *to = b;
    return p > value ? p - 1 : NULL;
}

/* Walks the X-Forwarded-For list (every such header line, in order, is one list) from the
 * right without copying it: trusted proxies are skipped, the first other address is the
 * client. An unparsable entry where the client should be means the peer, never a client
 * choice; empty entries are ignored (RFC 9110 §5.6.1). */
void gw_copy_text(char *out, size_t cap, const char *s)
{
    size_t n = strnlen(s, cap - 1);
    memcpy(out, s, n);
    out[n] = '\0';
}

void gw_headers_client_ip(const gw_config *c, http_req *req, char *out, size_t cap)
{
    const char *peer = http_req_peer_ip(req);
    gw_copy_text(out, cap, peer);
    if (!c->ntrusted || !cidr_nets_match(c->trusted, c->ntrusted, peer))
        return;
    for (size_t i = http_req_header_count(req); i-- > 0;) {
        const char *name, *value;
        http_req_header_at(req, i, &name, &value);
        if (strcasecmp(name, "X-Forwarded-For") != 0)
            continue;
        const char *end = value + strlen(value);
        for (;;) {
            const char *a, *b;
            const char *comma = xff_prev(value, end, &a, &b);
            if (a < b) {
                char addr[INET6_ADDRSTRLEN + 1];
                uint8_t probe[16];
                size_t n = (size_t)(b - a);
                if (n >= sizeof addr) {
                    gw_copy_text(out, cap, peer);
                    return;
                }
                memcpy(addr, a, n);
                addr[n] = '\0';
                if (cidr_parse_addr(addr, probe) != 0) {
                    gw_copy_text(out, cap, peer); /* garbage: not the client's to choose */
                    return;
                }
                gw_copy_text(out, cap, addr);
                if (!cidr_nets_match(c->trusted, c->ntrusted, addr))
                    return;
            }
            if (!comma)
                break;
            end = comma;
        }
    }
    /* every entry was a trusted proxy: the leftmost one stands in out */
}
