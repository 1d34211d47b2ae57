/* internal: POST /internal/documents/{id}/ocr, POST /internal/documents/{id}/archive and
 * POST /internal/jobs/lost (see internal.h and the workers' contract). Each status change is
 * one UPDATE whose condition keeps the order of states: "processing" only moves a queued or
 * processing job, "failed" never replaces "done", a repeat changes nothing and answers 204. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs.h"
#include "log.h"
#include "metrics.h"
#include "storage.h"
#include "xalloc.h"

#define INTERNAL_MAX_BODY (16 * 1024 * 1024) /* OCR text of many pages */
#define INTERNAL_MAX_LOST 1000

/* WITH u AS (<update>) ...: whether the document exists and whether the update applied. */
#define INTERNAL_REPORT(update)                                                                    \
    "WITH u AS (" update " RETURNING 1) SELECT EXISTS (SELECT 1 FROM documents WHERE id = $1) "    \
    "AS found, (SELECT count(*) FROM u) AS changed"

static const struct internal_op {
    const char *kind, *status;
    int nparams;
    const char *sql;
} internal_ops[] = {
    {"ocr", "processing", 1,
     INTERNAL_REPORT("UPDATE documents SET ocr_status = 'processing', updated_at = now() "
                     "WHERE id = $1 AND ocr_status IN ('queued', 'processing')")},
    {"ocr", "done", 4,
     INTERNAL_REPORT("UPDATE documents SET ocr_status = 'done', ocr_text = $2, ocr_confidence = "
                     "$3::double precision, ocr_pages = $4::integer, ocr_error = NULL, "
                     "updated_at = now() WHERE id = $1 AND ocr_status <> 'done'")},
    {"ocr", "failed", 2,
     INTERNAL_REPORT("UPDATE documents SET ocr_status = 'failed', ocr_error = $2, updated_at = "
                     "now() WHERE id = $1 AND ocr_status IN ('queued', 'processing')")},
    {"archive", "processing", 1,
     INTERNAL_REPORT("UPDATE documents SET archive_status = 'processing', updated_at = now() "
                     "WHERE id = $1 AND archive_status IN ('queued', 'processing')")},
    {"archive", "done", 2,
     INTERNAL_REPORT("UPDATE documents SET archive_status = 'done', archive_location = $2, "
                     "archive_error = NULL, updated_at = now() WHERE id = $1 AND "
                     "archive_status <> 'done'")},
    {"archive", "failed", 2,
     INTERNAL_REPORT("UPDATE documents SET archive_status = 'failed', archive_error = $2, "
                     "updated_at = now() WHERE id = $1 AND archive_status IN ('queued', "
                     "'processing')")},
};

typedef struct internal_call {
    http_req *req;
    const struct internal_op *op;
    int dead;
} internal_call;

static void internal_count(const struct internal_op *op, int dead)
{
    const char *outcome = strcmp(op->status, "done") == 0 ? "done" : dead ? "dead" : "failed";
    char labels[96];
    snprintf(labels, sizeof labels, "stream=\"jobs:%s\",outcome=\"%s\"", op->kind, outcome);
    metric_inc(
        metrics_counter("storage_jobs_total", "Job results reported by the workers.", labels));
}

static void internal_reported(pg_status st, PGresult *res, void *ud)
{
    internal_call *c = ud;
    http_req *req = c->req;
    if (st != PG_OK) {
        service_reply_pg_error(req, st, res);
    } else if (strcmp(pg_get(res, 0, "found"), "t") != 0) {
        http_reply_error(req, 404, "not_found", "No such document.");
    } else {
        if (strcmp(pg_get(res, 0, "changed"), "0") != 0 && strcmp(c->op->status, "processing"))
            internal_count(c->op, c->dead);
        http_reply(req, 204, NULL, NULL, 0);
    }
    free(c);
}

static void internal_bad(http_req *req, const char *msg)
{
    http_reply_error(req, 400, "invalid_request", msg);
}

static void internal_report(http_req *req, const char *kind)
{
    const char *id = http_req_param(req, "id");
    if (!id || !storage_is_uuid(id)) {
        http_reply_error(req, 404, "not_found", "No such document.");
        return;
    }
    json_t *body = http_req_json(req);
    if (!body)
        return;
    const char *status = NULL, *text = NULL, *error = NULL, *location = NULL;
    json_t *conf = NULL, *pages = NULL, *dead = NULL;
    json_error_t jerr;
    const char *fmt =
        strcmp(kind, "ocr") == 0 ? "{s:s, s?s, s?o, s?o, s?s, s?o}" : "{s:s, s?s, s?s, s?o}";
    int rc =
        strcmp(kind, "ocr") == 0
            ? json_unpack_ex(body, &jerr, JSON_STRICT, fmt, "status", &status, "text", &text,
                             "confidence", &conf, "pages", &pages, "error", &error, "dead", &dead)
            : json_unpack_ex(body, &jerr, JSON_STRICT, fmt, "status", &status, "location",
                             &location, "error", &error, "dead", &dead);
    const struct internal_op *op = NULL;
    for (size_t i = 0; rc == 0 && i < sizeof internal_ops / sizeof internal_ops[0]; i++)
        if (strcmp(internal_ops[i].kind, kind) == 0 && strcmp(internal_ops[i].status, status) == 0)
            op = &internal_ops[i];
    if (!op) {
        json_decref(body);
        return internal_bad(req, strcmp(kind, "ocr") == 0
                                     ? "Expected {\"status\":\"processing\"|\"done\"|\"failed\", "
                                       "\"text\"?, \"confidence\"?, \"pages\"?, \"error\"?, "
                                       "\"dead\"?}."
                                     : "Expected {\"status\":\"processing\"|\"done\"|\"failed\", "
                                       "\"location\"?, \"error\"?, \"dead\"?}.");
    }
    if ((conf && !json_is_number(conf) && !json_is_null(conf)) ||
        (pages && !json_is_integer(pages) && !json_is_null(pages)) ||
        (dead && !json_is_boolean(dead) && !json_is_null(dead))) {
        json_decref(body);
        return internal_bad(req, "\"confidence\" is a number, \"pages\" an integer, \"dead\" a "
                                 "boolean.");
    }
    if (strcmp(op->kind, "archive") == 0 && strcmp(op->status, "done") == 0 &&
        (!location ||
         (strncmp(location, "s3://", 5) != 0 && strncmp(location, "file://", 7) != 0) ||
         strlen(location) > 2048)) {
        json_decref(body);
        return internal_bad(req, "An archive \"done\" needs a \"location\" (s3:// or file://).");
    }
    char confbuf[32] = "", pagesbuf[24] = "";
    if (conf && json_is_number(conf))
        snprintf(confbuf, sizeof confbuf, "%.3f", json_number_value(conf));
    if (pages && json_is_integer(pages))
        snprintf(pagesbuf, sizeof pagesbuf, "%lld", (long long)json_integer_value(pages));
    char err[1024];
    snprintf(err, sizeof err, "%s", error && error[0] ? error : "failed");
    const char *params[4] = {id, NULL, NULL, NULL};
    if (strcmp(op->status, "failed") == 0) {
        params[1] = err;
    } else if (strcmp(op->status, "done") == 0 && strcmp(op->kind, "ocr") == 0) {
        params[1] = text ? text : "";
        params[2] = confbuf[0] ? confbuf : NULL;
        params[3] = pagesbuf[0] ? pagesbuf : NULL;
    } else if (strcmp(op->status, "done") == 0) {
        params[1] = location;
    }
    internal_call *c = xcalloc(1, sizeof *c);
    c->req = req;
    c->op = op;
    c->dead = dead && json_is_true(dead);
    pg_query(storage.svc.pg, op->sql, op->nparams, params, internal_reported, c);
    json_decref(body);
}

static void internal_ocr(http_req *req, const auth_identity *who)
{
    (void)who;
    internal_report(req, "ocr");
}

static void internal_archive(http_req *req, const auth_identity *who)
{
    (void)who;
    internal_report(req, "archive");
}

/* ---- POST /internal/jobs/lost ---- */

static void internal_lost_marked(pg_status st, PGresult *res, void *ud)
{
    http_req *req = ud;
    if (st != PG_OK) {
        service_reply_pg_error(req, st, res);
        return;
    }
    log_info(http_req_id(req), "jobs: %s document(s) marked for re-enqueueing", PQcmdTuples(res));
    jobs_sweep_soon();
    http_reply(req, 204, NULL, NULL, 0);
}

static const char *const internal_lost_sql[] = {
    "UPDATE documents SET ocr_job = 'lost', ocr_job_at = now() WHERE ocr_status IN ('queued', "
    "'processing') AND ocr_job IN (SELECT json_array_elements_text($1::json))",
    "UPDATE documents SET archive_job = 'lost', archive_job_at = now() WHERE archive_status IN "
    "('queued', 'processing') AND archive_job IN (SELECT json_array_elements_text($1::json))",
};

static void internal_lost(http_req *req, const auth_identity *who)
{
    (void)who;
    json_t *body = http_req_json(req);
    if (!body)
        return;
    const char *stream = NULL;
    json_t *ids = NULL;
    json_error_t jerr;
    const char *kind = NULL;
    int ok = json_unpack_ex(body, &jerr, JSON_STRICT, "{s:s, s:o}", "stream", &stream, "ids",
                            &ids) == 0 &&
             (kind = jobs_kind_of_stream(stream)) && json_is_array(ids) &&
             json_array_size(ids) <= INTERNAL_MAX_LOST;
    size_t i;
    json_t *v;
    json_array_foreach(ok ? ids : NULL, i, v) ok &= json_is_string(v) && json_string_length(v) < 64;
    if (!ok) {
        json_decref(body);
        return internal_bad(req, "Expected {\"stream\":\"jobs:ocr\"|\"jobs:archive\", \"ids\":[up "
                                 "to 1000 entry ids]}.");
    }
    char *list = json_dumps(ids, JSON_COMPACT);
    const char *params[] = {list};
    pg_query(storage.svc.pg, internal_lost_sql[strcmp(kind, "ocr") == 0 ? 0 : 1], 1, params,
             internal_lost_marked, req);
    free(list);
    json_decref(body);
}

void internal_routes(router *r)
{
    router_add_service(r, "POST", "/internal/documents/{id}/ocr", internal_ocr, INTERNAL_MAX_BODY);
    router_add_service(r, "POST", "/internal/documents/{id}/archive", internal_archive,
                       INTERNAL_MAX_BODY);
    router_add_service(r, "POST", "/internal/jobs/lost", internal_lost, 64 * 1024);
}
