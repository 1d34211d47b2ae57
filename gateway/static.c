/* static: /docs and ACME challenge files (see static.h). */
#include "static.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gzip.h"
#include "log.h"
#include "xalloc.h"

typedef struct gw_file {
    const char *name; /* under /docs/ */
    const char *type;
    const char *cache; /* Cache-Control */
    char *data, *gz;
    size_t len, gzlen;
    char etag[24];
} gw_file;

struct gw_static {
    char acme_root[1024];
    gw_file files[12];
    size_t nfiles;
};

/* Served instead of the package's swagger-initializer.js: our spec, no petstore. */
static const char initializer_js[] =
    "window.onload = function () {\n"
    "  window.ui = SwaggerUIBundle({\n"
    "    url: \"/docs/openapi.yaml\",\n"
    "    dom_id: \"#swagger-ui\",\n"
    "    deepLinking: true,\n"
    "    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],\n"
    "    plugins: [SwaggerUIBundle.plugins.DownloadUrl],\n"
    "    layout: \"StandaloneLayout\"\n"
    "  });\n"
    "};\n";

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            buf = xrealloc(buf, cap);
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    *len = n;
    return buf;
}

static void add_file(gw_static *s, const char *name, const char *type, const char *cache,
                     char *data, size_t len)
{
    gw_file *f = &s->files[s->nfiles++];
    f->name = name;
    f->type = type;
    f->cache = cache;
    f->data = data;
    f->len = len;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)data[i]) * 1099511628211ull;
    snprintf(f->etag, sizeof f->etag, "\"%016llx\"", (unsigned long long)h);
    if (len >= 1024 && gw_gzip_type_ok(type) && gw_gzip_buffer(data, len, &f->gz, &f->gzlen) != 0)
        f->gz = NULL;
}

gw_static *gw_static_new(const gw_config *c)
{
    gw_static *s = xcalloc(1, sizeof *s);
    snprintf(s->acme_root, sizeof s->acme_root, "%s", c->acme_webroot);
    static const struct {
        const char *name, *type;
    } dist[] = {
        {"index.html", "text/html; charset=utf-8"},
        {"index.css", "text/css"},
        {"swagger-ui.css", "text/css"},
        {"swagger-ui-bundle.js", "application/javascript"},
        {"swagger-ui-standalone-preset.js", "application/javascript"},
        {"favicon-32x32.png", "image/png"},
        {"favicon-16x16.png", "image/png"},
    };
    for (size_t i = 0; i < sizeof dist / sizeof dist[0]; i++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", c->docs_dir, dist[i].name);
        size_t len;
        char *data = read_file(path, &len);
        if (!data) {
            log_warn(NULL, "docs: cannot read %s (run deploy/python-deps)", path);
            continue;
        }
        add_file(s, dist[i].name, dist[i].type,
                 strcmp(dist[i].name, "index.html") == 0 ? "no-cache" : "public, max-age=86400",
                 data, len);
    }
    char *init = xstrdup(initializer_js);
    add_file(s, "swagger-initializer.js", "application/javascript", "no-cache", init, strlen(init));
    size_t len;
    char *spec = read_file(c->openapi, &len);
    if (spec)
        add_file(s, "openapi.yaml", "application/yaml", "no-cache", spec, len);
    else
        log_warn(NULL, "docs: cannot read %s", c->openapi);
    return s;
}

void gw_static_free(gw_static *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nfiles; i++) {
        free(s->files[i].data);
        free(s->files[i].gz);
    }
    free(s);
}

int gw_static_docs(gw_static *s, http_req *req, const char *path)
{
    if (strcmp(path, "/docs") == 0) {
        const char *q = http_req_query(req);
        char loc[2048];
        snprintf(loc, sizeof loc, "/docs/%s%s", *q ? "?" : "", q);
        http_resp_header(req, "Location", loc);
        http_reply(req, 301, NULL, NULL, 0);
        return 301;
    }
    const char *name = path + strlen("/docs/");
    if (*name == '\0')
        name = "index.html";
    gw_file *f = NULL;
    for (size_t i = 0; i < s->nfiles && !f; i++)
        if (strcmp(s->files[i].name, name) == 0)
            f = &s->files[i];
    if (!f) {
        http_reply_error(req, 404, "not_found", "No such document.");
        return 404;
    }
    const char *method = http_req_method(req);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        http_resp_header(req, "Allow", "GET, HEAD");
        http_reply_error(req, 405, "method_not_allowed", "Only GET and HEAD are allowed here.");
        return 405;
    }
    http_resp_header(req, "Cache-Control", f->cache);
    http_resp_header(req, "ETag", f->etag);
    if (f->gz)
        http_resp_header(req, "Vary", "Accept-Encoding");
    const char *inm = http_req_header(req, "If-None-Match");
    if (inm && strstr(inm, f->etag)) {
        http_reply(req, 304, NULL, NULL, 0);
        return 304;
    }
    if (f->gz && gw_gzip_accepted(http_req_header(req, "Accept-Encoding"))) {
        http_resp_header(req, "Content-Encoding", "gzip");
        http_reply(req, 200, f->type, f->gz, f->gzlen);
        return 200;
    }
    http_reply(req, 200, f->type, f->data, f->len);
    return 200;
}

/* ---- ACME: the file is read on the threadpool ---- */

typedef struct acme_job {
    uv_work_t work;
    http_req *req;
    gw_static_done_fn done;
    void *ud;
    char path[1400];
    char *data;
    size_t len;
} acme_job;

static void acme_read(uv_work_t *w)
{
    acme_job *j = w->data;
    j->data = read_file(j->path, &j->len);
    if (j->data && j->len > 65536) {
        free(j->data);
        j->data = NULL;
    }
}

static void acme_done(uv_work_t *w, int status)
{
    acme_job *j = w->data;
    int code = status == 0 && j->data ? 200 : 404;
    if (code == 200)
        http_reply(j->req, 200, "text/plain", j->data, j->len);
    else
        http_reply_error(j->req, 404, "not_found", "No such challenge.");
    j->done(j->req, code, j->ud);
    free(j->data);
    free(j);
}

void gw_static_acme(gw_static *s, http_req *req, const char *token, gw_static_done_fn done,
                    void *ud)
{
    size_t n = strlen(token);
    int ok = n > 0 && n <= 256 && s->acme_root[0];
    for (size_t i = 0; ok && i < n; i++) {
        char ch = token[i];
        ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
             ch == '-' || ch == '_';
    }
    if (!ok) {
        http_reply_error(req, 404, "not_found", "No such challenge.");
        done(req, 404, ud);
        return;
    }
    acme_job *j = xcalloc(1, sizeof *j);
    j->req = req;
    j->done = done;
    j->ud = ud;
    j->work.data = j;
    snprintf(j->path, sizeof j->path, "%s/.well-known/acme-challenge/%s", s->acme_root, token);
    if (uv_queue_work(http_req_loop(req), &j->work, acme_read, acme_done) != 0) {
        free(j);
        http_reply_error(req, 503, "unavailable", "Cannot read the challenge now.");
        done(req, 503, ud);
    }
}
