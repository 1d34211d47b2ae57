/* upload: POST /documents. The caller is authenticated before the body is read; the body is
 * then streamed: multipart/form-data (fields "file", "title", "tags": comma-separated and/or
 * repeated) through multipart.c, or any other Content-Type as the raw file with ?filename=
 * (and optional ?title=, ?tags=). File bytes go to STORAGE_DIR/tmp/<random> with uv_fs writes,
 * one at a time, the request paused while one is in flight; SHA-256 and size are computed on
 * the way and the type is decided by the first bytes (sniff.c). When complete the file is
 * renamed to files/<2 hex>/<id> and the row inserted with ON CONFLICT (org_id, sha256) DO
 * NOTHING: when the organization already has these bytes, our copy is unlinked and the
 * existing document answered 200 with "duplicate": true. On any failure or a cut connection
 * the file is unlinked and no row is left. */
#include "upload.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "crypto.h"
#include "docname.h"
#include "jobs.h"
#include "log.h"
#include "metrics.h"
#include "multipart.h"
#include "query.h"
#include "sniff.h"
#include "storage.h"
#include "utf8.h"
#include "xalloc.h"

#define UPLOAD_MP_OVERHEAD (64 * 1024) /* multipart framing and text fields beyond the file */
#define UPLOAD_FIELD_MAX   2000        /* bytes of a title or tags field */
#define UPLOAD_TITLE_CHARS 500
#define UPLOAD_TAGS_MAX    20
#define UPLOAD_TAG_MAX     64
#define UPLOAD_WRITE_MAX   (256 * 1024) /* bytes gathered while a write is in flight */

typedef enum { UP_PART_NONE, UP_PART_FILE, UP_PART_TITLE, UP_PART_TAGS } upload_part;

typedef struct upload {
    http_req *req; /* NULL once the reply is sent */
    uv_loop_t *loop;
    char org[64], user[64], rid[136];
    mp_parser *mp;
    upload_part part;
    int file_seen;
    buf field; /* the text field being read */
    char *title;
    json_t *tags;
    char filename[DOCNAME_MAX + 1];
    char id[37];
    char tmp_path[PATH_MAX], final_path[PATH_MAX];
    int tmp_exists, final_exists;
    uv_file fd;
    uv_fs_t fs;
    int fs_busy;
    crypto_sha256_ctx *sha;
    char sha_hex[65];
    uint64_t size, body_bytes;
    int64_t offset;
    unsigned char head[SNIFF_NEED];
    size_t headlen;
    const char *type;
    buf pending, writing;
    int body_done, finalizing, inserting, aborted;
} upload;

static void upload_cleanup(upload *u);
static void upload_finalize(upload *u);

/* ---- replies and the end of an upload ---- */

static void upload_reply_error(upload *u, int status, const char *code, const char *msg)
{
    http_req *req = u->req;
    if (!req)
        return;
    u->req = NULL;
    http_req_set_data(req, NULL);
    http_reply_error(req, status, code, msg);
}

/* Answers the error (when not yet answered) and removes what was written. */
static void upload_abort(upload *u, int status, const char *code, const char *msg)
{
    upload_reply_error(u, status, code, msg);
    if (u->aborted)
        return;
    u->aborted = 1;
    upload_cleanup(u);
}

static void upload_free(upload *u)
{
    if (u->req)
        upload_reply_error(u, 500, "internal", "The upload ended unexpectedly.");
    mp_free(u->mp);
    buf_free(&u->field);
    buf_free(&u->pending);
    buf_free(&u->writing);
    free(u->title);
    json_decref(u->tags);
    crypto_sha256_free(u->sha);
    free(u);
}

/* The result of the operation that ran on the upload's one uv_fs_t, which is free again. */
static ssize_t upload_fs_result(uv_fs_t *fs)
{
    upload *u = fs->data;
    ssize_t rc = fs->result;
    uv_fs_req_cleanup(fs);
    u->fs_busy = 0;
    return rc;
}

static void upload_cleanup_done(uv_fs_t *fs)
{
    upload *u = fs->data;
    if (fs->fs_type == UV_FS_CLOSE)
        u->fd = -1;
    else if (fs->fs_type == UV_FS_UNLINK && u->tmp_exists)
        u->tmp_exists = 0;
    else if (fs->fs_type == UV_FS_UNLINK)
        u->final_exists = 0;
    upload_fs_result(fs);
    upload_cleanup(u);
}

/* One step at a time (the one uv_fs_t): close the file, unlink the temporary and the final
 * copies that are not a committed document, then free. Waits for an operation in flight,
 * whose callback calls again. */
static void upload_cleanup(upload *u)
{
    if (u->fs_busy)
        return;
    u->fs.data = u;
    if (u->fd >= 0) {
        u->fs_busy = 1;
        uv_fs_close(u->loop, &u->fs, u->fd, upload_cleanup_done);
    } else if (u->tmp_exists) {
        u->fs_busy = 1;
        uv_fs_unlink(u->loop, &u->fs, u->tmp_path, upload_cleanup_done);
    } else if (u->final_exists) {
        u->fs_busy = 1;
        uv_fs_unlink(u->loop, &u->fs, u->final_path, upload_cleanup_done);
    } else {
        upload_free(u);
    }
}

/* 1 when the upload was aborted while its file operation ran: it is cleaned up then. */
static int upload_aborted(upload *u)
{
    if (!u->aborted)
        return 0;
    upload_cleanup(u);
    return 1;
}

static void upload_closed(http_req *req)
{
    upload *u = http_req_data(req);
    if (!u || u->inserting)
        return; /* the row is being written: the answer is dropped, the document kept */
    upload_abort(u, 400, "aborted", "The connection closed before the upload completed.");
}

/* ---- writing the file ---- */

static void upload_write_next(upload *u);

static void upload_written(uv_fs_t *fs)
{
    upload *u = fs->data;
    ssize_t n = upload_fs_result(fs);
    if (upload_aborted(u))
        return;
    if (n < 0) {
        log_error(u->rid, "upload: write %s: %s", u->tmp_path, uv_strerror((int)n));
        upload_abort(u, 500, "storage_error", "The file could not be written.");
        return;
    }
    u->offset += n;
    if ((size_t)n < u->writing.len) { /* a short write: the rest goes first */
        memmove(u->writing.p, u->writing.p + n, u->writing.len - (size_t)n);
        buf_truncate(&u->writing, u->writing.len - (size_t)n);
        buf later = u->pending;
        u->pending = u->writing;
        u->writing = (buf){0};
        buf_append(&u->pending, later.p, later.len);
        buf_free(&later);
    } else {
        buf_truncate(&u->writing, 0);
    }
    if (u->pending.len > 0)
        upload_write_next(u);
    else if (u->body_done)
        upload_finalize(u);
    else if (u->req)
        http_req_resume(u->req);
}

static void upload_write_next(upload *u)
{
    if (u->fs_busy || u->pending.len == 0)
        return;
    buf t = u->writing;
    u->writing = u->pending;
    u->pending = t;
    buf_truncate(&u->pending, 0);
    uv_buf_t b = uv_buf_init(u->writing.p, (unsigned)u->writing.len);
    u->fs.data = u;
    u->fs_busy = 1;
    uv_fs_write(u->loop, &u->fs, u->fd, &b, 1, u->offset, upload_written);
    if (u->req)
        http_req_pause(u->req);
}

/* Bytes of the file: limit, type, hash, then queued for writing. 0, or -1 after aborting. */
static int upload_file_bytes(upload *u, const char *data, size_t len)
{
    if (u->size + len > storage.max_upload) {
        upload_abort(u, 413, "too_large", "The file is larger than the upload limit.");
        return -1;
    }
    if (!u->type && u->headlen < SNIFF_NEED) {
        size_t n = SNIFF_NEED - u->headlen < len ? SNIFF_NEED - u->headlen : len;
        memcpy(u->head + u->headlen, data, n);
        u->headlen += n;
        if (u->headlen == SNIFF_NEED && !(u->type = sniff_type(u->head, u->headlen))) {
            upload_abort(u, 415, "unsupported_media_type",
                         "Only PNG, JPEG, TIFF and PDF files are accepted.");
            return -1;
        }
    }
    crypto_sha256_update(u->sha, data, len);
    u->size += len;
    buf_append(&u->pending, data, len);
    upload_write_next(u);
    return 0;
}

/* ---- multipart fields ---- */

static int upload_add_tags(upload *u, const char *s, size_t len)
{
    size_t i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && s[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && (s[a] == ' ' || s[a] == '\t'))
            a++;
        while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t'))
            b--;
        if (b > a) {
            if (b - a > UPLOAD_TAG_MAX || !utf8_valid(s + a, b - a))
                return -1;
            for (size_t k = a; k < b; k++)
                if ((unsigned char)s[k] < 0x20 || s[k] == 0x7f)
                    return -1;
            char *tag = xstrndup(s + a, b - a);
            int dup = 0;
            size_t k;
            json_t *t;
            json_array_foreach(u->tags, k, t) dup |= strcmp(json_string_value(t), tag) == 0;
            if (!dup) {
                if (json_array_size(u->tags) >= UPLOAD_TAGS_MAX) {
                    free(tag);
                    return -1;
                }
                json_array_append_new(u->tags, json_string(tag));
            }
            free(tag);
        }
        i = j + 1;
    }
    return 0;
}

static int upload_set_title(upload *u, const char *s, size_t len)
{
    if (u->title || !utf8_valid(s, len))
        return -1;
    size_t chars = 0;
    for (size_t i = 0; i < len; i++)
        chars += ((unsigned char)s[i] & 0xc0) != 0x80;
    if (chars > UPLOAD_TITLE_CHARS)
        return -1;
    u->title = xstrndup(s, len);
    return 0;
}

static int upload_on_part(void *ud, const mp_part *part)
{
    upload *u = ud;
    buf_truncate(&u->field, 0);
    if (strcmp(part->name, "file") == 0) {
        if (u->file_seen) {
            upload_abort(u, 400, "invalid_multipart", "Send one \"file\" part only.");
            return -1;
        }
        u->file_seen = 1;
        u->part = UP_PART_FILE;
        docname_sanitize(part->filename, strlen(part->filename), u->filename, sizeof u->filename);
    } else if (strcmp(part->name, "title") == 0) {
        u->part = UP_PART_TITLE;
    } else if (strcmp(part->name, "tags") == 0) {
        u->part = UP_PART_TAGS;
    } else {
        upload_abort(u, 400, "invalid_multipart",
                     "Unknown form field: the fields are \"file\", \"title\" and \"tags\".");
        return -1;
    }
    return 0;
}

static int upload_on_data(void *ud, const char *data, size_t len)
{
    upload *u = ud;
    if (u->part == UP_PART_FILE)
        return upload_file_bytes(u, data, len);
    if (u->field.len + len > UPLOAD_FIELD_MAX) {
        upload_abort(u, 400, "invalid_field", "A \"title\" or \"tags\" field is too long.");
        return -1;
    }
    buf_append(&u->field, data, len);
    return 0;
}

static int upload_on_part_end(void *ud)
{
    upload *u = ud;
    int rc = 0;
    if (u->part == UP_PART_TITLE)
        rc = upload_set_title(u, u->field.p ? u->field.p : "", u->field.len);
    else if (u->part == UP_PART_TAGS)
        rc = upload_add_tags(u, u->field.p ? u->field.p : "", u->field.len);
    if (rc != 0)
        upload_abort(u, 400, "invalid_field",
                     "\"title\" is one field of at most 500 characters; \"tags\" at most 20 "
                     "tags of 1 to 64 characters, UTF-8.");
    u->part = UP_PART_NONE;
    return rc;
}

static const mp_callbacks upload_mp_callbacks = {upload_on_part, upload_on_data,
                                                 upload_on_part_end};

/* ---- the body ---- */

static void upload_body_data(http_req *req, const char *data, size_t len)
{
    upload *u = http_req_data(req);
    if (!u || u->aborted)
        return;
    if (!u->mp) {
        upload_file_bytes(u, data, len);
        return;
    }
    u->body_bytes += len;
    if (u->body_bytes > storage.max_upload + UPLOAD_MP_OVERHEAD) {
        upload_abort(u, 413, "too_large", "The file is larger than the upload limit.");
        return;
    }
    if (mp_feed(u->mp, data, len) != 0 && !u->aborted)
        upload_abort(u, 400, "invalid_multipart", mp_error(u->mp));
}

static void upload_body_end(http_req *req)
{
    upload *u = http_req_data(req);
    if (!u || u->aborted)
        return;
    if (u->mp && mp_finish(u->mp) != 0) {
        upload_abort(u, 400, "invalid_multipart", mp_error(u->mp));
        return;
    }
    if (!u->file_seen) {
        upload_abort(u, 400, "missing_file", "The form has no \"file\" part.");
        return;
    }
    u->body_done = 1;
    if (!u->fs_busy && u->pending.len == 0)
        upload_finalize(u);
}

static void upload_opened(uv_fs_t *fs)
{
    upload *u = fs->data;
    ssize_t fd = upload_fs_result(fs);
    if (fd >= 0) {
        u->fd = (uv_file)fd;
        u->tmp_exists = 1;
    }
    if (upload_aborted(u))
        return;
    if (fd < 0) {
        log_error(u->rid, "upload: open %s: %s", u->tmp_path, uv_strerror((int)fd));
        upload_abort(u, 500, "storage_error", "The file could not be stored.");
        return;
    }
    http_req_stream_body(u->req, upload_body_data, upload_body_end);
}

/* ---- completion ---- */

static void upload_reply_doc(upload *u, int status, PGresult *res, int duplicate)
{
    json_t *doc = doc_json(res, 0, 0);
    if (duplicate)
        json_object_set_new(doc, "duplicate", json_true());
    http_req *req = u->req;
    u->req = NULL;
    if (req) {
        http_req_set_data(req, NULL);
        http_reply_json(req, status, doc);
    } else {
        json_decref(doc);
    }
}

static void upload_existing(pg_status st, PGresult *res, void *ud)
{
    upload *u = ud;
    if (st == PG_OK && PQntuples(res) == 1) {
        upload_reply_doc(u, 200, res, 1);
        metric_inc(
            metrics_counter("storage_uploads_total", "Uploads answered.", "result=\"duplicate\""));
    } else if (u->req) {
        http_req *req = u->req;
        u->req = NULL;
        http_req_set_data(req, NULL);
        if (st == PG_OK) /* deleted meanwhile */
            http_reply_error(req, 409, "conflict", "The document changed meanwhile; retry.");
        else
            service_reply_pg_error(req, st, res);
    }
    u->inserting = 0;
    upload_cleanup(u); /* our copy of bytes the organization already had */
}

static void upload_inserted(pg_status st, PGresult *res, void *ud)
{
    upload *u = ud;
    if (st != PG_OK) {
        if (u->req) {
            http_req *req = u->req;
            u->req = NULL;
            http_req_set_data(req, NULL);
            service_reply_pg_error(req, st, res);
        }
        u->inserting = 0;
        upload_cleanup(u);
        return;
    }
    if (PQntuples(res) == 0) {
        const char *params[] = {u->org, u->sha_hex};
        pg_query(storage.svc.pg,
                 "SELECT " DOC_COLS " FROM documents WHERE org_id = $1 AND sha256 = $2", 2, params,
                 upload_existing, u);
        return;
    }
    u->final_exists = 0; /* the document's now */
    metric_inc(metrics_counter("storage_uploads_total", "Uploads answered.", "result=\"created\""));
    metric_add(metrics_counter("storage_upload_bytes_total", "Bytes of stored uploads.", NULL),
               (double)u->size);
    jobs_enqueue_new(u->id);
    upload_reply_doc(u, 201, res, 0);
    u->inserting = 0;
    upload_cleanup(u);
}

static void upload_insert(upload *u)
{
    char size[24];
    snprintf(size, sizeof size, "%llu", (unsigned long long)u->size);
    char *tags = json_dumps(u->tags, JSON_COMPACT);
    const char *params[] = {u->id,   u->org, u->user,    u->filename, u->title,
                            u->type, size,   u->sha_hex, tags};
    u->inserting = 1;
    pg_query(storage.svc.pg,
             "INSERT INTO documents (id, org_id, user_id, filename, title, content_type, size, "
             "sha256, tags) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
             "ARRAY(SELECT json_array_elements_text($9::json))) "
             "ON CONFLICT (org_id, sha256) DO NOTHING RETURNING " DOC_COLS,
             9, params, upload_inserted, u);
    free(tags);
}

static void upload_renamed(uv_fs_t *fs)
{
    upload *u = fs->data;
    ssize_t rc = upload_fs_result(fs);
    if (rc == 0) {
        u->tmp_exists = 0;
        u->final_exists = 1;
    }
    if (upload_aborted(u))
        return;
    if (rc < 0) {
        log_error(u->rid, "upload: rename to %s: %s", u->final_path, uv_strerror((int)rc));
        upload_abort(u, 500, "storage_error", "The file could not be stored.");
        return;
    }
    upload_insert(u);
}

static void upload_dir_made(uv_fs_t *fs)
{
    upload *u = fs->data;
    ssize_t rc = upload_fs_result(fs);
    if (upload_aborted(u))
        return;
    if (rc < 0 && rc != UV_EEXIST) {
        log_error(u->rid, "upload: mkdir for %s: %s", u->final_path, uv_strerror((int)rc));
        upload_abort(u, 500, "storage_error", "The file could not be stored.");
        return;
    }
    u->fs_busy = 1;
    uv_fs_rename(u->loop, &u->fs, u->tmp_path, u->final_path, upload_renamed);
}

static void upload_file_closed(uv_fs_t *fs)
{
    upload *u = fs->data;
    ssize_t rc = upload_fs_result(fs);
    u->fd = -1;
    if (upload_aborted(u))
        return;
    if (rc < 0) {
        upload_abort(u, 500, "storage_error", "The file could not be stored.");
        return;
    }
    char dir[PATH_MAX];
    storage_file_dir(u->id, dir, sizeof dir);
    u->fs_busy = 1;
    uv_fs_mkdir(u->loop, &u->fs, dir, 0750, upload_dir_made);
}

static void upload_finalize(upload *u)
{
    if (u->finalizing || u->aborted)
        return;
    u->finalizing = 1;
    if (!u->type && !(u->type = sniff_type(u->head, u->headlen))) {
        upload_abort(u, 415, "unsupported_media_type",
                     "Only PNG, JPEG, TIFF and PDF files are accepted.");
        return;
    }
    uint8_t digest[32];
    crypto_sha256_finish(u->sha, digest);
    u->sha = NULL;
    crypto_hex(digest, sizeof digest, u->sha_hex);
    storage_new_uuid(u->id);
    storage_file_path(u->id, u->final_path, sizeof u->final_path);
    u->fs.data = u;
    u->fs_busy = 1;
    uv_fs_close(u->loop, &u->fs, u->fd, upload_file_closed);
}

/* ---- the request ---- */

/* Raw uploads: ?filename= (required), ?title=, ?tags=. 0, or -1 after answering 400. */
static int upload_raw_params(upload *u, http_req *req)
{
    const char *q = http_req_query(req);
    char v[UPLOAD_FIELD_MAX + 1];
    int has = query_param(q, "filename", v, sizeof v);
    if (has < 0) {
        upload_reply_error(u, 400, "invalid_filename",
                           "?filename= must be percent-encoded UTF-8 of at most 2000 bytes, "
                           "without NUL.");
        return -1;
    }
    if (has == 0 || !v[0]) {
        upload_reply_error(u, 400, "missing_filename",
                           "A raw upload names its file with ?filename= (or send "
                           "multipart/form-data).");
        return -1;
    }
    docname_sanitize(v, strlen(v), u->filename, sizeof u->filename);
    has = query_param(q, "title", v, sizeof v);
    int bad = has < 0 || (has == 1 && upload_set_title(u, v, strlen(v)) != 0);
    has = query_param(q, "tags", v, sizeof v);
    bad |= has < 0 || (has == 1 && upload_add_tags(u, v, strlen(v)) != 0);
    if (bad) {
        upload_reply_error(u, 400, "invalid_field",
                           "\"title\" is at most 500 characters; \"tags\" at most 20 tags of 1 "
                           "to 64 characters, UTF-8.");
        return -1;
    }
    return 0;
}

static void upload_start(http_req *req, const auth_identity *who)
{
    upload *u = xcalloc(1, sizeof *u);
    u->req = req;
    u->loop = http_req_loop(req);
    u->fd = -1;
    u->tags = json_array();
    snprintf(u->org, sizeof u->org, "%s", who->org);
    snprintf(u->user, sizeof u->user, "%s", who->sub);
    snprintf(u->rid, sizeof u->rid, "%s", http_req_id(req));
    char boundary[MP_MAX_BOUNDARY + 1];
    int mp = mp_boundary(http_req_header(req, "Content-Type"), boundary, sizeof boundary);
    int64_t cl = http_req_content_length(req);
    size_t limit = storage.max_upload + (mp == 1 ? UPLOAD_MP_OVERHEAD : 0);
    if (cl > 0 && (uint64_t)cl > limit) {
        upload_reply_error(u, 413, "too_large", "The file is larger than the upload limit.");
        upload_free(u);
        return;
    }
    if (mp < 0) {
        upload_reply_error(u, 400, "invalid_multipart",
                           "multipart/form-data needs a valid boundary parameter.");
        upload_free(u);
        return;
    }
    if (mp == 0 && upload_raw_params(u, req) != 0) {
        upload_free(u);
        return;
    }
    if (cl == 0) {
        upload_reply_error(u, 400, "empty_body", "The upload has no body.");
        upload_free(u);
        return;
    }
    if (mp == 1)
        u->mp = mp_new(boundary, &upload_mp_callbacks, u);
    else
        u->file_seen = 1; /* the body is the file */
    u->sha = crypto_sha256_new();
    char name[48];
    crypto_random_token(name, 16);
    snprintf(u->tmp_path, sizeof u->tmp_path, "%s/tmp/%s", storage.dir, name);
    http_req_set_data(req, u);
    http_req_on_close(req, upload_closed);
    u->fs.data = u;
    u->fs_busy = 1;
    uv_fs_open(u->loop, &u->fs, u->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640,
               upload_opened);
}

void upload_routes(router *r)
{
    router_add_auth_stream(r, "POST", "/documents", upload_start);
}
