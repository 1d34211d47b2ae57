/* runner: the job-runner core of the workers. It takes jobs from the Redis stream
 * jobs:<name> (consumer group "workers"), runs a blocking handler for each on the libuv
 * threadpool (at most WORKER_CONCURRENCY at once), posts the result to svc-storage's
 * /internal/documents/{doc}/<name> with a service token, and acknowledges an entry only once
 * storage answered 204 (or 404: the document is gone). Failed jobs stay pending and are
 * claimed again after a backoff that doubles per delivery; after WORKER_MAX_DELIVERIES, or
 * at once on a permanent failure, the job goes to jobs:<name>:dead. Jobs left by a dead
 * consumer are taken over after WORKER_CLAIM_IDLE (XAUTOCLAIM); while a job is in hand its
 * idle time is reset regularly so that nobody takes it over meanwhile. The stream is trimmed
 * with XTRIM MINID below the oldest pending entry. SIGTERM: stop reading, let jobs in hand
 * finish for WORKER_DRAIN_TIMEOUT, exit 0; what is not finished then stays pending for
 * another worker to claim after WORKER_CLAIM_IDLE.
 *
 * Environment: STORAGE_URL, AUTH_URL, SERVICE_SECRET(_FILE), STORAGE_DIR, REDIS_*,
 * WORKER_CONSUMER, WORKER_CONCURRENCY, WORKER_BLOCK, WORKER_CLAIM_IDLE, WORKER_RETRY_BASE,
 * WORKER_MAX_DELIVERIES, WORKER_JOB_TIMEOUT, WORKER_DRAIN_TIMEOUT, PORT and HOST (optional:
 * /livez /health /metrics), LOG_LEVEL. */
#ifndef WORKER_RUNNER_H
#define WORKER_RUNNER_H

#include "job.h"

typedef struct runner_opts {
    const char *name;      /* "ocr": stream jobs:ocr, reports to .../{doc}/ocr */
    const char *svc;       /* the log and metrics name: "worker-ocr" */
    int report_processing; /* post {"status":"processing"} before running the handler */
    job_handler_fn handler;
    void *ctx; /* given to the handler as job.ctx */
} runner_opts;

/* Reads the configuration and runs until SIGTERM/SIGINT. Returns the exit status. */
int runner_main(const runner_opts *o);

#endif
