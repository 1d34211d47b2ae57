/* job_driver: the job runner (worker-ocr/runner.c) with a handler whose behaviour each job
 * chooses, for tests/integration/test_workers.py and bench/jobs.sh. Stream jobs:<name>
 * (JOB_DRIVER_NAME, default "test"); JOB_DRIVER_PROCESSING=1 reports "processing" first.
 * The entry's field "mode" says what to do:
 *   ok (or none)   done at once, the report says which process and delivery it was
 *   empty          done at once with {"status":"done"} only (the queue-overhead benchmark)
 *   transient:N    fails transiently on deliveries 1..N, then done
 *   permanent      fails permanently ("corrupt file")
 *   sleep:S        sleeps S seconds (stopping early when the job is abandoned), then done
 * Every other setting is the runner's (runner.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "runner.h"

static int driver_handle(const job *j, job_result *out)
{
    const char *mode = job_field(j, "mode");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t started_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    if (!mode)
        mode = "ok";
    if (strcmp(mode, "empty") == 0)
        return JOB_OK;
    if (strcmp(mode, "permanent") == 0) {
        snprintf(out->error, sizeof out->error, "corrupt file");
        return JOB_PERMANENT;
    }
    if (strncmp(mode, "transient:", 10) == 0 && j->deliveries <= (unsigned)atoi(mode + 10)) {
        snprintf(out->error, sizeof out->error, "transient failure %u", j->deliveries);
        return JOB_TRANSIENT;
    }
    if (strncmp(mode, "sleep:", 6) == 0) {
        uint64_t until = clock_mono_ms() + (uint64_t)(atof(mode + 6) * 1000);
        while (clock_mono_ms() < until) {
            if (atomic_load(&((job *)j)->cancel)) {
                snprintf(out->error, sizeof out->error, "abandoned");
                return JOB_TRANSIENT;
            }
            usleep(20000);
        }
    }
    out->report = json_pack("{s:s, s:i, s:i, s:I}", "status", "done", "pid", (int)getpid(),
                            "delivery", (int)j->deliveries, "started_us", (json_int_t)started_us);
    return JOB_OK;
}

int main(void)
{
    const char *name = getenv("JOB_DRIVER_NAME");
    const char *proc = getenv("JOB_DRIVER_PROCESSING");
    runner_opts o = {.name = name && *name ? name : "test",
                     .svc = "job-driver",
                     .report_processing = proc && strcmp(proc, "1") == 0,
                     .handler = driver_handle};
    return runner_main(&o);
}
