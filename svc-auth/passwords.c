/* passwords: argon2id on the libuv threadpool with a concurrency cap and a bounded queue of
 * waiting jobs (see passwords.h). */
#include "passwords.h"

#include <argon2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "metrics.h"

#define PW_T_COST 2
#define PW_M_COST 19456
#define PW_PARALLELISM 1
#define PW_SALT_LEN 16
#define PW_HASH_LEN 32
#define PW_ENCODED_MAX 128
#define PW_NICE 19

typedef struct pw_job {
    uv_work_t work;
    int verify;                 /* 1: verify against phc, 0: hash */
    char *password;
    size_t len;
    char phc[PW_ENCODED_MAX];   /* verify: the stored hash; hash: the result */
    int result;
    double seconds;             /* time the hash took on its thread */
    passwords_fn cb;
    void *ud;
    struct pw_job *next;
} pw_job;

static struct {
    uv_loop_t *loop;
    unsigned concurrency, queue_max, running, waiting;
    pw_job *head, *tail;        /* waiting jobs, FIFO */
    char dummy[PW_ENCODED_MAX];
    metric *m_running, *m_waiting, *m_rejected, *m_seconds;
} pw;

static int pw_hash_now(const char *password, size_t len, char *out)
{
    uint8_t salt[PW_SALT_LEN];
    if (crypto_random(salt, sizeof(salt)) != 0)
        return -1;
    int rc = argon2id_hash_encoded(PW_T_COST, PW_M_COST, PW_PARALLELISM, password, len, salt,
                                   sizeof(salt), PW_HASH_LEN, out, PW_ENCODED_MAX);
    return rc == ARGON2_OK ? 0 : -1;
}

int passwords_init(uv_loop_t *loop, unsigned concurrency, unsigned queue_max)
{
    memset(&pw, 0, sizeof(pw));
    pw.loop = loop;
    pw.concurrency = concurrency ? concurrency : 1;
    pw.queue_max = queue_max;
    pw.m_running = metrics_gauge("auth_password_hashes_running", "argon2 hashes in progress", NULL);
    pw.m_waiting = metrics_gauge("auth_password_hashes_waiting", "argon2 hashes queued", NULL);
    pw.m_rejected = metrics_counter("auth_password_queue_full_total",
                                    "requests refused because the hash queue was full", NULL);
    pw.m_seconds = metrics_histogram("auth_password_hash_seconds",
                                     "time of one argon2id hash or verification", NULL);
    uint8_t rnd[24];
    char pass[64];
    if (crypto_random(rnd, sizeof(rnd)) != 0)
        return -1;
    crypto_hex(rnd, sizeof(rnd), pass);
    return pw_hash_now(pass, strlen(pass), pw.dummy);
}

static double pw_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A threadpool thread that hashes runs at the lowest priority (Linux: nice is per thread),
 * so under a login storm the event loop keeps its core and /auth/me stays fast. */
static __thread int pw_thread_niced;

static void pw_work(uv_work_t *w)
{
    pw_job *j = w->data;
    if (!pw_thread_niced) {
        pw_thread_niced = 1;
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), PW_NICE);
    }
    double t0 = pw_clock();
    if (j->verify) {
        int rc = argon2id_verify(j->phc, j->password, j->len);
        j->result = rc == ARGON2_OK ? 0 : rc == ARGON2_VERIFY_MISMATCH ? 1 : -1;
        /* a malformed stored hash answers like a mismatch: never let anyone in */
        if (j->result < 0 && rc == ARGON2_DECODING_FAIL)
            j->result = 1;
    } else {
        j->result = pw_hash_now(j->password, j->len, j->phc);
    }
    j->seconds = pw_clock() - t0;
}

static void pw_start_next(void);

static void pw_after(uv_work_t *w, int status)
{
    pw_job *j = w->data;
    pw.running--;
    metric_set(pw.m_running, pw.running);
    if (status != 0)
        j->result = -1;
    else
        metric_observe(pw.m_seconds, j->seconds);
    explicit_bzero(j->password, j->len);
    free(j->password);
    j->cb(j->result, j->verify || j->result != 0 ? NULL : j->phc, j->ud);
    explicit_bzero(j->phc, sizeof(j->phc));
    free(j);
    pw_start_next();
}

static void pw_start_next(void)
{
    while (pw.running < pw.concurrency && pw.head) {
        pw_job *j = pw.head;
        pw.head = j->next;
        if (!pw.head)
            pw.tail = NULL;
        pw.waiting--;
        pw.running++;
        j->work.data = j;
        if (uv_queue_work(pw.loop, &j->work, pw_work, pw_after) != 0) {
            pw.running--;
            free(j->password);
            j->cb(-1, NULL, j->ud);
            free(j);
        }
    }
    metric_set(pw.m_running, pw.running);
    metric_set(pw.m_waiting, pw.waiting);
}

static int pw_submit(int verify, const char *phc, const char *password, size_t len,
                     passwords_fn cb, void *ud)
{
    if (pw.running >= pw.concurrency && pw.waiting >= pw.queue_max) {
        metric_inc(pw.m_rejected);
        return -1;
    }
    pw_job *j = calloc(1, sizeof(*j));
    if (!j)
        return -1;
    j->password = malloc(len + 1);
    if (!j->password) {
        free(j);
        return -1;
    }
    memcpy(j->password, password, len);
    j->password[len] = '\0';
    j->len = len;
    j->verify = verify;
    if (verify)
        snprintf(j->phc, sizeof(j->phc), "%s", phc && strlen(phc) < PW_ENCODED_MAX ? phc : pw.dummy);
    j->cb = cb;
    j->ud = ud;
    if (pw.tail)
        pw.tail->next = j;
    else
        pw.head = j;
    pw.tail = j;
    pw.waiting++;
    pw_start_next();
    return 0;
}

int passwords_hash(const char *password, size_t len, passwords_fn cb, void *ud)
{
    return pw_submit(0, NULL, password, len, cb, ud);
}

int passwords_verify(const char *phc, const char *password, size_t len, passwords_fn cb, void *ud)
{
    if (!phc)
        phc = pw.dummy;
    return pw_submit(1, phc, password, len, cb, ud);
}

unsigned passwords_running(void)
{
    return pw.running;
}

unsigned passwords_waiting(void)
{
    return pw.waiting;
}

void passwords_shutdown(void)
{
    /* At exit, after the server is gone: waiting jobs are dropped without their callbacks
     * (their requests no longer exist); running ones finish on their threads. */
    while (pw.head) {
        pw_job *j = pw.head;
        pw.head = j->next;
        pw.waiting--;
        explicit_bzero(j->password, j->len);
        free(j->password);
        free(j);
    }
    pw.tail = NULL;
}
