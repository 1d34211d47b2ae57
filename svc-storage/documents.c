/* documents: GET /documents, GET /documents/{id}, GET /documents/{id}/content and
 * DELETE /documents/{id} (see documents.h). A document of another organization answers 404
 * exactly as a missing one, and so does an id that is not a uuid. */
#include "documents.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "docname.h"
#include "log.h"
#include "query.h"
#include "storage.h"
#include "xalloc.h"

#define DOCS_LIST_DEFAULT 20
#define DOCS_LIST_MAX     100
#define DOCS_CHUNK        (64 * 1024)

storage_app storage;

/* ---- shared helpers (storage.h) ---- */

void storage_file_dir(const char *id, char *out, size_t cap)
{
    snprintf(out, cap, "%s/files/%.2s", storage.dir, id);
}

void storage_file_rel(const char *id, char *out, size_t cap)
{
    snprintf(out, cap, "files/%.2s/%s", id, id);
}

void storage_file_path(const char *id, char *out, size_t cap)
{
    snprintf(out, cap, "%s/files/%.2s/%s", storage.dir, id, id);
}

void storage_new_uuid(char out[37])
{
    uint8_t b[16];
    crypto_random(b, sizeof b);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    char hex[33];
    crypto_hex(b, sizeof b, hex);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

int storage_is_uuid(const char *s)
{
    for (int i = 0; i < 36; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : crypto_hex_value((unsigned char)s[i]) < 0)
            return 0;
    }
    return s[36] == '\0';
}

static json_t *docs_str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

json_t *doc_json(const PGresult *res, int r, int with_text)
{
    json_t *tags = json_loads(pg_get(res, r, "tags"), 0, NULL);
    json_t *ocr = json_pack("{s:s}", "status", pg_get(res, r, "ocr_status"));
    const char *v;
    if (with_text && (v = pg_get(res, r, "ocr_text")))
        json_object_set_new(ocr, "text", json_string(v));
    if ((v = pg_get(res, r, "ocr_confidence")))
        json_object_set_new(ocr, "confidence", json_real(strtod(v, NULL)));
    if ((v = pg_get(res, r, "ocr_pages")))
        json_object_set_new(ocr, "pages", json_integer(strtol(v, NULL, 10)));
    if ((v = pg_get(res, r, "ocr_error")))
        json_object_set_new(ocr, "error", json_string(v));
    json_t *archive = json_pack("{s:s}", "status", pg_get(res, r, "archive_status"));
    if ((v = pg_get(res, r, "archive_location")))
        json_object_set_new(archive, "location", json_string(v));
    if ((v = pg_get(res, r, "archive_error")))
        json_object_set_new(archive, "error", json_string(v));
    return json_pack("{s:s, s:s, s:o, s:s, s:I, s:s, s:o, s:s, s:o, s:o}", "id",
                     pg_get(res, r, "id"), "filename", pg_get(res, r, "filename"), "title",
                     docs_str_or_null(pg_get(res, r, "title")), "content_type",
                     pg_get(res, r, "content_type"), "size",
                     (json_int_t)strtoll(pg_get(res, r, "size"), NULL, 10), "sha256",
                     pg_get(res, r, "sha256"), "tags", tags ? tags : json_array(), "created_at",
                     pg_get(res, r, "created_at"), "ocr", ocr, "archive", archive);
}

static void docs_not_found(http_req *req)
{
    http_reply_error(req, 404, "not_found", "No such document.");
}

/* 1 when the query of one document found it; else 0 with the answer given (the database's
 * error, or 404). */
static int docs_found(http_req *req, pg_status st, const PGresult *res)
{
    if (st != PG_OK)
        service_reply_pg_error(req, st, res);
    else if (PQntuples(res) == 0)
        docs_not_found(req);
    else
        return 1;
    return 0;
}

/* Runs sql on the document of the {id} parameter ($1) in the caller's organization ($2), cb
 * getting req; an {id} that is not a uuid is answered 404 at once. */
static void docs_query_id(http_req *req, const auth_identity *who, const char *sql, pg_query_fn cb)
{
    const char *id = http_req_param(req, "id");
    if (!id || !storage_is_uuid(id)) {
        docs_not_found(req);
        return;
    }
    const char *params[] = {id, who->org};
    pg_query(storage.svc.pg, sql, 2, params, cb, req);
}

/* ---- GET /documents ---- */

/* The list as API.md's lists: {"data": [...], "has_more": bool}, newest first, paged with
 * ?limit= and ?starting_after=<id of the last document of the previous page>. */
typedef struct docs_page {
    http_req *req;
    char org[64], tag[128], sha[72], text[512], after[40];
    int has_tag, has_sha, has_text, has_after, limit;
} docs_page;

static void docs_listed(pg_status st, PGresult *res, void *ud)
{
    docs_page *p = ud;
    http_req *req = p->req;
    int limit = p->limit;
    free(p);
    if (st != PG_OK) {
        service_reply_pg_error(req, st, res);
        return;
    }
    int n = PQntuples(res);
    json_t *docs = json_array();
    for (int r = 0; r < n && r < limit; r++)
        json_array_append_new(docs, doc_json(res, r, 0));
    http_reply_json(req, 200, json_pack("{s:o, s:b}", "data", docs, "has_more", n > limit));
}

/* Runs the page's query; after_ts is the created_at of starting_after (NULL: first page). */
static void docs_list_run(docs_page *p, const char *after_ts)
{
    char lim[16];
    snprintf(lim, sizeof lim, "%d", p->limit + 1); /* one more tells has_more */
    const char *params[] = {p->org,
                            p->has_tag ? p->tag : NULL,
                            p->has_sha ? p->sha : NULL,
                            p->has_text ? p->text : NULL,
                            after_ts,
                            after_ts ? p->after : NULL,
                            lim};
    pg_query(storage.svc.pg,
             "SELECT " DOC_COLS " FROM documents "
             "WHERE org_id = $1 AND ($2::text IS NULL OR $2 = ANY (tags)) "
             "AND ($3::text IS NULL OR sha256 = $3) "
             "AND ($4::text IS NULL OR search @@ websearch_to_tsquery('english', $4)) "
             "AND ($5::timestamptz IS NULL OR (created_at, id) < ($5::timestamptz, $6::uuid)) "
             "ORDER BY created_at DESC, id DESC LIMIT $7",
             7, params, docs_listed, p);
}

static void docs_cursor_found(pg_status st, PGresult *res, void *ud)
{
    docs_page *p = ud;
    if (st != PG_OK || PQntuples(res) == 0) {
        http_req *req = p->req;
        free(p);
        if (st != PG_OK)
            service_reply_pg_error(req, st, res);
        else
            http_reply_error(req, 400, "invalid_query",
                             "\"starting_after\" is not the id of one of your documents.");
        return;
    }
    docs_list_run(p, pg_get(res, 0, "created_at"));
}

static void docs_bad(http_req *req, const char *msg)
{
    http_reply_error(req, 400, "invalid_query", msg);
}

static void docs_list(http_req *req, const auth_identity *who)
{
    const char *q = http_req_query(req);
    char buf[512];
    docs_page *p = xcalloc(1, sizeof *p);
    p->req = req;
    p->limit = DOCS_LIST_DEFAULT;
    snprintf(p->org, sizeof p->org, "%s", who->org);
    int has = query_param(q, "limit", buf, sizeof buf);
    if (has != 0) {
        char *end;
        long v = has > 0 ? strtol(buf, &end, 10) : 0;
        if (has < 0 || !buf[0] || *end || v < 1 || v > DOCS_LIST_MAX) {
            free(p);
            return docs_bad(req, "\"limit\" must be an integer from 1 to 100.");
        }
        p->limit = (int)v;
    }
    p->has_tag = query_param(q, "tag", p->tag, sizeof p->tag);
    p->has_sha = query_param(q, "sha256", p->sha, sizeof p->sha);
    p->has_text = query_param(q, "q", p->text, sizeof p->text);
    p->has_after = query_param(q, "starting_after", p->after, sizeof p->after);
    const char *bad = NULL;
    if (p->has_tag < 0 || p->has_text < 0)
        bad = "\"tag\" and \"q\" must be UTF-8 text of reasonable length.";
    else if (p->has_after < 0 || (p->has_after && !storage_is_uuid(p->after)))
        bad = "\"starting_after\" is not the id of one of your documents.";
    else if (p->has_sha < 0 || (p->has_sha && strlen(p->sha) != 64))
        bad = "\"sha256\" must be 64 hex digits.";
    for (size_t i = 0; !bad && p->has_sha && i < 64; i++) {
        if (crypto_hex_value((unsigned char)p->sha[i]) < 0)
            bad = "\"sha256\" must be 64 hex digits.";
        else if (p->sha[i] >= 'A' && p->sha[i] <= 'F')
            p->sha[i] = (char)(p->sha[i] - 'A' + 'a');
    }
    if (bad) {
        free(p);
        return docs_bad(req, bad);
    }
    p->has_text = p->has_text && p->text[0];
    if (!p->has_after)
        return docs_list_run(p, NULL);
    const char *params[] = {p->after, p->org};
    pg_query(storage.svc.pg,
             "SELECT created_at::text AS created_at FROM documents WHERE id = $1 AND org_id = $2",
             2, params, docs_cursor_found, p);
}

/* ---- GET /documents/{id} ---- */

static void docs_got(pg_status st, PGresult *res, void *ud)
{
    http_req *req = ud;
    if (docs_found(req, st, res))
        http_reply_json(req, 200, doc_json(res, 0, 1));
}

static void docs_get(http_req *req, const auth_identity *who)
{
    docs_query_id(req, who, "SELECT " DOC_COLS " FROM documents WHERE id = $1 AND org_id = $2",
                  docs_got);
}

/* ---- GET /documents/{id}/content ---- */

typedef struct docs_send {
    http_req *req;
    uv_loop_t *loop;
    uv_fs_t fs;
    uv_file fd;
    int64_t pos, end; /* next byte to read, last byte to send */
    char *chunk;
    char id[37], org[64], etag[68], type[128], disposition[DOCNAME_DISPOSITION_MAX];
    char path[PATH_MAX];
    int64_t size;
    const char *range;
    int fetched; /* the archive was asked once already */
} docs_send;

static void docs_send_free(docs_send *s)
{
    free(s->chunk);
    free(s);
}

static void docs_send_closed(uv_fs_t *fs)
{
    docs_send *s = fs->data;
    uv_fs_req_cleanup(fs);
    docs_send_free(s);
}

/* Ends the response (aborted when it broke midway), closes the file, frees. */
static void docs_send_end(docs_send *s, int ok)
{
    if (s->req) {
        if (ok)
            http_resp_end(s->req);
        else
            http_resp_abort(s->req);
        s->req = NULL;
    }
    s->fs.data = s;
    uv_fs_close(s->loop, &s->fs, s->fd, docs_send_closed);
}

static void docs_send_next(docs_send *s);

static void docs_chunk_sent(http_req *req, int status, void *ud)
{
    (void)req;
    docs_send *s = ud;
    if (status < 0) {
        docs_send_end(s, 0);
        return;
    }
    docs_send_next(s);
}

static void docs_chunk_read(uv_fs_t *fs)
{
    docs_send *s = fs->data;
    ssize_t n = fs->result;
    uv_fs_req_cleanup(fs);
    if (n <= 0) {
        if (n < 0)
            log_error(http_req_id(s->req), "content: read %s: %s", s->path, uv_strerror((int)n));
        docs_send_end(s, 0);
        return;
    }
    s->pos += n;
    if (http_resp_write(s->req, s->chunk, (size_t)n, docs_chunk_sent, s) != 0)
        docs_send_end(s, 0);
}

static void docs_send_next(docs_send *s)
{
    if (s->pos > s->end) {
        docs_send_end(s, 1);
        return;
    }
    int64_t want = s->end - s->pos + 1;
    uv_buf_t b = uv_buf_init(s->chunk, (unsigned)(want < DOCS_CHUNK ? want : DOCS_CHUNK));
    s->fs.data = s;
    uv_fs_read(s->loop, &s->fs, s->fd, &b, 1, s->pos, docs_chunk_read);
}

/* The file is open: the head (200, 206 or 416), then the bytes. */
static void docs_send_start(docs_send *s)
{
    http_req *req = s->req;
    http_resp_header(req, "ETag", s->etag);
    http_resp_header(req, "Accept-Ranges", "bytes");
    http_resp_header(req, "X-Content-Type-Options", "nosniff");
    http_resp_header(req, "Cache-Control", "private, no-cache");
    int64_t a = 0, b = s->size - 1;
    int rc = docname_range(http_req_header(req, "Range"), s->size, &a, &b);
    const char *if_range = http_req_header(req, "If-Range");
    if (rc != 0 && if_range && strcmp(if_range, s->etag) != 0)
        rc = 0, a = 0, b = s->size - 1;
    char cr[96];
    if (rc < 0) {
        snprintf(cr, sizeof cr, "bytes */%lld", (long long)s->size);
        http_resp_header(req, "Content-Range", cr);
        s->req = NULL;
        http_reply_error(req, 416, "range_not_satisfiable",
                         "The requested range is outside the document.");
        s->fs.data = s;
        uv_fs_close(s->loop, &s->fs, s->fd, docs_send_closed);
        return;
    }
    http_resp_header(req, "Content-Type", s->type);
    http_resp_header(req, "Content-Disposition", s->disposition);
    if (rc > 0) {
        snprintf(cr, sizeof cr, "bytes %lld-%lld/%lld", (long long)a, (long long)b,
                 (long long)s->size);
        http_resp_header(req, "Content-Range", cr);
    }
    s->pos = a;
    s->end = b;
    s->chunk = xmalloc(DOCS_CHUNK);
    http_resp_start(req, rc > 0 ? 206 : 200, b - a + 1);
    if (strcmp(http_req_method(req), "HEAD") == 0) {
        s->end = -1;
    }
    docs_send_next(s);
}

static void docs_fetch_back(docs_send *s);

static void docs_opened(uv_fs_t *fs)
{
    docs_send *s = fs->data;
    ssize_t fd = fs->result;
    uv_fs_req_cleanup(fs);
    if (fd < 0) {
        if (fd == UV_ENOENT && !s->fetched && storage.obj) {
            docs_fetch_back(s);
            return;
        }
        log_error(http_req_id(s->req), "content: open %s: %s", s->path, uv_strerror((int)fd));
        http_reply_error(s->req, fd == UV_ENOENT ? 404 : 500,
                         fd == UV_ENOENT ? "not_found" : "storage_error",
                         fd == UV_ENOENT ? "The document's content is gone."
                                         : "The document could not be read.");
        docs_send_free(s);
        return;
    }
    s->fd = (uv_file)fd;
    docs_send_start(s);
}

static void docs_open(docs_send *s)
{
    s->fs.data = s;
    uv_fs_open(s->loop, &s->fs, s->path, O_RDONLY | O_CLOEXEC, 0, docs_opened);
}

#include "evict.h"

static void docs_fetched(int rc, void *ud)
{
    docs_send *s = ud;
    s->fetched = 1;
    if (rc < 0) {
        http_reply_error(s->req, 503, "unavailable",
                         "The document's archived copy could not be fetched; retry later.");
        docs_send_free(s);
        return;
    }
    docs_open(s);
}

static void docs_fetch_back(docs_send *s)
{
    evict_fetch(s->loop, s->org, s->id, s->path, docs_fetched, s);
}

static int docs_etag_match(const char *inm, const char *etag)
{
    if (!inm)
        return 0;
    if (strcmp(inm, "*") == 0)
        return 1;
    size_t el = strlen(etag);
    for (const char *p = inm; (p = strstr(p, etag)); p += el) {
        int start = p == inm || p[-1] == ' ' || p[-1] == ',' || p[-1] == '/';
        int stop = p[el] == '\0' || p[el] == ',' || p[el] == ' ';
        if (start && stop)
            return 1;
    }
    return 0;
}

static void docs_content_row(pg_status st, PGresult *res, void *ud)
{
    http_req *req = ud;
    if (!docs_found(req, st, res))
        return;
    docs_send *s = xcalloc(1, sizeof *s);
    s->req = req;
    s->loop = http_req_loop(req);
    s->fd = -1;
    snprintf(s->id, sizeof s->id, "%s", pg_get(res, 0, "id"));
    snprintf(s->org, sizeof s->org, "%s", pg_get(res, 0, "org_id"));
    snprintf(s->etag, sizeof s->etag, "\"%s\"", pg_get(res, 0, "sha256"));
    snprintf(s->type, sizeof s->type, "%s", pg_get(res, 0, "content_type"));
    docname_disposition(pg_get(res, 0, "filename"), s->disposition, sizeof s->disposition);
    s->size = strtoll(pg_get(res, 0, "size"), NULL, 10);
    storage_file_path(s->id, s->path, sizeof s->path);
    if (docs_etag_match(http_req_header(req, "If-None-Match"), s->etag)) {
        http_resp_header(req, "ETag", s->etag);
        http_reply(req, 304, NULL, NULL, 0);
        docs_send_free(s);
        return;
    }
    docs_open(s);
}

static void docs_content(http_req *req, const auth_identity *who)
{
    docs_query_id(req, who,
                  "SELECT id, org_id, filename, content_type, size, sha256 FROM documents "
                  "WHERE id = $1 AND org_id = $2",
                  docs_content_row);
}

/* ---- DELETE /documents/{id} ---- */

typedef struct docs_del {
    uv_fs_t fs;
    char org[64], id[37];
    int archived;
} docs_del;

static void docs_unlinked(uv_fs_t *fs)
{
    docs_del *d = fs->data;
    uv_fs_req_cleanup(fs);
    if (d->archived)
        evict_delete_archived(fs->loop, d->org, d->id);
    free(d);
}

static void docs_deleted(pg_status st, PGresult *res, void *ud)
{
    http_req *req = ud;
    if (!docs_found(req, st, res))
        return;
    docs_del *d = xcalloc(1, sizeof *d);
    snprintf(d->id, sizeof d->id, "%s", pg_get(res, 0, "id"));
    snprintf(d->org, sizeof d->org, "%s", pg_get(res, 0, "org_id"));
    d->archived = pg_get(res, 0, "archive_location") != NULL;
    char path[PATH_MAX];
    storage_file_path(d->id, path, sizeof path);
    d->fs.data = d;
    uv_fs_unlink(http_req_loop(req), &d->fs, path, docs_unlinked);
    http_reply(req, 204, NULL, NULL, 0);
}

static void docs_delete(http_req *req, const auth_identity *who)
{
    docs_query_id(req, who,
                  "DELETE FROM documents WHERE id = $1 AND org_id = $2 "
                  "RETURNING id, org_id, archive_location",
                  docs_deleted);
}

void documents_routes(router *r)
{
    router_add_auth(r, "GET", "/documents", docs_list, 0);
    router_add_auth(r, "GET", "/documents/{id}", docs_get, 0);
    router_add_auth(r, "GET", "/documents/{id}/content", docs_content, 0);
    router_add_auth(r, "DELETE", "/documents/{id}", docs_delete, 0);
}
