/* job: one stream entry as the workers see it, the result a handler gives back, and the pure
 * rules of the job runner (retry backoff, entry ids, the fields of an entry), kept apart from
 * runner.c so that unit tests reach them without Redis. */
#ifndef WORKER_JOB_H
#define WORKER_JOB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define JOB_ID_MAX 48

typedef struct job {
    char id[JOB_ID_MAX]; /* the stream entry id, "1700000000000-0" */
    unsigned deliveries; /* this delivery included (1 the first time) */
    /* The entry's fields as sent, name/value pairs in order (dead letters copy them). */
    char **fields;
    size_t nfields; /* pairs */
    /* The contract's fields (pointers into fields; "" when absent, size -1). */
    const char *doc, *org, *file, *type, *sha256, *name;
    long long size;
    const char *storage_dir; /* STORAGE_DIR: file is relative to it */
    void *ctx;               /* the binary's context for its handler */
    unsigned timeout_ms;     /* WORKER_JOB_TIMEOUT */
    /* Set when the job is abandoned (timed out, or shutdown past its bound): a handler checks
     * it between steps and returns -2 soon. */
    atomic_int cancel;
} job;

/* Handler outcome codes. */
enum { JOB_OK = 0, JOB_PERMANENT = -1, JOB_TRANSIENT = -2 };

typedef struct job_result {
    /* JOB_OK: the report to post, e.g. {"status":"done",...} (the runner takes it). */
    json_t *report;
    char error[256]; /* JOB_PERMANENT / JOB_TRANSIENT: why */
} job_result;

/* A blocking handler run on a threadpool thread: JOB_OK with out->report, JOB_PERMANENT
 * (retrying will not help: the job goes dead at once) or JOB_TRANSIENT (retried with backoff)
 * with out->error. */
typedef int (*job_handler_fn)(const job *j, job_result *out);

/* Fills a job from an entry: id and the flat name/value strings (copied). Returns 0, or -1
 * when the entry is unusable (odd count, id too long). */
int job_init(job *j, const char *id, const char *const *kv, size_t nkv);
void job_release(job *j); /* frees what job_init allocated */
/* The value of field name, or NULL. */
const char *job_field(const job *j, const char *name);
/* The path of the job's file under storage_dir into out; -1 when file is empty, absolute or
 * climbs out with "..". */
int job_path(const job *j, char *out, size_t cap);

/* 1 when doc can go into a URL path: 1..64 of a-z A-Z 0-9 '-' (a uuid). */
int job_doc_ok(const char *doc);

/* The wait before delivery number deliveries+1 of a job that failed deliveries times:
 * base * 2^(deliveries-1), capped at cap_ms (deliveries 0 counts as 1). */
uint64_t job_backoff_ms(uint64_t base_ms, unsigned deliveries, uint64_t cap_ms);

/* Stream entry ids "ms-seq": parses (0 or -1) and writes the id just after one (seq + 1,
 * carried into ms), for XTRIM MINID. */
int job_id_parse(const char *id, uint64_t *ms, uint64_t *seq);
int job_id_next(const char *id, char *out, size_t cap);

#endif
