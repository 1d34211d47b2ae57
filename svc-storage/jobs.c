/* jobs: enqueueing and the sweeper (see jobs.h).
 *
 * A document's job column (ocr_job, archive_job) is NULL (no job yet), "claim:<token>" (an
 * instance is enqueueing it), "lost" (a worker reported the entry gone) or the stream entry
 * id. Enqueueing is decided by one conditional UPDATE that moves the column from the value
 * seen to a claim, so two instances never both enqueue a document; the XADD follows and its
 * entry id replaces the claim (or the claim is released to NULL when Redis fails).
 *
 * The sweeper, every STORAGE_SWEEP_INTERVAL: makes sure the consumer groups exist, reads the
 * streams' lengths into metrics, re-enqueues unfinished documents whose job is NULL, a stale
 * claim, "lost" (at once), or an entry no longer in its stream (XRANGE id id) once the job was
 * last seen more than STORAGE_JOB_GRACE ago, removes temporary files older than an hour, and
 * evicts local copies past STORAGE_LOCAL_RETENTION (evict.c). */
#include "jobs.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto.h"
#include "evict.h"
#include "log.h"
#include "metrics.h"
#include "storage.h"
#include "xalloc.h"

#define JOBS_SWEEP_BATCH "200"
#define JOBS_TMP_MAX_AGE (3600)

typedef struct job_kind {
    const char *name, *stream;
    const char *claim_sql, *set_sql, *release_sql, *touch_sql, *pending_sql;
} job_kind;

#define JOB_KIND(k)                                                                                \
    {                                                                                              \
        k, "jobs:" k,                                                                              \
            "UPDATE documents SET " k "_job = $3, " k "_job_at = now() WHERE id = $1 AND " k       \
            "_job IS NOT DISTINCT FROM $2 AND " k "_status IN ('queued', 'processing') "           \
            "RETURNING org_id, filename, content_type, size, sha256",                              \
            "UPDATE documents SET " k "_job = $3, " k "_job_at = now() WHERE id = $1 AND " k       \
            "_job = $2",                                                                           \
            "UPDATE documents SET " k "_job = NULL, " k "_job_at = now() WHERE id = $1 AND " k     \
            "_job = $2",                                                                           \
            "UPDATE documents SET " k "_job_at = now() WHERE id = $1 AND " k "_job = $2",          \
            "SELECT id::text AS id, " k "_job AS job FROM documents WHERE " k "_status IN "        \
            "('queued', 'processing') AND (" k "_job = 'lost' OR " k "_job_at < now() - "          \
            "$1::bigint * interval '1 millisecond') ORDER BY " k "_job_at LIMIT " JOBS_SWEEP_BATCH \
    }

static const job_kind jobs_kinds[] = {JOB_KIND("ocr"), JOB_KIND("archive")};
#define JOBS_NKINDS (sizeof jobs_kinds / sizeof jobs_kinds[0])

static uv_timer_t jobs_timer;
static int jobs_running;

const char *jobs_kind_of_stream(const char *stream)
{
    for (size_t i = 0; i < JOBS_NKINDS; i++)
        if (strcmp(jobs_kinds[i].stream, stream) == 0)
            return jobs_kinds[i].name;
    return NULL;
}

/* ---- enqueueing one job ---- */

typedef struct job_enq {
    const job_kind *k;
    char id[37];
    char *seen; /* the job column's value that was seen (NULL: SQL NULL) */
    char claim[40];
} job_enq;

static void job_enq_free(job_enq *e)
{
    free(e->seen);
    free(e);
}

static void job_enq_stored(pg_status st, PGresult *res, void *ud)
{
    job_enq *e = ud;
    if (st != PG_OK)
        log_warn(NULL, "jobs: recording the %s job of %s failed: %s", e->k->name, e->id,
                 res ? PQresultErrorMessage(res) : "no database");
    job_enq_free(e);
}

static void job_enq_added(redis_status st, redisReply *reply, void *ud)
{
    job_enq *e = ud;
    if (!storage.svc.pg) {
        job_enq_free(e);
        return;
    }
    if (st == REDIS_ST_OK && reply && reply->type == REDIS_REPLY_STRING) {
        const char *params[] = {e->id, e->claim, reply->str};
        pg_query(storage.svc.pg, e->k->set_sql, 3, params, job_enq_stored, e);
        return;
    }
    log_warn(NULL, "jobs: XADD %s for %s failed (%s): the sweeper retries", e->k->stream, e->id,
             st == REDIS_ST_OK && reply && reply->type == REDIS_REPLY_ERROR ? reply->str
             : st == REDIS_ST_TIMEOUT                                       ? "timeout"
                                                                            : "redis down");
    const char *params[] = {e->id, e->claim};
    pg_query(storage.svc.pg, e->k->release_sql, 2, params, job_enq_stored, e);
}

static void job_enq_claimed(pg_status st, PGresult *res, void *ud)
{
    job_enq *e = ud;
    if (st != PG_OK || PQntuples(res) == 0 || !storage.svc.redis) {
        job_enq_free(e); /* someone else's now, finished, deleted, or no database */
        return;
    }
    char rel[96];
    storage_file_rel(e->id, rel, sizeof rel);
    const char *argv[] = {"XADD",
                          e->k->stream,
                          "*",
                          "doc",
                          e->id,
                          "org",
                          pg_get(res, 0, "org_id"),
                          "file",
                          rel,
                          "type",
                          pg_get(res, 0, "content_type"),
                          "size",
                          pg_get(res, 0, "size"),
                          "sha256",
                          pg_get(res, 0, "sha256"),
                          "name",
                          pg_get(res, 0, "filename")};
    int argc = (int)(sizeof argv / sizeof argv[0]);
    size_t lens[sizeof argv / sizeof argv[0]];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    redis_command_argv(storage.svc.redis, job_enq_added, e, argc, argv, lens);
}

/* Enqueues the job of kind k for document id if its job column still holds seen. */
static void jobs_enqueue(const job_kind *k, const char *id, const char *seen)
{
    if (!storage.svc.pg)
        return;
    job_enq *e = xcalloc(1, sizeof *e);
    e->k = k;
    snprintf(e->id, sizeof e->id, "%s", id);
    e->seen = seen ? xstrdup(seen) : NULL;
    char tok[24];
    crypto_random_token(tok, 12);
    snprintf(e->claim, sizeof e->claim, "claim:%s", tok);
    const char *params[] = {e->id, e->seen, e->claim};
    pg_query(storage.svc.pg, k->claim_sql, 3, params, job_enq_claimed, e);
}

void jobs_enqueue_new(const char *id)
{
    for (size_t i = 0; i < JOBS_NKINDS; i++)
        jobs_enqueue(&jobs_kinds[i], id, NULL);
}

/* ---- the sweeper ---- */

typedef struct job_check {
    const job_kind *k;
    char id[37];
    char job[64];
} job_check;

static void job_check_touched(pg_status st, PGresult *res, void *ud)
{
    (void)st;
    (void)res;
    free(ud);
}

static void job_checked(redis_status st, redisReply *reply, void *ud)
{
    job_check *c = ud;
    if (st != REDIS_ST_OK || !reply || reply->type != REDIS_REPLY_ARRAY || !storage.svc.pg) {
        free(c); /* Redis cannot tell now: the next sweep asks again */
        return;
    }
    if (reply->elements == 0) {
        log_info(NULL, "jobs: %s entry %s of %s is gone from its stream: re-enqueueing", c->k->name,
                 c->job, c->id);
        jobs_enqueue(c->k, c->id, c->job);
        free(c);
        return;
    }
    const char *params[] = {c->id, c->job};
    pg_query(storage.svc.pg, c->k->touch_sql, 2, params, job_check_touched, c);
}

/* 1 when s looks like a stream entry id ("<ms>-<seq>"). */
static int jobs_is_entry_id(const char *s)
{
    size_t i = 0, d1 = 0, d2 = 0;
    while (s[i] >= '0' && s[i] <= '9')
        i++, d1++;
    if (s[i++] != '-')
        return 0;
    while (s[i] >= '0' && s[i] <= '9')
        i++, d2++;
    return s[i] == '\0' && d1 > 0 && d1 <= 20 && d2 > 0 && d2 <= 20;
}

static void jobs_pending(pg_status st, PGresult *res, void *ud)
{
    const job_kind *k = ud;
    if (st != PG_OK)
        return;
    for (int r = 0; r < PQntuples(res); r++) {
        const char *id = pg_get(res, r, "id");
        const char *job = pg_get(res, r, "job");
        if (job && jobs_is_entry_id(job)) {
            if (!storage.svc.redis || !redis_connected(storage.svc.redis))
                continue;
            job_check *c = xcalloc(1, sizeof *c);
            c->k = k;
            snprintf(c->id, sizeof c->id, "%s", id);
            snprintf(c->job, sizeof c->job, "%s", job);
            redis_command(storage.svc.redis, job_checked, c, "XRANGE %s %s %s COUNT 1", k->stream,
                          job, job);
        } else if (storage.svc.redis && redis_connected(storage.svc.redis)) {
            jobs_enqueue(k, id, job); /* NULL, "lost" or a stale claim */
        }
    }
}

static void jobs_xlen(redis_status st, redisReply *reply, void *ud)
{
    const job_kind *k = ud;
    if (st != REDIS_ST_OK || !reply || reply->type != REDIS_REPLY_INTEGER)
        return;
    char labels[64];
    snprintf(labels, sizeof labels, "stream=\"%s\"", k->stream);
    metric_set(metrics_gauge("storage_queue_depth", "Entries in a job stream (XLEN).", labels),
               (double)reply->integer);
}

/* ---- temporary files ---- */

typedef struct jobs_tmp {
    uv_fs_t fs;
    char path[PATH_MAX];
} jobs_tmp;

static void jobs_tmp_unlinked(uv_fs_t *fs)
{
    uv_fs_req_cleanup(fs);
    free(fs->data);
}

static void jobs_tmp_stat(uv_fs_t *fs)
{
    jobs_tmp *t = fs->data;
    int old = fs->result == 0 && S_ISREG(fs->statbuf.st_mode) &&
              fs->statbuf.st_mtim.tv_sec < (long)time(NULL) - JOBS_TMP_MAX_AGE;
    uv_loop_t *loop = fs->loop;
    uv_fs_req_cleanup(fs);
    if (!old) {
        free(t);
        return;
    }
    log_info(NULL, "jobs: removing the abandoned upload %s", t->path);
    t->fs.data = t;
    uv_fs_unlink(loop, &t->fs, t->path, jobs_tmp_unlinked);
}

static void jobs_tmp_listed(uv_fs_t *fs)
{
    uv_dirent_t ent;
    if (fs->result >= 0) {
        while (uv_fs_scandir_next(fs, &ent) != UV_EOF) {
            jobs_tmp *t = xcalloc(1, sizeof *t);
            snprintf(t->path, sizeof t->path, "%s/tmp/%s", storage.dir, ent.name);
            t->fs.data = t;
            uv_fs_stat(fs->loop, &t->fs, t->path, jobs_tmp_stat);
        }
    }
    uv_fs_req_cleanup(fs);
    free(fs);
}

static void jobs_sweep_tmp(uv_loop_t *loop)
{
    uv_fs_t *fs = xcalloc(1, sizeof *fs);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/tmp", storage.dir);
    uv_fs_scandir(loop, fs, dir, 0, jobs_tmp_listed);
}

static void jobs_sweep(uv_timer_t *t)
{
    redis *rd = storage.svc.redis;
    char grace[24];
    snprintf(grace, sizeof grace, "%ld", storage.job_grace_ms);
    for (size_t i = 0; i < JOBS_NKINDS; i++) {
        const job_kind *k = &jobs_kinds[i];
        if (rd && redis_connected(rd)) {
            redis_command(rd, NULL, NULL, "XGROUP CREATE %s workers 0 MKSTREAM", k->stream);
            redis_command(rd, jobs_xlen, (void *)k, "XLEN %s", k->stream);
        }
        if (storage.svc.pg) {
            const char *params[] = {grace};
            pg_query(storage.svc.pg, k->pending_sql, 1, params, jobs_pending, (void *)k);
        }
    }
    jobs_sweep_tmp(t->loop);
    evict_sweep(t->loop);
}

void jobs_start(uv_loop_t *loop)
{
    uv_timer_init(loop, &jobs_timer);
    uv_timer_start(&jobs_timer, jobs_sweep, 500, (uint64_t)storage.sweep_ms);
    uv_unref((uv_handle_t *)&jobs_timer);
    jobs_running = 1;
}

void jobs_stop(void)
{
    if (jobs_running)
        uv_timer_stop(&jobs_timer);
    jobs_running = 0;
}

void jobs_sweep_soon(void)
{
    if (jobs_running)
        uv_timer_start(&jobs_timer, jobs_sweep, 0, (uint64_t)storage.sweep_ms);
}
