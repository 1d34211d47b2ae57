/* runner_int.h: the job runner's state, shared by runner.c (the job loop and the reports to
 * svc-storage) and stream.c (the Redis stream operations), and what runner.c offers stream.c.
 * Internal to the runner core: no other file includes it. */
#ifndef WORKER_RUNNER_INT_H
#define WORKER_RUNNER_INT_H

#include <stdint.h>

#include <uv.h>

#include "job.h"
#include "metrics.h"
#include "redis.h"
#include "runner.h"
#include "service.h"
#include "service_token.h"
#include "upstream.h"

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

/* The one runner of the process (runner_main's). */
extern runner runner_global;

/* Free slots: concurrency less the jobs started, queued or being claimed. */
unsigned runner_slots_free(const runner *r);
/* The job in hand with this stream id, or NULL. */
rjob *runner_in_hand(runner *r, const char *id);
/* Takes an entry into our hands (queued); NULL when it is already in hand or unusable. */
rjob *rjob_new(runner *r, const char *id, const char *const *kv, size_t nkv, unsigned deliveries);
/* The job leaves our hands (acknowledged, or left pending for a retry). */
void rjob_drop(runner *r, rjob *rj);
/* Starts queued jobs while slots are free, then reads more. */
void runner_pump(runner *r);
/* Tells svc-storage the ids of pending entries deleted from the stream (r->lost_ids). */
void runner_post_lost(runner *r);

#endif
