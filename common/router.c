/* router: method + path patterns in front of the HTTP server (contract in router.h).
 *
 * A pattern is compiled at router_add into segments, each a literal or a "{name}"
 * parameter. A path matches a pattern when it has as many segments and every literal is
 * equal byte for byte (no decoding: "/%69nternal" is not "/internal") and every parameter
 * segment is non-empty and percent-decodes to UTF-8 text without '/' or NUL. When several routes
 * match, the one whose first differing segment is a literal wins. HEAD falls back to GET.
 * Every answered request is counted in http_requests_total{method,route,status} and timed in
 * http_request_duration_seconds{method,route}. A route added with router_add_auth runs its
 * handler with the caller that the router's authenticator found (see router.h). */
#include "router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "query.h"
#include "utf8.h"
#include "xalloc.h"

#define ROUTER_MAX_SEGS 64

typedef struct route_seg {
    char *text; /* the literal, or the parameter's name */
    int is_param;
} route_seg;

typedef struct route {
    char *method;
    char *pattern;
    route_seg *segs;
    size_t nsegs;
    http_req_fn fn;
    router_caller_fn caller_fn; /* set: the route needs a caller (router_add_auth) */
    size_t max_body;
    int stream;
    int service; /* the caller must be another service (router_add_service) */
    struct router *owner;
} route;

struct router {
    route *routes;
    size_t n, cap;
    router_authn_fn authn; /* how a caller is found; NULL: none (auth routes: 503) */
    void *authn_ctx;
    router_authn_fn svc_authn; /* how a calling service is found (router_add_service) */
    void *svc_authn_ctx;
};

static const char router_unmatched[] = "unmatched";

router *router_new(void)
{
    return xcalloc(1, sizeof(router));
}

void router_free(router *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        route *rt = &r->routes[i];
        for (size_t j = 0; j < rt->nsegs; j++)
            free(rt->segs[j].text);
        free(rt->segs);
        free(rt->method);
        free(rt->pattern);
    }
    free(r->routes);
    free(r);
}

static int router_name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_';
}

/* Characters a pattern's literal may hold (no quote, backslash, space, control, ?, #). */
static int router_literal_char(char ch)
{
    return ch > 0x20 && ch < 0x7f && ch != '"' && ch != '\\' && ch != '?' && ch != '#' &&
           ch != '{' && ch != '}';
}

static void router_bad_pattern(const char *pattern, const char *why)
{
    fprintf(stderr, "router: invalid pattern \"%s\": %s\n", pattern, why);
    abort();
}

/* A route is registered at start-up: a malformed pattern is a programming error. */
static void router_add_route(router *r, const char *method, const char *pattern, http_req_fn fn,
                             router_caller_fn caller_fn, size_t max_body, int stream)
{
    if (!method || !*method || !pattern || pattern[0] != '/' || (!fn && !caller_fn))
        router_bad_pattern(pattern ? pattern : "(null)", "must start with '/'");
    route rt = {0};
    rt.method = xstrndup(method, strlen(method));
    rt.pattern = xstrndup(pattern, strlen(pattern));
    rt.fn = fn;
    rt.caller_fn = caller_fn;
    rt.owner = r;
    rt.max_body = max_body;
    rt.stream = stream;
    rt.segs = xcalloc(1, ROUTER_MAX_SEGS * sizeof *rt.segs);
    size_t nparams = 0;
    const char *p = pattern + 1;
    for (;;) {
        size_t n = strcspn(p, "/");
        if (rt.nsegs == ROUTER_MAX_SEGS)
            router_bad_pattern(pattern, "too many segments");
        route_seg *seg = &rt.segs[rt.nsegs++];
        if (n >= 2 && p[0] == '{' && p[n - 1] == '}') {
            for (size_t i = 1; i + 1 < n; i++)
                if (!router_name_char(p[i]))
                    router_bad_pattern(pattern, "a parameter name is [A-Za-z0-9_]+");
            if (n == 2)
                router_bad_pattern(pattern, "empty parameter name");
            if (++nparams > ROUTER_MAX_PARAMS)
                router_bad_pattern(pattern, "too many parameters");
            seg->is_param = 1;
            seg->text = xstrndup(p + 1, n - 2);
        } else {
            for (size_t i = 0; i < n; i++)
                if (!router_literal_char(p[i]))
                    router_bad_pattern(pattern, "a literal holds a forbidden character");
            seg->text = xstrndup(p, n);
        }
        if (p[n] == '\0')
            break;
        p += n + 1;
    }
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        route *routes = realloc(r->routes, r->cap * sizeof *routes);
        if (!routes)
            abort();
        r->routes = routes;
    }
    r->routes[r->n++] = rt;
}

void router_add(router *r, const char *method, const char *pattern, http_req_fn fn, size_t max_body)
{
    router_add_route(r, method, pattern, fn, NULL, max_body, 0);
}

void router_add_stream(router *r, const char *method, const char *pattern, http_req_fn fn)
{
    router_add_route(r, method, pattern, fn, NULL, 0, 1);
}

void router_add_auth(router *r, const char *method, const char *pattern, router_caller_fn fn,
                     size_t max_body)
{
    router_add_route(r, method, pattern, NULL, fn, max_body, 0);
}

void router_add_auth_stream(router *r, const char *method, const char *pattern, router_caller_fn fn)
{
    router_add_route(r, method, pattern, NULL, fn, 0, 1);
}

void router_add_service(router *r, const char *method, const char *pattern, router_caller_fn fn,
                        size_t max_body)
{
    router_add_route(r, method, pattern, NULL, fn, max_body, 0);
    r->routes[r->n - 1].service = 1;
}

void router_set_authn(router *r, router_authn_fn fn, void *ctx)
{
    r->authn = fn;
    r->authn_ctx = ctx;
}

/* Percent-decodes [s, s+n) into a new string; NULL when malformed or when it decodes to
 * '/', NUL or bytes that are not UTF-8 (a value that would reach PostgreSQL as text). */
static char *router_decode(const char *s, size_t n)
{
    char *out = xcalloc(1, n + 1);
    long len = query_unescape(s, n, out, n + 1, 0);
    if (len < 0 || memchr(out, '/', (size_t)len) != NULL || !utf8_valid(out, (size_t)len)) {
        free(out);
        return NULL;
    }
    return out;
}

typedef struct path_seg {
    const char *p;
    size_t n;
} path_seg;

/* Splits a path into segments; -1 when it does not start with '/' or has too many. */
static int router_split(const char *path, path_seg *segs)
{
    if (path[0] != '/')
        return -1;
    int n = 0;
    const char *p = path + 1;
    for (;;) {
        if (n == ROUTER_MAX_SEGS)
            return -1;
        size_t len = strcspn(p, "/");
        segs[n].p = p;
        segs[n].n = len;
        n++;
        if (p[len] == '\0')
            return n;
        p += len + 1;
    }
}

static int route_matches_path(const route *rt, const path_seg *segs, int nsegs)
{
    if ((size_t)nsegs != rt->nsegs)
        return 0;
    for (int i = 0; i < nsegs; i++) {
        const route_seg *s = &rt->segs[i];
        if (s->is_param) {
            if (segs[i].n == 0)
                return 0;
        } else if (strlen(s->text) != segs[i].n || memcmp(s->text, segs[i].p, segs[i].n) != 0) {
            return 0;
        }
    }
    return 1;
}

/* 1 when a is more specific than b (a literal where b has a parameter, first difference). */
static int route_more_specific(const route *a, const route *b)
{
    for (size_t i = 0; i < a->nsegs && i < b->nsegs; i++) {
        if (a->segs[i].is_param != b->segs[i].is_param)
            return !a->segs[i].is_param;
    }
    return 0;
}

/* Fills the parameters of rt from the path; 0, or -1 when one does not decode. */
static int route_params(const route *rt, const path_seg *segs, router_match *m)
{
    for (size_t i = 0; i < rt->nsegs; i++) {
        if (!rt->segs[i].is_param)
            continue;
        char *v = router_decode(segs[i].p, segs[i].n);
        if (!v)
            return -1;
        m->names[m->nparams] = rt->segs[i].text;
        m->values[m->nparams] = v;
        m->nparams++;
    }
    return 0;
}

static void allow_add(router_match *m, const char *method)
{
    size_t mlen = strlen(method);
    const char *p = m->allow;
    while (*p) {
        size_t n = strcspn(p, ",");
        if (n == mlen && strncmp(p, method, n) == 0)
            return;
        p += n;
        while (*p == ',' || *p == ' ')
            p++;
    }
    size_t len = strlen(m->allow);
    if (len + mlen + 3 > sizeof m->allow)
        return;
    snprintf(m->allow + len, sizeof m->allow - len, "%s%s", len ? ", " : "", method);
}

static const route *router_find(const router *r, const char *method, const char *path,
                                router_match *m)
{
    memset(m, 0, sizeof *m);
    m->status = 404;
    path_seg segs[ROUTER_MAX_SEGS];
    int nsegs = router_split(path, segs);
    if (nsegs < 0)
        return NULL;
    const route *best = NULL, *best_get = NULL;
    int path_known = 0, has_head = 0;
    for (size_t i = 0; i < r->n; i++) {
        const route *rt = &r->routes[i];
        if (!route_matches_path(rt, segs, nsegs))
            continue;
        path_known = 1;
        if (strcmp(rt->method, "GET") == 0 && (!best_get || route_more_specific(rt, best_get)))
            best_get = rt;
        if (strcmp(rt->method, "HEAD") == 0)
            has_head = 1;
        if (strcmp(rt->method, method) == 0 && (!best || route_more_specific(rt, best)))
            best = rt;
    }
    if (!best && strcmp(method, "HEAD") == 0)
        best = best_get;
    if (best) {
        if (route_params(best, segs, m) < 0) {
            router_match_free(m);
            m->status = 404; /* a parameter that does not decode matches nothing */
            return NULL;
        }
        m->status = 200;
        m->pattern = best->pattern;
        m->needs_caller = best->caller_fn != NULL;
        return best;
    }
    if (!path_known)
        return NULL;
    m->status = 405;
    for (size_t i = 0; i < r->n; i++) {
        const route *rt = &r->routes[i];
        if (!route_matches_path(rt, segs, nsegs))
            continue;
        allow_add(m, rt->method);
        if (strcmp(rt->method, "GET") == 0 && !has_head)
            allow_add(m, "HEAD");
    }
    return NULL;
}

int router_lookup(const router *r, const char *method, const char *path, router_match *m)
{
    router_find(r, method, path, m);
    return m->status;
}

void router_match_free(router_match *m)
{
    for (size_t i = 0; i < m->nparams; i++)
        free(m->values[i]);
    m->nparams = 0;
}

/* Prometheus label text for a value we know holds no quote, backslash or newline. */
static void router_observe(http_req *req, int status, double seconds, void *ud)
{
    const char *route_label = ud;
    char labels[512];
    snprintf(labels, sizeof labels, "method=\"%s\",route=\"%s\",status=\"%d\"",
             http_req_method(req), route_label, status);
    metric_inc(metrics_counter("http_requests_total", "HTTP requests answered.", labels));
    snprintf(labels, sizeof labels, "method=\"%s\",route=\"%s\"", http_req_method(req),
             route_label);
    metric_observe(metrics_histogram("http_request_duration_seconds",
                                     "Time from a request's head to the end of its response.",
                                     labels),
                   seconds);
}

/* ---- routes that need a caller ----
 * The caller lives in a router_call from the authentication to the end of the reply. The
 * authenticator may answer (and so end the request) before it calls router_authed, and a
 * handler may end it before it returns: the call is freed by whichever of router_authed and
 * the request's end comes last, and never touched after the handler was called. */
typedef struct router_call {
    http_req *req;
    const route *rt;
    auth_identity who;
    int authed, ended;
} router_call;

static void router_call_done(http_req *req, int status, double seconds, void *ud)
{
    router_call *call = ud;
    router_observe(req, status, seconds, call->rt->pattern);
    call->ended = 1;
    if (call->authed)
        free(call);
}

static void router_authed(void *ud, const auth_identity *who)
{
    router_call *call = ud;
    call->authed = 1;
    if (!who) { /* answered by the authenticator */
        if (call->ended)
            free(call);
        return;
    }
    call->who = *who;
    call->rt->caller_fn(call->req, &call->who); /* may free call */
}

static void router_authenticate(http_req *req, const route *rt)
{
    const router *r = rt->owner;
    router_authn_fn authn = rt->service ? r->svc_authn : r->authn;
    void *authn_ctx = rt->service ? r->svc_authn_ctx : r->authn_ctx;
    if (!authn) {
        auth_client_reply_error(req, 503);
        return;
    }
    router_call *call = xcalloc(1, sizeof *call);
    call->req = req;
    call->rt = rt;
    http_req_on_done(req, router_call_done, call);
    authn(authn_ctx, req, router_authed, call);
}

static void router_body_read(http_req *req)
{
    const route *rt = http_req_data(req);
    http_req_set_data(req, NULL);
    router_authenticate(req, rt);
}

/* The auth_client authenticator: a user (token or API key) of an organization. */
typedef struct router_ac_check {
    http_req *req;
    router_authed_fn done;
    void *done_ud;
} router_ac_check;

static router_ac_check *router_ac_check_new(http_req *req, router_authed_fn done, void *done_ud)
{
    router_ac_check *chk = xcalloc(1, sizeof *chk);
    chk->req = req;
    chk->done = done;
    chk->done_ud = done_ud;
    return chk;
}

static void router_ac_finish(router_ac_check *chk, int status, const auth_identity *id, int ok)
{
    http_req *req = chk->req;
    router_authed_fn done = chk->done;
    void *done_ud = chk->done_ud;
    free(chk);
    if (ok) {
        done(done_ud, id);
        return;
    }
    auth_client_reply_error(req, status == 200 ? 401 : status);
    done(done_ud, NULL);
}

static void router_ac_checked(int status, const auth_identity *id, void *ud)
{
    int ok = status == 200 && id->kind != AUTH_ID_SERVICE && id->sub[0] && id->org[0];
    router_ac_finish(ud, status, id, ok);
}

static void router_ac_svc_checked(int status, const auth_identity *id, void *ud)
{
    router_ac_finish(ud, status, id, status == 200 && id->kind == AUTH_ID_SERVICE);
}

static void router_ac_authn(void *ctx, http_req *req, router_authed_fn done, void *done_ud)
{
    auth_client_check(ctx, req, router_ac_checked, router_ac_check_new(req, done, done_ud));
}

void router_use_auth_client(router *r, auth_client *c)
{
    router_set_authn(r, c ? router_ac_authn : NULL, c);
}

static void router_ac_svc_authn(void *ctx, http_req *req, router_authed_fn done, void *done_ud)
{
    auth_client_check_service(ctx, req, router_ac_svc_checked,
                              router_ac_check_new(req, done, done_ud));
}

void router_use_service_auth(router *r, auth_client *c)
{
    r->svc_authn = c ? router_ac_svc_authn : NULL;
    r->svc_authn_ctx = c;
}

void router_dispatch(http_req *req, void *ud)
{
    router *r = ud;
    router_match m;
    const route *rt = router_find(r, http_req_method(req), http_req_path(req), &m);
    if (!rt) {
        http_req_on_done(req, router_observe, (void *)router_unmatched);
        if (m.status == 405) {
            char msg[224];
            snprintf(msg, sizeof msg, "Method %s is not allowed here; allowed: %s.",
                     http_req_method(req), m.allow);
            http_resp_header(req, "Allow", m.allow);
            http_reply_error(req, 405, "method_not_allowed", msg);
        } else {
            http_reply_error(req, 404, "not_found", "No such resource.");
        }
        return;
    }
    for (size_t i = 0; i < m.nparams; i++)
        http_req_set_param(req, m.names[i], m.values[i]);
    router_match_free(&m);
    http_req_on_done(req, router_observe, rt->pattern);
    if (rt->caller_fn && rt->stream) {
        router_authenticate(req, rt);
    } else if (rt->caller_fn) {
        http_req_set_data(req, (void *)rt); /* until the body is read */
        http_req_read_body(req, rt->max_body, router_body_read);
    } else if (rt->stream) {
        rt->fn(req);
    } else {
        http_req_read_body(req, rt->max_body, rt->fn);
    }
}
