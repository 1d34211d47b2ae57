/* route: the gateway's request handler up to the proxy (see route.h). */
#include "route.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "builtin.h"
#include "headers.h"
#include "proxy.h"
#include "ratelimit.h"

/* ---- paths and routes ---- */

static int seg_is(const char *s, size_t n, int dots)
{
    /* "." or ".." with any dot possibly written %2e / %2E. */
    int count = 0;
    size_t i = 0;
    while (i < n) {
        if (s[i] == '.') {
            i++;
        } else if (n - i >= 3 && s[i] == '%' && s[i + 1] == '2' &&
                   (s[i + 2] == 'e' || s[i + 2] == 'E')) {
            i += 3;
        } else {
            return 0;
        }
        count++;
    }
    return count == dots;
}

int gw_path_normalize(const char *raw, char *out, size_t cap)
{
    const char *p = raw;
    if (strncasecmp(p, "http://", 7) == 0 || strncasecmp(p, "https://", 8) == 0) {
        p = strchr(strchr(p, ':') + 3, '/');
        if (!p)
            p = "/";
    }
    if (*p != '/' || cap < 2)
        return -1;
    size_t n = 0;
    size_t stack[512];
    size_t depth = 0;
    int trailing = 0;
    out[n++] = '/';
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *seg = p;
        while (*p && *p != '/')
            p++;
        size_t len = (size_t)(p - seg);
        trailing = (*p == '/');
        if (memchr(seg, '\0', len) || (len >= 3 && strstr(seg, "%00") && strstr(seg, "%00") < p))
            return -1;
        if (seg_is(seg, len, 1)) {
            trailing = 1;
            continue;
        }
        if (seg_is(seg, len, 2)) {
            if (depth == 0)
                return -1;
            n = stack[--depth];
            trailing = 1;
            continue;
        }
        if (depth == sizeof stack / sizeof stack[0] || n + len + 2 >= cap)
            return -1;
        stack[depth++] = n;
        memcpy(out + n, seg, len);
        n += len;
        out[n++] = '/';
    }
    /* out ends with '/' here; drop it unless the path ended with one. */
    if (n > 1 && !trailing)
        n--;
    out[n] = '\0';
    return 0;
}

const gw_route_conf *gw_route_match(const gw_config *c, const char *path)
{
    const gw_route_conf *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < c->nroutes; i++) {
        const char *pre = c->routes[i].prefix;
        size_t n = strlen(pre);
        if (strncmp(path, pre, n) != 0)
            continue;
        if (pre[n - 1] != '/' && path[n] != '\0' && path[n] != '/')
            continue;
        if (!best || n > best_len) {
            best = &c->routes[i];
            best_len = n;
        }
    }
    return best;
}

/* ---- the handler ---- */

/* The route's rate limit and body limit; 1 when one of them answered. */
static int route_limits(const gw_answer *a, const gw_route_conf *route, int route_idx)
{
    gw_worker *w = a->w;
    if (!route->rate_off) {
        unsigned retry =
            gw_ratelimit_check(w->shm, route_idx, a->client, route->rate_per_s, route->burst);
        if (retry) {
            char ra[16];
            snprintf(ra, sizeof ra, "%u", retry);
            http_resp_header(a->req, "Retry-After", ra);
            gw_answer_error(a, 429, "rate_limited", "Too many requests: slow down.");
            return 1;
        }
    }
    int64_t clen = http_req_content_length(a->req);
    if (clen > 0 && (uint64_t)clen > route->max_body) {
        http_resp_close_after(a->req);
        gw_answer_error(a, 413, "payload_too_large",
                        "The request body is over this route's limit.");
        return 1;
    }
    return 0;
}

void gw_route_handle(http_req *req, void *ud)
{
    gw_worker *w = ud;
    const gw_config *c = w->cfg;
    char client[64], path[4096];
    gw_headers_client_ip(c, req, client, sizeof client);
    gw_answer a = {w, req, "-", client, NULL, GW_CSP_API, uv_hrtime()};

    if (gw_path_normalize(http_req_path(req), path, sizeof path) != 0) {
        gw_answer_error(&a, 400, "bad_request", "Invalid request path.");
        return;
    }
    a.path = path;
    if (gw_builtin_handle(&a))
        return;
    const gw_route_conf *route = gw_route_match(c, path);
    if (!route) {
        gw_answer_error(&a, 404, "not_found", "No route for this path.");
        return;
    }
    a.route = route->prefix;
    a.csp = route->csp;
    if (route_limits(&a, route, (int)(route - c->routes)))
        return;
    gw_proxy_start(&a, route);
}
