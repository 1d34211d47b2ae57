/* runner: the job-runner core of worker-ocr and worker-archive (see runner.h): the job loop
 * and the reports to svc-storage; the Redis stream operations are in stream.c.
 *
 * One loop thread does all the Redis and HTTP work; handlers run on the threadpool. Two Redis
 * connections: one for the blocking XREADGROUP, one for everything else. A job record (rjob)
 * lives from the moment the entry is in our hands (read or claimed) until it is acknowledged
 * or released (left pending for a later retry); a record whose handler is abandoned lives on
 * until its thread returns. One 250 ms tick checks job deadlines and runs the periodic work
 * of stream.c: the retry scan (own pending entries past their backoff: XPENDING IDLE +
 * XCLAIM), the take-over of dead consumers' entries (XAUTOCLAIM), the lease renewal of jobs
 * in hand and the trim of the stream. */
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
#include "stream.h"
#include "upstream.h"
#include "xalloc.h"

runner runner_global;

static void runner_finish(runner *r);

/* ---- small helpers ---- */

unsigned runner_slots_free(const runner *r)
{
    unsigned used = r->started + r->queued + r->claiming;
    return used >= r->concurrency ? 0 : r->concurrency - used;
}

rjob *runner_in_hand(runner *r, const char *id)
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

/* ---- job records ---- */

/* Takes an entry into our hands (queued); NULL when it is already in hand or unusable. */
rjob *rjob_new(runner *r, const char *id, const char *const *kv, size_t nkv, unsigned deliveries)
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

static void rjob_free(rjob *rj)
{
    json_decref(rj->res.report);
    job_release(&rj->j);
    free(rj);
}

/* The job leaves our hands (acknowledged, or left pending for a retry). */
void rjob_drop(runner *r, rjob *rj)
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

/* ---- outcomes ---- */

static void runner_done_posted(runner *r, rjob *rj, int status)
{
    if (status == 204 || status == 200 || status == 404) {
        if (status != 404)
            metric_inc(r->m_done);
        stream_ack(r, rj);
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
        stream_bury(r, rj);
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
        stream_bury(r, rj);
        return;
    }
    runner_report(r, rj,
                  json_pack("{s:s, s:s, s:b}", "status", "failed", "error", reason, "dead", 1),
                  runner_dead_posted);
}

static void runner_after_work(uv_work_t *w, int status)
{
    rjob *rj = w->data;
    runner *r = &runner_global;
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
    rj->rc = runner_global.o.handler(&rj->j, &rj->res);
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
        stream_ack(r, rj); /* the document is gone */
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
void runner_pump(runner *r)
{
    while (!r->stopping && r->started < r->concurrency) {
        rjob *rj = r->hand_first;
        while (rj && rj->state != RJ_QUEUED)
            rj = rj->next;
        if (!rj)
            break;
        runner_start(r, rj); /* may drop it, or others, before returning */
    }
    stream_read(r);
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

void runner_post_lost(runner *r)
{
    if (r->lost_posting || json_array_size(r->lost_ids) == 0)
        return;
    r->lost_posting = 1;
    runner_post(r, NULL, xstrdup("/internal/jobs/lost"),
                json_pack("{s:s, s:O}", "stream", r->stream, "ids", r->lost_ids),
                runner_lost_posted);
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
        stream_group_create(r);
    stream_read(r);
    if (now >= r->next_scan) {
        r->next_scan = now + (r->retry_base_ms < 1000 ? r->retry_base_ms / 2 + 1 : 500);
        stream_scan(r);
        runner_post_lost(r);
    }
    if (now >= r->next_heartbeat) {
        r->next_heartbeat = now + r->claim_idle_ms / 3 + 1;
        stream_renew(r);
    }
    if (now >= r->next_trim) {
        r->next_trim = now + RUNNER_TRIM_EVERY;
        stream_trim(r);
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
    runner *r = &runner_global;
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
