/* workq: a lane of heavy work on the libuv threadpool (argon2 hashes, ES256 signatures): at
 * most `concurrency` jobs run at once and at most `queue_max` wait, in FIFO order. A full
 * lane refuses new jobs, so the caller answers 503 with Retry-After instead of queueing
 * without bound. The event loop only queues jobs and completes them; it never runs them.
 *
 * Threads that run a job are set to the lowest priority (nice 19; Linux: per thread, and it
 * stays so), so the event loop keeps its core under load and /livez, /auth/me stay fast.
 *
 * A caller that must not fail later (it is about to change state that only a reply can hand
 * over, like a rotated refresh token) reserves a place first: workq_reserve(), then
 * workq_submit_reserved() (never refused) or workq_release(). */
#ifndef SVC_AUTH_WORKQ_H
#define SVC_AUTH_WORKQ_H

#include <uv.h>

#include "metrics.h"

typedef struct workq workq;
typedef struct workq_job workq_job;

/* Runs on a threadpool thread: may only touch the job (and thread-safe shared state). */
typedef void (*workq_run_fn)(workq_job *j);
/* Runs on the loop once the job is over; ran is 0 when run never happened (libuv refused the
 * work). The job belongs to the callback (it usually frees it). */
typedef void (*workq_done_fn)(workq_job *j, int ran);

/* Embed as the first member of a job structure. Fields are the lane's. */
struct workq_job {
    uv_work_t work;
    workq *q;
    workq_run_fn run;
    workq_done_fn done;
    workq_job *next;
};

/* running, waiting (gauges) and rejected (counter) may be NULL. */
workq *workq_new(uv_loop_t *loop, unsigned concurrency, unsigned queue_max, metric *running,
                 metric *waiting, metric *rejected);
/* At exit, once the loop has stopped: jobs still waiting are handed to drop (their done never
 * runs; drop frees them), then the lane is freed. */
void workq_free(workq *q, void (*drop)(workq_job *j));

/* Queues j. Returns 0 (done will run exactly once) or -1 when the lane is full (j untouched). */
int workq_submit(workq *q, workq_job *j, workq_run_fn run, workq_done_fn done);
/* Holds one place for a later workq_submit_reserved. 0, or -1 when the lane is full. */
int workq_reserve(workq *q);
void workq_release(workq *q);
/* Queues j in a place held by workq_reserve (consumed); never refused. */
void workq_submit_reserved(workq *q, workq_job *j, workq_run_fn run, workq_done_fn done);

unsigned workq_running(const workq *q);
unsigned workq_waiting(const workq *q);

#endif
