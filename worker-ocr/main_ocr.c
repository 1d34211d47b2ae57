/* worker-ocr: the OCR worker. Takes jobs from jobs:ocr (runner.c), reports "processing",
 * reads the stored file's text with Tesseract (ocr.c) on a threadpool thread and reports
 * {"status":"done","text","confidence","pages"}, or the failure: a file that cannot be read
 * (corrupt, hostile, too many pages, timed out) fails at once and goes to jobs:ocr:dead;
 * a transient failure (memory, Tesseract start) is retried with backoff.
 *
 * Environment: the runner's (runner.h), and
 *   OCR_LANG        Tesseract language(s): eng
 *   OCR_MAX_PAGES   pages read at most, a document with more fails: 50
 * The Tesseract run of a job is bounded by WORKER_JOB_TIMEOUT (ocr_opts.timeout_ms).
 * Each threadpool thread keeps its TessBaseAPI; ocr.c frees it when the thread exits (libuv
 * joins its threads only at exit, so at exit they are reclaimed with the process). */
#include <limits.h>
#include <stdio.h>

#include "config.h"
#include "healthcheck.h"
#include "log.h"
#include "ocr.h"
#include "runner.h"

static ocr_opts worker_ocr_opts;

static int worker_ocr_handle(const job *j, job_result *out)
{
    const ocr_opts *base = j->ctx;
    char path[PATH_MAX];
    if (job_path(j, path, sizeof path) != 0) {
        snprintf(out->error, sizeof out->error, "the job names no usable file");
        return JOB_PERMANENT;
    }
    ocr_opts o = *base;
    o.timeout_ms = j->timeout_ms;
    ocr_result res = {0};
    int rc = ocr_file(path, j->type, &o, &res);
    if (rc == 0) {
        out->report =
            json_pack("{s:s, s:s, s:f, s:i}", "status", "done", "text", res.text ? res.text : "",
                      "confidence", res.confidence, "pages", res.pages);
        if (!out->report) {
            snprintf(out->error, sizeof out->error, "the text is not valid UTF-8");
            rc = -1;
        }
    } else {
        snprintf(out->error, sizeof out->error, "%s",
                 res.error[0] ? res.error : "the text could not be read");
    }
    ocr_result_free(&res);
    return rc == 0 ? JOB_OK : rc == -1 ? JOB_PERMANENT : JOB_TRANSIENT;
}

int main(int argc, char **argv)
{
    int hc = healthcheck_main(argc, argv, "PORT", "/livez");
    if (hc >= 0)
        return hc;
    ocr_opts_default(&worker_ocr_opts);
    worker_ocr_opts.lang = config_str("OCR_LANG", "eng");
    long pages = config_int("OCR_MAX_PAGES", 50);
    if (pages < 1 || pages > 10000) {
        log_init("worker-ocr");
        log_error(NULL, "OCR_MAX_PAGES must be 1..10000");
        return 2;
    }
    worker_ocr_opts.max_pages = (int)pages;
    runner_opts o = {.name = "ocr",
                     .svc = "worker-ocr",
                     .report_processing = 1,
                     .handler = worker_ocr_handle,
                     .ctx = &worker_ocr_opts};
    return runner_main(&o);
}
