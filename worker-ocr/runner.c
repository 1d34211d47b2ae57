/* runner: the job-runner core of worker-ocr and worker-archive (see runner.h).
 *
 * One loop thread does all the Redis and HTTP work; handlers run on the threadpool. Two Redis
 * connections: one for the blocking XREADGROUP, one for everything else. A job record (rjob)
 * lives from the moment the entry is in our hands (read or claimed) until it is acknowledged
 * or released (left pending for a later retry); a record whose handler is abandoned lives on
 * until its thread returns. One 250 ms tick checks job deadlines and runs the periodic work:
 * the retry scan (own pending entries past their backoff: XPENDING IDLE + XCLAIM), the
 * take-over of dead consumers' entries (XAUTOCLAIM), the lease renewal of jobs in hand and
 * the trim of the stream. */
#include "runner.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "buf.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "queue.h"
#include "redis.h"
#include "service.h"
#include "service_token.h"
#include "upstream.h"
#include "xalloc.h"

#define RUNNER_GROUP        "workers"
#define RUNNER_TICK_MS      250
#define RUNNER_TRIM_EVERY   10000
#define RUNNER_RETRY_CAP_MS (5 * 60 * 1000)
#define RUNNER_POST_TIMEOUT 10000
#define RUNNER_READ_PAUSE   500 /* after a failed read */
#define RUNNER_SCAN_COUNT   100

typedef enum { RJ_QUEUED, RJ_STARTING, RJ_RUNNING, RJ_FINISHING } rjob_state;

typedef struct rjob {
    job j;
    rjob_state state;
    uv_work_t work;
    int rc;
    job_result res;
    int abandoned;     /* timed out or shut down: the record waits for its thread only */
    uint64_t deadline; /* uv_now limit of RJ_RUNNING */
    uint64_t started;  /* uv_now at start */
    char reason[320];  /* dead letter reason */
    struct rjob *prev, *next;
} rjob;

typedef struct runner {
    runner_opts o;
    service svc;
    char stream[128], dead[140], consumer[128];
    const char *storage_dir;
    unsigned concurrency, max_deliveries;
    unsigned long block_ms, claim_idle_ms, retry_base_ms, job_timeout_ms, drain_ms;
    /* XAUTOCLAIM's min-idle: WORKER_CLAIM_IDLE, but never less than the longest backoff, so
     * that a live worker's failed job waiting for its retry is not taken early. */
    uint64_t takeover_ms;

    redis *rd_read, *rd;
    upstream *storage, *auth;
    service_token *token;
    uv_timer_t tick;
    uv_signal_t sigterm, sigint;

    rjob *hand_first, *hand_last; /* every job in hand (queued or started), oldest first */
    unsigned started, queued, claiming;
    int reading, group_ready, group_creating;
    uint64_t read_again_at, next_scan, next_heartbeat, next_trim;
    int scanning, heartbeating, trimming;
    char autoclaim_cursor[JOB_ID_MAX];
    json_t *lost_ids; /* ids XAUTOCLAIM reported deleted, not yet told to storage */
    int lost_posting;
    int stopping;
    uint64_t drain_deadline;
    /* svc-storage failing (unreachable, 5xx, our token refused): no new jobs until then */
    uint64_t storage_wait_until;
    unsigned storage_wait_ms;

    metric *m_done, *m_failed, *m_dead, *m_retried, *m_seconds;
} runner;

static runner R;

static void runner_pump(runner *r);
static void runner_read(runner *r);
static void runner_finish(runner *r);

/* ---- small helpers ---- */

static int reply_is_error(const redisReply *rep, const char *prefix)
{
    return rep && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, prefix, strlen(prefix)) == 0;
}

static void runner_log_redis(const char *what, redis_status st, const redisReply *rep)
{
    log_emit(LOG_WARN, NULL,
             json_pack("{s:s}", "error",
                       st == REDIS_ST_DOWN                     ? "redis down"
                       : st == REDIS_ST_TIMEOUT                ? "redis timeout"
                       : rep && rep->type == REDIS_REPLY_ERROR ? rep->str
                                                               : "unexpected reply"),
             "%s failed", what);
}

static unsigned runner_slots_free(const runner *r)
{
    unsigned used = r->started + r->queued + r->claiming;
    return used >= r->concurrency ? 0 : r->concurrency - used;
}

static rjob *runner_in_hand(runner *r, const char *id)
{
    for (rjob *rj = r->hand_first; rj; rj = rj->next)
        if (strcmp(rj->j.id, id) == 0)
            return rj;
    return NULL;
}

/* 1 for an answer of storage that says it could not take a report now (unreachable, 5xx,
 * 401: our token was refused, a new one is asked next time). */
static int runner_storage_failed(int status)
{
    return status == 0 || status == 401 || status >= 500;
}

/* Storage answered (anything): new jobs may come. */
static void runner_storage_answered(runner *r, int status)
{
    if (!runner_storage_failed(status)) {
        r->storage_wait_ms = 0;
        return;
    }
    /* Failing: taking more jobs would only use up their deliveries. Wait 1 s, doubling up to
     * 30 s while it keeps failing. */
    r->storage_wait_ms = r->storage_wait_ms ? r->storage_wait_ms * 2 : 1000;
    if (r->storage_wait_ms > 30000)
        r->storage_wait_ms = 30000;
    r->storage_wait_until = uv_now(r->svc.loop) + r->storage_wait_ms;
}

static void runner_group_lost(runner *r);

/* A command on the group failed: a reply saying the group is gone (a restarted Redis) has it
 * created again; another failure is logged (what: the command). */
static void runner_group_cmd_failed(runner *r, const char *what, redis_status st,
                                    const redisReply *rep)
{
    if (reply_is_error(rep, "NOGROUP"))
        runner_group_lost(r);
    else
        runner_log_redis(what, st, rep);
}

/* ---- job records ---- */

/* Takes an entry into our hands (queued); NULL when it is already in hand or unusable. */
static rjob *rjob_new(runner *r, const char *id, const char *const *kv, size_t nkv,
                      unsigned deliveries)
{
    if (runner_in_hand(r, id))
        return NULL;
    rjob *rj = xcalloc(1, sizeof *rj);
    if (job_init(&rj->j, id, kv, nkv) != 0) {
        /* Not a job of ours (an odd field count): acknowledged, it would only come back. */
        log_emit(LOG_ERROR, NULL, json_pack("{s:s}", "id", id), "unusable stream entry dropped");
        const char *argv[] = {"XACK", r->stream, RUNNER_GROUP, id};
        redis_command_argv(r->rd, NULL, NULL, 4, argv, NULL);
        job_release(&rj->j);
        free(rj);
        return NULL;
    }
    rj->j.deliveries = deliveries;
    rj->j.storage_dir = r->storage_dir;
    rj->j.ctx = r->o.ctx;
    rj->j.timeout_ms = (unsigned)r->job_timeout_ms;
    rj->state = RJ_QUEUED;
    DQ_PUSH_TAIL(r->hand_first, r->hand_last, rj, next, prev);
    r->queued++;
    return rj;
}

/* An entry of a reply, [id, [name, value, ...]]; a nil field list (deleted from the stream
 * meanwhile) is skipped. */
static rjob *rjob_from_reply(runner *r, const redisReply *entry, unsigned deliveries)
{
    if (!entry || entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
        entry->element[0]->type != REDIS_REPLY_STRING ||
        entry->element[1]->type != REDIS_REPLY_ARRAY)
        return NULL;
    const redisReply *f = entry->element[1];
    const char **kv = xcalloc(f->elements ? f->elements : 1, sizeof *kv);
    for (size_t i = 0; i < f->elements; i++)
        kv[i] = f->element[i]->type == REDIS_REPLY_STRING ? f->element[i]->str : "";
    rjob *rj = rjob_new(r, entry->element[0]->str, kv, f->elements, deliveries);
    free(kv);
    return rj;
}

static void rjob_free(rjob *rj)
{
    json_decref(rj->res.report);
    job_release(&rj->j);
    free(rj);
}

/* The job leaves our hands (acknowledged, or left pending for a retry). */
static void rjob_drop(runner *r, rjob *rj)
{
    DQ_REMOVE(r->hand_first, r->hand_last, rj, next, prev);
    if (rj->state == RJ_QUEUED)
        r->queued--;
    else
        r->started--;
    if (rj->state == RJ_RUNNING && !rj->abandoned) {
        /* its thread still holds it: abandoned, freed by runner_after_work */
        rj->abandoned = 1;
        atomic_store(&rj->j.cancel, 1);
    } else {
        rjob_free(rj);
    }
    if (r->stopping && r->started == 0)
        runner_finish(r);
    else
        runner_pump(r);
}

/* Storage could not take the job's report: the delivery does not count (XCLAIM RETRYCOUNT,
 * JUSTID so it is not incremented either), so that an outage of storage never sends a job
 * to the dead letters; the job stays pending and is taken again after its backoff. */
static void rjob_hand_back(runner *r, rjob *rj)
{
    char count[16];
    snprintf(count, sizeof count, "%u", rj->j.deliveries ? rj->j.deliveries - 1 : 0);
    const char *argv[] = {"XCLAIM", r->stream,    RUNNER_GROUP, r->consumer, "0",
                          rj->j.id, "RETRYCOUNT", count,        "JUSTID"};
    redis_command_argv(r->rd, NULL, NULL, 9, argv, NULL);
    rjob_drop(r, rj);
}

/* ---- posting to svc-storage ---- */

typedef void (*runner_post_fn)(runner *r, rjob *rj, int status);

typedef struct rpost {
    runner *r;
    rjob *rj;
    char *path, *body;
    runner_post_fn cb;
} rpost;

static void rpost_free(rpost *p)
{
    free(p->path);
    free(p->body);
    free(p);
}

static void runner_posted(hc_err err, const http_response *resp, void *ud)
{
    rpost *p = ud;
    int status = err == HC_OK ? resp->status : 0;
    if (status == 401)
        service_token_invalidate(p->r->token);
    runner_storage_answered(p->r, status);
    if (status != 204 && status != 200 && status != 404)
        log_emit(LOG_WARN, NULL,
                 json_pack("{s:s, s:i, s:s}", "path", p->path, "status", status, "error",
                           err != HC_OK ? hc_strerror(err) : ""),
                 "storage did not take the report");
    p->cb(p->r, p->rj, status);
    rpost_free(p);
}

static void runner_post_with_token(int status, const char *token, void *ud)
{
    rpost *p = ud;
    if (!token || p->r->stopping > 1) {
        runner_storage_answered(p->r, 0);
        p->cb(p->r, p->rj, 0);
        rpost_free(p);
        (void)status;
        return;
    }
    http_header h[] = {{"Content-Type", "application/json"}, {"X-Service-Token", token}};
    upstream_fetch(p->r->storage, "POST", p->path, h, 2, p->body, strlen(p->body),
                   RUNNER_POST_TIMEOUT, runner_posted, p);
}

/* POSTs body (stolen) to path; cb gets storage's status, 0 when it could not be asked. */
static void runner_post(runner *r, rjob *rj, char *path, json_t *body, runner_post_fn cb)
{
    rpost *p = xcalloc(1, sizeof *p);
    p->r = r;
    p->rj = rj;
    p->path = path;
    p->body = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    p->cb = cb;
    service_token_get(r->token, runner_post_with_token, p);
}

static void runner_report(runner *r, rjob *rj, json_t *body, runner_post_fn cb)
{
    buf path = {0};
    buf_printf(&path, "/internal/documents/%s/%s", rj->j.doc, r->o.name);
    runner_post(r, rj, buf_steal(&path), body, cb);
}

/* ---- acknowledging ---- */

static void runner_acked(redis_status st, redisReply *rep, void *ud)
{
    rjob *rj = ud;
    if (st != REDIS_ST_OK || !rep || rep->type == REDIS_REPLY_ERROR)
        runner_log_redis("XACK", st, rep); /* stays pending: done again later (idempotent) */
    rjob_drop(&R, rj);
}

static void runner_ack(runner *r, rjob *rj)
{
    const char *argv[] = {"XACK", r->stream, RUNNER_GROUP, rj->j.id};
    redis_command_argv(r->rd, runner_acked, rj, 4, argv, NULL);
}

/* The dead letter and the acknowledgement in one transaction (issued back to back on the one
 * command connection, nothing can come between them). */
static void runner_bury(runner *r, rjob *rj)
{
    size_t n = 3 + rj->j.nfields * 2 + 6;
    const char **argv = xcalloc(n, sizeof *argv);
    char deliveries[16];
    snprintf(deliveries, sizeof deliveries, "%u", rj->j.deliveries);
    size_t k = 0;
    argv[k++] = "XADD";
    argv[k++] = r->dead;
    argv[k++] = "*";
    for (size_t i = 0; i < rj->j.nfields * 2; i++)
        argv[k++] = rj->j.fields[i];
    argv[k++] = "id";
    argv[k++] = rj->j.id;
    argv[k++] = "reason";
    argv[k++] = rj->reason;
    argv[k++] = "deliveries";
    argv[k++] = deliveries;
    const char *multi[] = {"MULTI"}, *exec[] = {"EXEC"};
    const char *ack[] = {"XACK", r->stream, RUNNER_GROUP, rj->j.id};
    redis_command_argv(r->rd, NULL, NULL, 1, multi, NULL);
    redis_command_argv(r->rd, NULL, NULL, (int)k, argv, NULL);
    redis_command_argv(r->rd, NULL, NULL, 4, ack, NULL);
    redis_command_argv(r->rd, runner_acked, rj, 1, exec, NULL);
    free(argv);
    metric_inc(r->m_dead);
    log_emit(LOG_WARN, NULL,
             json_pack("{s:s, s:s, s:s, s:i}", "id", rj->j.id, "doc", rj->j.doc, "reason",
                       rj->reason, "deliveries", (int)rj->j.deliveries),
             "job moved to %s", r->dead);
}

/* ---- outcomes ---- */

static void runner_done_posted(runner *r, rjob *rj, int status)
{
    if (status == 204 || status == 200 || status == 404) {
        if (status != 404)
            metric_inc(r->m_done);
        runner_ack(r, rj);
        return;
    }
    metric_inc(r->m_retried);
    /* storage did not take it: pending, delivered again after the backoff */
    if (runner_storage_failed(status))
        rjob_hand_back(r, rj);
    else
        rjob_drop(r, rj);
}

static void runner_dead_posted(runner *r, rjob *rj, int status)
{
    if (status == 204 || status == 200 || status == 404) {
        runner_bury(r, rj);
        return;
    }
    /* the next delivery goes straight to the dead letters again */
    if (runner_storage_failed(status))
        rjob_hand_back(r, rj);
    else
        rjob_drop(r, rj);
}

/* The job is given up: the document is marked failed, then the entry moves to the dead
 * letters. Without a document to report to, it moves at once. */
static void runner_dead(runner *r, rjob *rj, const char *reason)
{
    snprintf(rj->reason, sizeof rj->reason, "%s", reason);
    rj->state = RJ_FINISHING;
    metric_inc(r->m_failed);
    if (!*rj->j.doc) {
        runner_bury(r, rj);
        return;
    }
    runner_report(r, rj,
                  json_pack("{s:s, s:s, s:b}", "status", "failed", "error", reason, "dead", 1),
                  runner_dead_posted);
}

static void runner_after_work(uv_work_t *w, int status)
{
    rjob *rj = w->data;
    runner *r = &R;
    (void)status;
    if (rj->abandoned) {
        rjob_free(rj);
        return;
    }
    rj->state = RJ_FINISHING;
    metric_observe(r->m_seconds, (double)(uv_now(r->svc.loop) - rj->started) / 1000.0);
    if (rj->rc == JOB_OK && rj->res.report) {
        json_t *rep = rj->res.report;
        rj->res.report = NULL;
        runner_report(r, rj, rep, runner_done_posted);
        return;
    }
    const char *err = rj->res.error[0] ? rj->res.error : "the handler failed";
    log_emit(LOG_WARN, NULL,
             json_pack("{s:s, s:s, s:s, s:i}", "id", rj->j.id, "doc", rj->j.doc, "error", err,
                       "deliveries", (int)rj->j.deliveries),
             rj->rc == JOB_PERMANENT ? "job failed for good" : "job failed, will retry");
    if (rj->rc == JOB_PERMANENT) {
        runner_dead(r, rj, err);
    } else if (rj->j.deliveries >= r->max_deliveries) {
        char why[320];
        snprintf(why, sizeof why, "%u deliveries, the last failed: %s", rj->j.deliveries, err);
        runner_dead(r, rj, why);
    } else {
        metric_inc(r->m_failed);
        metric_inc(r->m_retried);
        rjob_drop(r, rj);
    }
}

static void runner_work(uv_work_t *w)
{
    rjob *rj = w->data;
    rj->rc = R.o.handler(&rj->j, &rj->res);
    if (rj->rc != JOB_OK && rj->rc != JOB_PERMANENT)
        rj->rc = JOB_TRANSIENT;
    if (rj->rc == JOB_OK && !rj->res.report)
        rj->res.report = json_pack("{s:s}", "status", "done");
}

static void runner_run(runner *r, rjob *rj)
{
    rj->state = RJ_RUNNING;
    rj->started = uv_now(r->svc.loop);
    rj->deadline = rj->started + r->job_timeout_ms;
    rj->work.data = rj;
    uv_queue_work(r->svc.loop, &rj->work, runner_work, runner_after_work);
}

static void runner_processing_posted(runner *r, rjob *rj, int status)
{
    if (status == 404) {
        runner_ack(r, rj); /* the document is gone */
        return;
    }
    if (status != 204 && status != 200) {
        if (runner_storage_failed(status))
            rjob_hand_back(r, rj);
        else
            rjob_drop(r, rj);
        return;
    }
    if (r->stopping) {
        rjob_hand_back(r, rj); /* not run: the delivery does not count */
        return;
    }
    runner_run(r, rj);
}

static void runner_start(runner *r, rjob *rj)
{
    r->queued--;
    r->started++;
    rj->state = RJ_STARTING;
    if (rj->j.deliveries > r->max_deliveries) {
        char why[128];
        snprintf(why, sizeof why, "delivered %u times without finishing", rj->j.deliveries);
        runner_dead(r, rj, why);
        return;
    }
    if (!job_doc_ok(rj->j.doc)) {
        rj->j.doc = ""; /* nothing to report to: buried at once */
        runner_dead(r, rj, "the entry has no usable doc field");
        return;
    }
    if (r->o.report_processing) {
        runner_report(r, rj, json_pack("{s:s}", "status", "processing"), runner_processing_posted);
        return;
    }
    runner_run(r, rj);
}

/* Starts queued jobs while slots are free, then reads more. */
static void runner_pump(runner *r)
{
    while (!r->stopping && r->started < r->concurrency) {
        rjob *rj = r->hand_first;
        while (rj && rj->state != RJ_QUEUED)
            rj = rj->next;
        if (!rj)
            break;
        runner_start(r, rj); /* may drop it, or others, before returning */
    }
    runner_read(r);
}

/* ---- the group ---- */

static void runner_group_created(redis_status st, redisReply *rep, void *ud)
{
    runner *r = ud;
    r->group_creating = 0;
    if (st == REDIS_ST_OK && rep &&
        (rep->type == REDIS_REPLY_STATUS || reply_is_error(rep, "BUSYGROUP"))) {
        if (!r->group_ready)
            log_info(NULL, "group " RUNNER_GROUP " of %s ready", r->stream);
        r->group_ready = 1;
        runner_read(r);
        return;
    }
    runner_log_redis("XGROUP CREATE", st, rep); /* the tick tries again */
}

static void runner_group_create(runner *r)
{
    if (r->group_creating || r->stopping)
        return;
    r->group_creating = 1;
    const char *argv[] = {"XGROUP", "CREATE", r->stream, RUNNER_GROUP, "0", "MKSTREAM"};
    redis_command_argv(r->rd, runner_group_created, r, 6, argv, NULL);
}

static void runner_group_lost(runner *r)
{
    if (r->group_ready)
        log_warn(NULL, "group " RUNNER_GROUP " of %s is gone: creating it again", r->stream);
    r->group_ready = 0;
    runner_group_create(r);
}

/* ---- reading new entries ---- */

static void runner_take_entries(runner *r, const redisReply *entries, unsigned deliveries)
{
    if (!entries || entries->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < entries->elements; i++)
        rjob_from_reply(r, entries->element[i], deliveries);
}

static void runner_read_cb(redis_status st, redisReply *rep, void *ud)
{
    runner *r = ud;
    r->reading = 0;
    if (r->stopping)
        return;
    if (st != REDIS_ST_OK || !rep || rep->type == REDIS_REPLY_ERROR) {
        runner_group_cmd_failed(r, "XREADGROUP", st, rep);
        r->read_again_at = uv_now(r->svc.loop) + RUNNER_READ_PAUSE;
        return;
    }
    if (rep->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < rep->elements; i++) {
            const redisReply *s = rep->element[i];
            if (s->type == REDIS_REPLY_ARRAY && s->elements == 2)
                runner_take_entries(r, s->element[1], 1);
        }
    runner_pump(r);
}

static void runner_read(runner *r)
{
    uint64_t now = uv_now(r->svc.loop);
    if (r->reading || r->stopping || !r->group_ready || now < r->read_again_at ||
        now < r->storage_wait_until)
        return;
    unsigned n = runner_slots_free(r);
    if (n == 0)
        return;
    char count[16], block[24];
    snprintf(count, sizeof count, "%u", n);
    snprintf(block, sizeof block, "%lu", r->block_ms);
    const char *argv[] = {"XREADGROUP", "GROUP", RUNNER_GROUP, r->consumer, "COUNT", count,
                          "BLOCK",      block,   "STREAMS",    r->stream,   ">"};
    r->reading = 1;
    redis_command_argv_timeout(r->rd_read, (unsigned)r->block_ms + 5000, runner_read_cb, r, 11,
                               argv, NULL);
}

/* ---- retries: own pending entries past their backoff ---- */

typedef struct rclaim {
    runner *r;
    unsigned deliveries; /* after this claim */
} rclaim;

static void runner_claimed(redis_status st, redisReply *rep, void *ud)
{
    rclaim *c = ud;
    runner *r = c->r;
    r->claiming--;
    if (st == REDIS_ST_OK && rep && rep->type == REDIS_REPLY_ARRAY && !r->stopping) {
        runner_take_entries(r, rep, c->deliveries);
        if (rep->elements)
            log_emit(LOG_INFO, NULL, json_pack("{s:i}", "deliveries", (int)c->deliveries),
                     "job claimed again");
    } else if (st != REDIS_ST_OK || (rep && rep->type == REDIS_REPLY_ERROR)) {
        runner_group_cmd_failed(r, "XCLAIM", st, rep);
    }
    free(c);
    runner_pump(r);
}

static void runner_claim(runner *r, const char *id, uint64_t min_idle, unsigned deliveries)
{
    char idle[24];
    snprintf(idle, sizeof idle, "%llu", (unsigned long long)min_idle);
    const char *argv[] = {"XCLAIM", r->stream, RUNNER_GROUP, r->consumer, idle, id};
    rclaim *c = xmalloc(sizeof *c);
    c->r = r;
    c->deliveries = deliveries;
    r->claiming++;
    redis_command_argv(r->rd, runner_claimed, c, 6, argv, NULL);
}

static void runner_autoclaim(runner *r);

static void runner_pending_cb(redis_status st, redisReply *rep, void *ud)
{
    runner *r = ud;
    if (st != REDIS_ST_OK || !rep || rep->type != REDIS_REPLY_ARRAY) {
        r->scanning = 0;
        runner_group_cmd_failed(r, "XPENDING", st, rep);
        return;
    }
    for (size_t i = 0; i < rep->elements && !r->stopping; i++) {
        const redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 4 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            continue;
        const char *id = e->element[0]->str;
        long long idle = e->element[2]->integer, n = e->element[3]->integer;
        if (runner_in_hand(r, id) || runner_slots_free(r) == 0)
            continue;
        uint64_t need =
            job_backoff_ms(r->retry_base_ms, (unsigned)(n < 1 ? 1 : n), RUNNER_RETRY_CAP_MS);
        if (idle >= 0 && (uint64_t)idle >= need)
            runner_claim(r, id, need, (unsigned)n + 1);
    }
    runner_autoclaim(r);
}

/* ---- dead consumers: XAUTOCLAIM ---- */

static void runner_post_lost(runner *r);

typedef struct rcount {
    runner *r;
    char id[JOB_ID_MAX];
    json_t *entry; /* [id, [fields]] kept as strings until the delivery count is known */
} rcount;

static void runner_autoclaim_count(redis_status st, redisReply *rep, void *ud)
{
    rcount *c = ud;
    runner *r = c->r;
    r->claiming--;
    unsigned deliveries = 1;
    if (st == REDIS_ST_OK && rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
        rep->element[0]->type == REDIS_REPLY_ARRAY && rep->element[0]->elements == 4)
        deliveries = (unsigned)rep->element[0]->element[3]->integer;
    if (!r->stopping) {
        json_t *fields = json_array_get(c->entry, 1);
        size_t n = json_array_size(fields);
        const char **kv = xcalloc(n ? n : 1, sizeof *kv);
        for (size_t i = 0; i < n; i++)
            kv[i] = json_string_value(json_array_get(fields, i));
        if (rjob_new(r, c->id, kv, n, deliveries))
            log_emit(LOG_INFO, NULL,
                     json_pack("{s:s, s:i}", "id", c->id, "deliveries", (int)deliveries),
                     "job taken over from another consumer");
        free(kv);
    }
    json_decref(c->entry);
    free(c);
    runner_pump(r);
}

static void runner_autoclaim_cb(redis_status st, redisReply *rep, void *ud)
{
    runner *r = ud;
    r->scanning = 0;
    if (st != REDIS_ST_OK || !rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 2) {
        runner_group_cmd_failed(r, "XAUTOCLAIM", st, rep);
        return;
    }
    if (rep->element[0]->type == REDIS_REPLY_STRING)
        snprintf(r->autoclaim_cursor, sizeof r->autoclaim_cursor, "%s", rep->element[0]->str);
    const redisReply *entries = rep->element[1];
    for (size_t i = 0; entries->type == REDIS_REPLY_ARRAY && i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY ||
            strlen(e->element[0]->str) >= JOB_ID_MAX || runner_in_hand(r, e->element[0]->str))
            continue;
        rcount *c = xcalloc(1, sizeof *c);
        c->r = r;
        snprintf(c->id, sizeof c->id, "%s", e->element[0]->str);
        json_t *fields = json_array();
        for (size_t k = 0; k < e->element[1]->elements; k++) {
            const redisReply *f = e->element[1]->element[k];
            json_array_append_new(fields, json_stringn(f->type == REDIS_REPLY_STRING ? f->str : "",
                                                       f->type == REDIS_REPLY_STRING ? f->len : 0));
        }
        c->entry = json_pack("[s,o]", c->id, fields);
        r->claiming++;
        const char *argv[] = {"XPENDING", r->stream, RUNNER_GROUP, c->id, c->id, "1"};
        redis_command_argv(r->rd, runner_autoclaim_count, c, 6, argv, NULL);
    }
    /* Redis 7: the third element lists the ids that were pending but deleted from the stream. */
    if (rep->elements >= 3 && rep->element[2]->type == REDIS_REPLY_ARRAY &&
        rep->element[2]->elements) {
        for (size_t i = 0; i < rep->element[2]->elements; i++)
            if (rep->element[2]->element[i]->type == REDIS_REPLY_STRING)
                json_array_append_new(r->lost_ids, json_string(rep->element[2]->element[i]->str));
        log_emit(LOG_WARN, NULL, json_pack("{s:O}", "ids", r->lost_ids),
                 "pending jobs were deleted from the stream");
        runner_post_lost(r);
    }
}

static void runner_autoclaim(runner *r)
{
    unsigned n = runner_slots_free(r);
    if (r->stopping || n == 0) {
        r->scanning = 0;
        return;
    }
    char idle[24], count[16];
    snprintf(idle, sizeof idle, "%llu", (unsigned long long)r->takeover_ms);
    snprintf(count, sizeof count, "%u", n);
    const char *argv[] = {"XAUTOCLAIM", r->stream,           RUNNER_GROUP, r->consumer,
                          idle,         r->autoclaim_cursor, "COUNT",      count};
    redis_command_argv(r->rd, runner_autoclaim_cb, r, 8, argv, NULL);
}

static void runner_scan(runner *r)
{
    if (r->scanning || r->stopping || !r->group_ready || runner_slots_free(r) == 0 ||
        uv_now(r->svc.loop) < r->storage_wait_until)
        return;
    r->scanning = 1;
    char idle[24], count[16];
    snprintf(idle, sizeof idle, "%lu", r->retry_base_ms);
    snprintf(count, sizeof count, "%d", RUNNER_SCAN_COUNT);
    const char *argv[] = {"XPENDING", r->stream, RUNNER_GROUP, "IDLE",     idle,
                          "-",        "+",       count,        r->consumer};
    redis_command_argv(r->rd, runner_pending_cb, r, 9, argv, NULL);
}

/* ---- lost entries: told to svc-storage until it took them ---- */

static void runner_lost_posted(runner *r, rjob *rj, int status)
{
    (void)rj;
    r->lost_posting = 0;
    /* Taken, or refused for good (a 4xx will not change): else asked again next scan. */
    if (status >= 200 && status < 500)
        json_array_clear(r->lost_ids);
}

static void runner_post_lost(runner *r)
{
    if (r->lost_posting || json_array_size(r->lost_ids) == 0)
        return;
    r->lost_posting = 1;
    runner_post(r, NULL, xstrdup("/internal/jobs/lost"),
                json_pack("{s:s, s:O}", "stream", r->stream, "ids", r->lost_ids),
                runner_lost_posted);
}

/* ---- lease renewal of the jobs in hand ---- */

/* Resets the idle time of the entries still pending with this consumer (JUSTID: the
 * delivery count stays), so that no XAUTOCLAIM takes a job that is being worked on. */
static const char RUNNER_RENEW_LUA[] =
    "local n = 0\n"
    "for i = 3, #ARGV do\n"
    "  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])\n"
    "  if #p == 1 then\n"
    "    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n";

static void runner_renewed(redis_status st, redisReply *rep, void *ud)
{
    runner *r = ud;
    r->heartbeating = 0;
    if (st != REDIS_ST_OK || !rep || rep->type == REDIS_REPLY_ERROR)
        runner_log_redis("lease renewal", st, rep);
}

static void runner_renew(runner *r)
{
    if (r->heartbeating || !r->hand_first)
        return;
    size_t n = 0;
    for (rjob *rj = r->hand_first; rj; rj = rj->next)
        n++;
    const char **argv = xcalloc(n + 6, sizeof *argv);
    size_t k = 0;
    argv[k++] = "EVAL";
    argv[k++] = RUNNER_RENEW_LUA;
    argv[k++] = "1";
    argv[k++] = r->stream;
    argv[k++] = RUNNER_GROUP;
    argv[k++] = r->consumer;
    for (rjob *rj = r->hand_first; rj; rj = rj->next)
        argv[k++] = rj->j.id;
    r->heartbeating = 1;
    redis_command_argv(r->rd, runner_renewed, r, (int)k, argv, NULL);
    free(argv);
}

/* ---- trimming: XTRIM MINID below the oldest entry still needed ---- */

static void runner_trim_summary(redis_status st, redisReply *rep, void *ud);

static void runner_trim_info(redis_status st, redisReply *rep, void *ud)
{
    runner *r = ud;
    if (st != REDIS_ST_OK || !rep || rep->type != REDIS_REPLY_ARRAY) {
        r->trimming = 0;
        runner_group_cmd_failed(r, "XINFO GROUPS", st, rep);
        return;
    }
    /* The last-delivered id, read before the pending summary: an entry delivered in between
     * is after it and so kept. */
    char *last = NULL;
    for (size_t g = 0; g < rep->elements && !last; g++) {
        const redisReply *grp = rep->element[g];
        const char *name = NULL, *ld = NULL;
        for (size_t i = 0; grp->type == REDIS_REPLY_ARRAY && i + 1 < grp->elements; i += 2) {
            const redisReply *k = grp->element[i], *v = grp->element[i + 1];
            if (k->type != REDIS_REPLY_STRING && k->type != REDIS_REPLY_STATUS)
                continue;
            if (strcmp(k->str, "name") == 0 && v->type == REDIS_REPLY_STRING)
                name = v->str;
            else if (strcmp(k->str, "last-delivered-id") == 0 && v->type == REDIS_REPLY_STRING)
                ld = v->str;
        }
        if (name && ld && strcmp(name, RUNNER_GROUP) == 0)
            last = xstrdup(ld);
    }
    if (!last) {
        r->trimming = 0;
        return;
    }
    const char *argv[] = {"XPENDING", r->stream, RUNNER_GROUP};
    redis_command_argv(r->rd, runner_trim_summary, last, 3, argv, NULL);
}

static void runner_trimmed(redis_status st, redisReply *rep, void *ud)
{
    runner *r = ud;
    r->trimming = 0;
    if (st != REDIS_ST_OK || !rep || rep->type == REDIS_REPLY_ERROR)
        runner_log_redis("XTRIM", st, rep);
}

static void runner_trim_summary(redis_status st, redisReply *rep, void *ud)
{
    runner *r = &R;
    char *last = ud, minid[JOB_ID_MAX];
    int ok = 0;
    if (st == REDIS_ST_OK && rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 2) {
        if (rep->element[0]->type == REDIS_REPLY_INTEGER && rep->element[0]->integer > 0 &&
            rep->element[1]->type == REDIS_REPLY_STRING)
            ok = snprintf(minid, sizeof minid, "%s", rep->element[1]->str) < (int)sizeof minid;
        else if (rep->element[0]->type == REDIS_REPLY_INTEGER && rep->element[0]->integer == 0)
            ok = job_id_next(last, minid, sizeof minid) == 0;
    }
    free(last);
    if (!ok || r->stopping) {
        r->trimming = 0;
        return;
    }
    const char *argv[] = {"XTRIM", r->stream, "MINID", minid};
    redis_command_argv(r->rd, runner_trimmed, r, 4, argv, NULL);
}

/* Consumers without pending entries that have not been seen for 10 times the take-over idle
 * time are dead workers' names (hostname-pid): deleted so that the group does not collect
 * them forever. A live worker touches its consumer at every read and lease renewal; were it
 * deleted anyway, its next read creates it again, and no entry is lost (none was pending). */
static void runner_consumers_cb(redis_status st, redisReply *rep, void *ud)
{
    runner *r = ud;
    if (st != REDIS_ST_OK || !rep || rep->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t c = 0; c < rep->elements; c++) {
        const redisReply *cons = rep->element[c];
        const char *name = NULL;
        long long pending = -1, idle = -1;
        for (size_t i = 0; cons->type == REDIS_REPLY_ARRAY && i + 1 < cons->elements; i += 2) {
            const redisReply *k = cons->element[i], *v = cons->element[i + 1];
            if (k->type != REDIS_REPLY_STRING && k->type != REDIS_REPLY_STATUS)
                continue;
            if (strcmp(k->str, "name") == 0 && v->type == REDIS_REPLY_STRING)
                name = v->str;
            else if (strcmp(k->str, "pending") == 0 && v->type == REDIS_REPLY_INTEGER)
                pending = v->integer;
            else if (strcmp(k->str, "idle") == 0 && v->type == REDIS_REPLY_INTEGER)
                idle = v->integer;
        }
        if (!name || strcmp(name, r->consumer) == 0 || pending != 0 || idle < 0 ||
            (uint64_t)idle < r->takeover_ms * 10)
            continue;
        const char *argv[] = {"XGROUP", "DELCONSUMER", r->stream, RUNNER_GROUP, name};
        redis_command_argv(r->rd, NULL, NULL, 5, argv, NULL);
        log_emit(LOG_INFO, NULL,
                 json_pack("{s:s, s:I}", "consumer", name, "idle_ms", (json_int_t)idle),
                 "idle consumer without pending jobs removed");
    }
}

static void runner_trim(runner *r)
{
    if (!r->trimming && r->group_ready) {
        const char *argv[] = {"XINFO", "CONSUMERS", r->stream, RUNNER_GROUP};
        redis_command_argv(r->rd, runner_consumers_cb, r, 4, argv, NULL);
    }
    if (r->trimming || !r->group_ready)
        return;
    r->trimming = 1;
    const char *argv[] = {"XINFO", "GROUPS", r->stream};
    redis_command_argv(r->rd, runner_trim_info, r, 3, argv, NULL);
}

/* ---- the tick ---- */

static void runner_tick(uv_timer_t *t)
{
    runner *r = t->data;
    uint64_t now = uv_now(r->svc.loop);
    for (rjob *rj = r->hand_first, *next; rj; rj = next) {
        next = rj->next;
        if (rj->state == RJ_RUNNING && !rj->abandoned && now >= rj->deadline) {
            log_emit(LOG_WARN, NULL,
                     json_pack("{s:s, s:s, s:i}", "id", rj->j.id, "doc", rj->j.doc, "timeout_ms",
                               (int)r->job_timeout_ms),
                     "job timed out: abandoned, it stays pending");
            metric_inc(r->m_failed);
            rjob_drop(r, rj);
        }
    }
    if (r->stopping) {
        if (now >= r->drain_deadline)
            runner_finish(r);
        return;
    }
    if (!r->group_ready)
        runner_group_create(r);
    runner_read(r);
    if (now >= r->next_scan) {
        r->next_scan = now + (r->retry_base_ms < 1000 ? r->retry_base_ms / 2 + 1 : 500);
        runner_scan(r);
        runner_post_lost(r);
    }
    if (now >= r->next_heartbeat) {
        r->next_heartbeat = now + r->claim_idle_ms / 3 + 1;
        runner_renew(r);
    }
    if (now >= r->next_trim) {
        r->next_trim = now + RUNNER_TRIM_EVERY;
        runner_trim(r);
    }
}

/* ---- start and stop ---- */

static void runner_close_walk(uv_handle_t *h, void *ud)
{
    (void)ud;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Everything in hand is finished, or the drain bound passed. */
static void runner_finish(runner *r)
{
    if (r->stopping > 1)
        return;
    r->stopping = 2;
    unsigned left = 0;
    for (rjob *rj = r->hand_first; rj; rj = rj->next)
        left += rj->state != RJ_QUEUED;
    if (left) {
        /* Their threads cannot be stopped from here; the entries stay pending with this
         * consumer and another worker claims them after WORKER_CLAIM_IDLE. */
        log_emit(LOG_WARN, NULL, json_pack("{s:i}", "jobs", (int)left),
                 "drain timeout: jobs left pending for another worker");
        _exit(0);
    }
    log_info(NULL, "drained, stopping");
    while (r->hand_first)
        rjob_drop(r, r->hand_first); /* queued only: handed back */
    uv_timer_stop(&r->tick);
    uv_signal_stop(&r->sigterm);
    uv_signal_stop(&r->sigint);
    if (r->svc.http)
        http_server_drain(r->svc.http, 1000, NULL, NULL);
    r->svc.redis = NULL;
    redis_free(r->rd);
    if (r->rd_read)
        redis_free(r->rd_read);
    r->rd_read = NULL;
    service_token_free(r->token);
    upstream_free(r->storage);
    upstream_free(r->auth);
    http_client_free(r->svc.client);
    r->svc.client = NULL;
}

static void runner_on_signal(uv_signal_t *h, int signum)
{
    runner *r = h->data;
    if (r->stopping)
        return;
    r->stopping = 1;
    r->drain_deadline = uv_now(r->svc.loop) + r->drain_ms;
    log_emit(LOG_INFO, NULL, json_pack("{s:i, s:i}", "signal", signum, "jobs", (int)r->started),
             "stopping: finishing the jobs in hand");
    redis_free(r->rd_read); /* no more reads; an answer on its way is left pending */
    r->rd_read = NULL;
    r->reading = 0;
    /* Queued jobs were not started: handed back at once. */
    for (rjob *rj = r->hand_first, *next; rj; rj = next) {
        next = rj->next;
        if (rj->state == RJ_QUEUED) {
            DQ_REMOVE(r->hand_first, r->hand_last, rj, next, prev);
            r->queued--;
            rjob_free(rj);
        }
    }
    if (r->started == 0)
        runner_finish(r);
}

static int runner_storage_up(void *ud)
{
    unsigned healthy, total;
    upstream_counts(ud, &healthy, &total);
    return healthy > 0;
}

static int runner_config(runner *r)
{
    const char *storage = config_str("STORAGE_URL", NULL);
    const char *auth = config_str("AUTH_URL", NULL);
    const char *secret = config_str("SERVICE_SECRET", NULL);
    if (!storage || !auth || !secret || !*secret) {
        log_error(NULL, "STORAGE_URL, AUTH_URL and SERVICE_SECRET must be set");
        return -1;
    }
    r->storage_dir = config_str("STORAGE_DIR", "var/storage");
    char host[64];
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "worker");
    host[sizeof host - 1] = '\0';
    char def[128];
    snprintf(def, sizeof def, "%s-%ld", host, (long)getpid());
    snprintf(r->consumer, sizeof r->consumer, "%s", config_str("WORKER_CONSUMER", def));
    long conc = config_int("WORKER_CONCURRENCY", 1);
    long maxd = config_int("WORKER_MAX_DELIVERIES", 5);
    r->block_ms = (unsigned long)config_ms("WORKER_BLOCK", 5000);
    r->claim_idle_ms = (unsigned long)config_ms("WORKER_CLAIM_IDLE", 60000);
    r->retry_base_ms = (unsigned long)config_ms("WORKER_RETRY_BASE", 2000);
    r->job_timeout_ms = (unsigned long)config_ms("WORKER_JOB_TIMEOUT", 5 * 60 * 1000L);
    r->drain_ms = (unsigned long)config_ms("WORKER_DRAIN_TIMEOUT", 30000);
    if (conc < 1 || conc > 256 || maxd < 1 || maxd > 1000 || r->block_ms < 1 ||
        r->claim_idle_ms < 100 || r->retry_base_ms < 1 || r->job_timeout_ms < 1) {
        log_error(NULL, "WORKER_CONCURRENCY must be 1..256, WORKER_MAX_DELIVERIES 1..1000, "
                        "WORKER_CLAIM_IDLE at least 100ms, the other durations positive");
        return -1;
    }
    r->concurrency = (unsigned)conc;
    r->max_deliveries = (unsigned)maxd;
    uint64_t longest = job_backoff_ms(r->retry_base_ms, r->max_deliveries - 1, RUNNER_RETRY_CAP_MS);
    r->takeover_ms = r->claim_idle_ms > longest ? r->claim_idle_ms : longest;
    if (r->takeover_ms > r->claim_idle_ms)
        log_emit(LOG_WARN, NULL, json_pack("{s:I}", "takeover_ms", (json_int_t)r->takeover_ms),
                 "WORKER_CLAIM_IDLE is shorter than the longest retry backoff: jobs of dead "
                 "workers are taken over after the backoff instead");
    snprintf(r->stream, sizeof r->stream, "jobs:%s", r->o.name);
    snprintf(r->dead, sizeof r->dead, "jobs:%s:dead", r->o.name);
    snprintf(r->autoclaim_cursor, sizeof r->autoclaim_cursor, "0-0");

    upstream_opts uo;
    upstream_opts_default(&uo);
    r->storage = upstream_new(r->svc.loop, r->svc.client, "storage", storage, &uo);
    r->auth = upstream_new(r->svc.loop, r->svc.client, "auth", auth, &uo);
    if (!r->storage || !r->auth) {
        log_error(NULL, "STORAGE_URL and AUTH_URL must be host:port[,host:port]");
        return -1;
    }
    r->token = service_token_new(r->svc.loop, r->auth, "workers", secret, "storage");
    redis_opts ro;
    redis_opts_default(&ro);
    r->rd = redis_new(r->svc.loop, &ro);
    r->rd_read = redis_new(r->svc.loop, &ro);
    if (!r->rd || !r->rd_read) {
        log_error(NULL, "REDIS_HOST/REDIS_PORT are not usable");
        return -1;
    }
    return 0;
}

static void runner_metrics(runner *r)
{
    char labels[160];
    snprintf(labels, sizeof labels, "stream=\"%s\"", r->stream);
    r->m_done = metrics_counter("worker_jobs_done_total", "Jobs done and acknowledged.", labels);
    r->m_failed = metrics_counter("worker_jobs_failed_total", "Job runs that failed.", labels);
    r->m_dead =
        metrics_counter("worker_jobs_dead_total", "Jobs moved to the dead letters.", labels);
    r->m_retried =
        metrics_counter("worker_jobs_retried_total", "Jobs left pending for a retry.", labels);
    r->m_seconds = metrics_histogram("worker_job_seconds", "Time a handler took.", labels);
}

int runner_main(const runner_opts *o)
{
    runner *r = &R;
    memset(r, 0, sizeof *r);
    r->o = *o;
    /* The pool runs handlers (WORKER_CONCURRENCY at once, plus abandoned ones still
     * stopping) and libuv's own DNS and file work: size it before its first use. */
    long conc = config_int("WORKER_CONCURRENCY", 1);
    if (!getenv("UV_THREADPOOL_SIZE") && conc > 0 && conc <= 256) {
        char n[16];
        snprintf(n, sizeof n, "%ld", conc + 4);
        setenv("UV_THREADPOOL_SIZE", n, 1);
    }
    if (service_init(&r->svc, o->svc) != 0)
        return 1;
    r->lost_ids = json_array();
    if (runner_config(r) != 0)
        return 2;
    runner_metrics(r);
    r->svc.redis = r->rd;
    service_add_check(&r->svc, "storage", runner_storage_up, r->storage);
    long port = config_int("PORT", 0);
    if (port < 0 || port > 65535) {
        log_error(NULL, "PORT must be a TCP port");
        return 2;
    }
    if (port) {
        http_server_opts ho = {0};
        ho.limits = r->svc.limits;
        ho.handler = router_dispatch;
        ho.handler_ud = r->svc.router;
        r->svc.http = http_server_new(r->svc.loop, &ho);
        const char *host = config_str("HOST", "0.0.0.0");
        int rc = http_server_listen(r->svc.http, host, (int)port, 0);
        if (rc != 0) {
            log_error(NULL, "cannot listen on %s:%ld: %s", host, port, uv_strerror(rc));
            return 1;
        }
    }
    uv_timer_init(r->svc.loop, &r->tick);
    r->tick.data = r;
    uv_timer_start(&r->tick, runner_tick, 0, RUNNER_TICK_MS);
    uv_signal_init(r->svc.loop, &r->sigterm);
    uv_signal_init(r->svc.loop, &r->sigint);
    r->sigterm.data = r->sigint.data = r;
    uv_signal_start(&r->sigterm, runner_on_signal, SIGTERM);
    uv_signal_start(&r->sigint, runner_on_signal, SIGINT);
    log_emit(LOG_INFO, NULL,
             json_pack("{s:s, s:s, s:i}", "stream", r->stream, "consumer", r->consumer,
                       "concurrency", (int)r->concurrency),
             "worker started");
    uv_run(r->svc.loop, UV_RUN_DEFAULT);

    if (r->svc.http)
        http_server_free(r->svc.http);
    r->svc.http = NULL;
    uv_walk(r->svc.loop, runner_close_walk, NULL);
    uv_run(r->svc.loop, UV_RUN_DEFAULT);
    router_free(r->svc.router);
    json_decref(r->lost_ids);
    metrics_reset();
    uv_loop_close(r->svc.loop);
    log_info(NULL, "stopped");
    return 0;
}
