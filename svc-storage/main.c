/* svc-storage: documents: uploads streamed to the shared volume, their OCR and archive jobs
 * on Redis streams, list/search/download/delete, and the workers' /internal/ reports.
 * main wires the configuration, the routes and the start-up; see upload.c, documents.c,
 * internal.c, jobs.c, evict.c.
 *
 * Environment (besides service.h's HOST, PORT, PG* / DATABASE_URL, REDIS_*, DRAIN_TIMEOUT,
 * LOG_LEVEL):
 *   AUTH_URL                  svc-auth instances, "host:port[,host:port...]" (required)
 *   STORAGE_DIR               the volume shared with the workers: var/storage
 *   STORAGE_MAX_UPLOAD        largest file: 50M
 *   STORAGE_SWEEP_INTERVAL    the job sweeper's period: 10s
 *   STORAGE_JOB_GRACE         a job unseen this long is checked and re-enqueued if gone: 60s
 *   STORAGE_LOCAL_RETENTION   local copies of archived documents are evicted after: 0 (never)
 *   STORAGE_MIGRATIONS        the migrations folder (default: next to the binary, else installed)
 *   ARCHIVE_URL, S3_*         the archive (common/objstore) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "healthcheck.h"
#include "documents.h"
#include "evict.h"
#include "internal.h"
#include "jobs.h"
#include "log.h"
#include "storage.h"
#include "upload.h"

#ifndef STORAGE_MIGRATIONS_DIR
#define STORAGE_MIGRATIONS_DIR "svc-storage/migrations"
#endif

static void storage_teardown(void)
{
    service_auth_teardown(&storage.svc);
    evict_teardown();
}

static void storage_stop(service *s)
{
    (void)s;
    jobs_stop();
    storage_teardown();
}

/* mkdir -p path. 0, or -1 after logging why. */
static int storage_mkdirs(const char *path)
{
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0750) != 0 && errno != EEXIST) {
            log_error(NULL, "STORAGE_DIR: cannot create %s: %s", p, strerror(errno));
            return -1;
        }
        if (c == '\0')
            return 0;
        *s = c;
    }
}

/* STORAGE_DIR and its tmp/ and files/ (start-up, before the loop runs). */
static int storage_make_dirs(void)
{
    static const char *const subs[] = {"/tmp", "/files"};
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s%s", storage.dir, subs[i]);
        if (storage_mkdirs(path) != 0)
            return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int hc = healthcheck_main(argc, argv, "PORT", "/livez");
    if (hc >= 0)
        return hc;
    if (service_init(&storage.svc, "storage") != 0)
        return 1;
    storage.dir = config_str("STORAGE_DIR", "var/storage");
    storage.max_upload = config_size("STORAGE_MAX_UPLOAD", 50u * 1024 * 1024);
    storage.sweep_ms = config_ms("STORAGE_SWEEP_INTERVAL", 10000);
    storage.job_grace_ms = config_ms("STORAGE_JOB_GRACE", 60000);
    storage.retention_ms = config_ms("STORAGE_LOCAL_RETENTION", 0);
    if (storage.sweep_ms < 100 || storage.job_grace_ms < 0 || storage.retention_ms < 0 ||
        storage.max_upload < 1) {
        log_error(NULL, "STORAGE_SWEEP_INTERVAL must be at least 100ms, STORAGE_MAX_UPLOAD "
                        "positive");
        return 2;
    }
    if (storage_make_dirs() != 0)
        return 1;
    const char *auth_url = config_str("AUTH_URL", NULL);
    if (!auth_url || service_use_auth(&storage.svc, auth_url, 1) != 0) {
        log_error(NULL, "AUTH_URL must list the svc-auth instances as host:port[,host:port]");
        storage_teardown();
        return 2;
    }
    if (evict_setup() != 0 ||
        service_use_pg(&storage.svc,
                       service_migrations("STORAGE_MIGRATIONS", STORAGE_MIGRATIONS_DIR)) != 0 ||
        service_use_redis(&storage.svc) != 0) {
        storage_teardown();
        return 1;
    }
    upload_routes(storage.svc.router);
    documents_routes(storage.svc.router);
    internal_routes(storage.svc.router);
    jobs_start(storage.svc.loop);
    storage.svc.on_stop = storage_stop;
    return service_run(&storage.svc);
}
