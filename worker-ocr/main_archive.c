/* worker-archive: the archive worker. Takes jobs from jobs:archive (runner.c), uploads the
 * stored file to the archive as "<org>/<doc>" (common/objstore.c: file:// or S3, streamed,
 * size checked with HEAD) on a threadpool thread, and reports
 * {"status":"done","location":"s3://bucket/org/doc"}. A failed upload is retried with
 * backoff, then goes to jobs:archive:dead; a job whose file is missing or whose key is not
 * valid fails at once.
 *
 * Environment: the runner's (runner.h), and objstore's ARCHIVE_URL (default file:// of
 * STORAGE_DIR/archive), S3_ENDPOINT, S3_REGION, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "healthcheck.h"
#include "log.h"
#include "objstore.h"
#include "runner.h"

static int worker_archive_handle(const job *j, job_result *out)
{
    objstore *store = j->ctx;
    char path[PATH_MAX], key[300], location[1024];
    snprintf(key, sizeof key, "%s/%s", j->org, j->doc);
    if (job_path(j, path, sizeof path) != 0 || !objstore_key_valid(key)) {
        snprintf(out->error, sizeof out->error, "the job names no usable file or key");
        return JOB_PERMANENT;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        snprintf(out->error, sizeof out->error, "the stored file is missing: %s", strerror(e));
        return e == ENOENT || e == ENOTDIR ? JOB_PERMANENT : JOB_TRANSIENT;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(out->error, sizeof out->error, "the stored file is not a regular file");
        return JOB_PERMANENT;
    }
    if (objstore_put_file(store, key, path, location, sizeof location, out->error,
                          sizeof out->error) != 0)
        return JOB_TRANSIENT;
    out->report = json_pack("{s:s, s:s}", "status", "done", "location", location);
    return out->report ? JOB_OK : JOB_PERMANENT;
}

int main(int argc, char **argv)
{
    int hc = healthcheck_main(argc, argv, "PORT", "/livez");
    if (hc >= 0)
        return hc;
    char err[256];
    objstore *store =
        objstore_new_from_env(config_str("STORAGE_DIR", "var/storage"), err, sizeof err);
    if (!store) {
        log_init("worker-archive");
        log_error(NULL, "the archive is not usable: %s", err);
        return 2;
    }
    runner_opts o = {.name = "archive",
                     .svc = "worker-archive",
                     .report_processing = 0,
                     .handler = worker_archive_handle,
                     .ctx = store};
    int rc = runner_main(&o);
    objstore_free(store);
    return rc;
}
