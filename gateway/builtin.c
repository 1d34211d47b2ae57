/* builtin: the gateway's own answers (see builtin.h). */
#include "builtin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access_log.h"
#include "headers.h"
#include "xalloc.h"

int64_t gw_us_since(uint64_t t0)
{
    return (int64_t)((uv_hrtime() - t0) / 1000);
}

static void answer_log(gw_worker *w, http_req *req, const char *path, const char *client,
                       const char *route, int status, uint64_t t0)
{
    if (!w->cfg->access_log)
        return;
    gw_access a = {http_req_id(req),
                   client,
                   http_req_method(req),
                   path,
                   route,
                   NULL,
                   status,
                   http_req_is_tls(req),
                   0,
                   0,
                   0,
                   gw_us_since(t0),
                   -1};
    gw_access_log(&a);
}

void gw_answer_with(const gw_answer *a, gw_answer_fn fn, void *ud)
{
    if (http_req_is_tls(a->req))
        gw_headers_security(a->req, a->csp);
    int status = fn(a, ud);
    if (status)
        answer_log(a->w, a->req, a->path, a->client, a->route, status, a->t0);
}

typedef struct answer_err {
    int status;
    const char *code, *msg;
} answer_err;

static int write_error(const gw_answer *a, void *ud)
{
    const answer_err *e = ud;
    http_reply_error(a->req, e->status, e->code, e->msg);
    return e->status;
}

void gw_answer_error(const gw_answer *a, int status, const char *code, const char *msg)
{
    answer_err e = {status, code, msg};
    gw_answer_with(a, write_error, &e);
}

/* ---- the endpoints ---- */

int gw_path_blocked(const char *path)
{
    static const char *blocked[] = {"/internal", "/livez", "/metrics", NULL};
    for (int i = 0; blocked[i]; i++) {
        size_t n = strlen(blocked[i]);
        if (strncmp(path, blocked[i], n) == 0 && (path[n] == '\0' || path[n] == '/'))
            return 1;
    }
    return 0;
}

static int write_health(const gw_answer *a, void *ud)
{
    (void)ud;
    gw_worker *w = a->w;
    json_t *ups = json_object();
    int ok = 1;
    for (size_t i = 0; i < w->cfg->nupstreams; i++) {
        unsigned healthy = 0, total = 0;
        const char *name = w->cfg->upstreams[i].name;
        if (gw_shm_upstream_counts(w->shm, name, &healthy, &total) != 0)
            upstream_counts(w->ups[i], &healthy, &total);
        if (healthy == 0)
            ok = 0;
        json_object_set_new(ups, name, json_pack("{s:i,s:i}", "healthy", healthy, "total", total));
    }
    json_t *body = json_pack("{s:s,s:o}", "status", ok ? "ok" : "unavailable", "upstreams", ups);
    http_resp_header(a->req, "Cache-Control", "no-store");
    http_reply_json(a->req, ok ? 200 : 503, body);
    return ok ? 200 : 503;
}

static int write_redirect(const gw_answer *a, void *ud)
{
    (void)ud;
    http_req *req = a->req;
    const char *host = http_req_header(req, "Host");
    char name[256];
    if (!host || !*host) {
        http_reply_error(req, 400, "bad_request", "A Host header is required.");
        return 400;
    }
    /* The host name without its port ("[v6]:port" keeps the brackets). */
    snprintf(name, sizeof name, "%s", host);
    char *colon = strrchr(name, ':');
    if (colon && (name[0] != '[' || (colon > name && colon[-1] == ']')))
        *colon = '\0';
    for (char *c = name; *c; c++) {
        if (*c == '/' || *c == '\\' || *c == '@' || (unsigned char)*c <= ' ') {
            http_reply_error(req, 400, "bad_request", "Invalid Host header.");
            return 400;
        }
    }
    char loc[12288];
    int port = a->w->cfg->https_port;
    if (port == 443 || port == 0)
        snprintf(loc, sizeof loc, "https://%s%s", name, http_req_target(req));
    else
        snprintf(loc, sizeof loc, "https://%s:%d%s", name, port, http_req_target(req));
    http_resp_header(req, "Location", loc);
    http_resp_close_after(req);
    http_reply(req, 301, NULL, NULL, 0);
    return 301;
}

static int write_docs(const gw_answer *a, void *ud)
{
    (void)ud;
    return gw_static_docs(a->w->statics, a->req, a->path);
}

/* The access line of an ACME challenge, once the file was read. */
typedef struct acme_log {
    gw_worker *w;
    uint64_t t0;
    char client[64];
    char path[];
} acme_log;

static void acme_logged(http_req *req, int status, void *ud)
{
    acme_log *al = ud;
    if (al) {
        answer_log(al->w, req, al->path, al->client, "acme", status, al->t0);
        free(al);
    }
}

static const char acme_prefix[] = "/.well-known/acme-challenge/";

static int write_acme(const gw_answer *a, void *ud)
{
    (void)ud;
    acme_log *al = NULL;
    if (a->w->cfg->access_log) {
        al = xmalloc(sizeof *al + strlen(a->path) + 1);
        al->w = a->w;
        al->t0 = a->t0;
        snprintf(al->client, sizeof al->client, "%s", a->client);
        strcpy(al->path, a->path);
    }
    gw_static_acme(a->w->statics, a->req, a->path + sizeof acme_prefix - 1, acme_logged, al);
    return 0; /* logged by acme_logged */
}

static int write_not_found(const gw_answer *a, void *ud)
{
    (void)ud;
    http_reply_error(a->req, 404, "not_found", "Not found.");
    return 404;
}

int gw_builtin_handle(gw_answer *a)
{
    const gw_config *c = a->w->cfg;
    const char *path = a->path;
    gw_answer_fn fn = NULL;
    a->route = NULL;
    a->csp = GW_CSP_API;
    if (strncmp(path, acme_prefix, sizeof acme_prefix - 1) == 0 && c->acme_webroot[0]) {
        fn = write_acme;
    } else if (!http_req_is_tls(a->req) && c->http_redirect && c->https_port) {
        fn = write_redirect;
        a->route = "redirect";
    } else if (gw_path_blocked(path)) {
        fn = write_not_found;
    } else if (strcmp(path, "/health") == 0) {
        fn = write_health;
        a->route = "health";
    } else if (strcmp(path, "/docs") == 0 || strncmp(path, "/docs/", 6) == 0) {
        fn = write_docs;
        a->route = "docs";
        a->csp = GW_CSP_DOCS;
    }
    if (!fn)
        return 0;
    gw_answer_with(a, fn, NULL);
    return 1;
}
