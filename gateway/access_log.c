/* access_log: the gateway's per-request JSON line (see access_log.h). */
#include "access_log.h"

#include <jansson.h>
#include <pthread.h>
#include <unistd.h>

#include "log.h"

/* This process's id, asked once (a system call per line otherwise); a forked child asks
 * again. */
static pid_t log_pid;
static pthread_once_t log_pid_once = PTHREAD_ONCE_INIT;

static void log_pid_forget(void)
{
    log_pid = 0;
}

static void log_pid_register(void)
{
    pthread_atfork(NULL, NULL, log_pid_forget);
}

static pid_t access_pid(void)
{
    if (!log_pid) {
        pthread_once(&log_pid_once, log_pid_register);
        log_pid = getpid();
    }
    return log_pid;
}

void gw_access_log(const gw_access *a)
{
    json_t *f = json_object();
    json_object_set_new(f, "client", json_string(a->client_ip));
    json_object_set_new(f, "method", json_string(a->method));
    json_object_set_new(f, "path", json_string(a->path));
    if (a->route)
        json_object_set_new(f, "route", json_string(a->route));
    json_object_set_new(f, "status", json_integer(a->status));
    json_object_set_new(f, "tls", json_boolean(a->tls));
    if (a->upstream) {
        json_object_set_new(f, "upstream", json_string(a->upstream));
        json_object_set_new(f, "tries", json_integer(a->tries));
    }
    if (a->upstream_ms >= 0)
        json_object_set_new(f, "upstream_ms", json_real(a->upstream_ms));
    json_object_set_new(f, "ms", json_real(a->total_ms));
    json_object_set_new(f, "bytes_in", json_integer(a->bytes_in));
    json_object_set_new(f, "bytes_out", json_integer(a->bytes_out));
    json_object_set_new(f, "worker", json_integer(access_pid()));
    log_access(a->request_id, f);
}
