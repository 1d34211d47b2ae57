/* access_log: the gateway's per-request JSON line (see access_log.h). */
#include "access_log.h"

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
    log_field f[13];
    size_t n = 0;
    f[n++] = (log_field){"client", LOG_FIELD_STR, a->client_ip, 0, 0};
    f[n++] = (log_field){"method", LOG_FIELD_STR, a->method, 0, 0};
    f[n++] = (log_field){"path", LOG_FIELD_STR, a->path, 0, 0};
    if (a->route)
        f[n++] = (log_field){"route", LOG_FIELD_STR, a->route, 0, 0};
    f[n++] = (log_field){"status", LOG_FIELD_INT, NULL, a->status, 0};
    f[n++] = (log_field){"tls", LOG_FIELD_BOOL, NULL, a->tls, 0};
    if (a->upstream) {
        f[n++] = (log_field){"upstream", LOG_FIELD_STR, a->upstream, 0, 0};
        f[n++] = (log_field){"tries", LOG_FIELD_INT, NULL, a->tries, 0};
    }
    if (a->upstream_us >= 0)
        f[n++] = (log_field){"upstream_ms", LOG_FIELD_MS, NULL, a->upstream_us, 0};
    f[n++] = (log_field){"ms", LOG_FIELD_MS, NULL, a->total_us, 0};
    f[n++] = (log_field){"bytes_in", LOG_FIELD_INT, NULL, a->bytes_in, 0};
    f[n++] = (log_field){"bytes_out", LOG_FIELD_INT, NULL, a->bytes_out, 0};
    f[n++] = (log_field){"worker", LOG_FIELD_INT, NULL, access_pid(), 0};
    log_access_fields(a->request_id, f, n);
}
