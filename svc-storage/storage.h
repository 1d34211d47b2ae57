/* storage: the svc-storage process state shared by its handlers (upload.c, documents.c,
 * internal.c, jobs.c), and the document's JSON form shared by them. */
#ifndef STORAGE_STORAGE_H
#define STORAGE_STORAGE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "service.h"

typedef struct storage_app {
    service svc;
    const char *dir;      /* STORAGE_DIR: holds tmp/ and files/ */
    size_t max_upload;    /* STORAGE_MAX_UPLOAD: 50 MiB */
    long sweep_ms;        /* STORAGE_SWEEP_INTERVAL: 10 s */
    long job_grace_ms;    /* STORAGE_JOB_GRACE: a job silent this long is checked: 60 s */
    long retention_ms;    /* STORAGE_LOCAL_RETENTION: 0 = keep local copies */
    struct objstore *obj; /* the archive (NULL: none) */
} storage_app;

extern storage_app storage;

/* The columns doc_json reads, for SELECT/RETURNING lists of table documents. */
#define STORAGE_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define DOC_COLS                                                                                       \
    "id, filename, title, content_type, size, sha256, array_to_json(tags)::text AS tags, " STORAGE_TS( \
        "created_at") " AS created_at, ocr_status, ocr_text, ocr_confidence, ocr_pages, "              \
                      "ocr_error, archive_status, archive_location, archive_error"

/* Row r of a result with DOC_COLS as the API's document; with_text adds the OCR text. */
json_t *doc_json(const PGresult *res, int r, int with_text);

/* Paths under STORAGE_DIR: files/<2 hex>/<id> (and its folder), tmp/<name>. */
void storage_file_path(const char *id, char *out, size_t cap);
void storage_file_dir(const char *id, char *out, size_t cap);
void storage_file_rel(const char *id, char *out, size_t cap);
/* A 36-character lowercase random (v4) uuid. */
void storage_new_uuid(char out[37]);
/* 1 when s is a lowercase or uppercase uuid (8-4-4-4-12 hex). */
int storage_is_uuid(const char *s);

#endif
