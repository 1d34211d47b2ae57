/* passwords: argon2id on the libuv threadpool, in a workq lane of its own (a concurrency cap
 * and a bounded queue of waiting jobs, see passwords.h). */
#include "passwords.h"

#include <argon2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "metrics.h"
#include "workq.h"
#include "xalloc.h"

#define PW_T_COST      2
#define PW_M_COST      19456
#define PW_PARALLELISM 1
#define PW_SALT_LEN    16
#define PW_HASH_LEN    32
#define PW_ENCODED_MAX PASSWORDS_PHC_MAX

typedef struct pw_job {
    workq_job base; /* first: the lane's part */
    int verify;     /* 1: verify against phc, 0: hash */
    char *password;
    size_t len;
    char phc[PW_ENCODED_MAX]; /* verify: the stored hash; hash: the result */
    int result;
    double seconds; /* time the hash took on its thread */
    passwords_fn cb;
    void *ud;
} pw_job;

static struct {
    workq *q;
    char dummy[PW_ENCODED_MAX];
    metric *m_seconds;
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
    pw.q =
        workq_new(loop, concurrency, queue_max,
                  metrics_gauge("auth_password_hashes_running", "argon2 hashes in progress", NULL),
                  metrics_gauge("auth_password_hashes_waiting", "argon2 hashes queued", NULL),
                  metrics_counter("auth_password_queue_full_total",
                                  "requests refused because the hash queue was full", NULL));
    if (!pw.q)
        return -1;
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

static int pw_verify_now(const char *phc, const char *password, size_t len)
{
    int rc = argon2id_verify(phc, password, len);
    /* a malformed stored hash answers like a mismatch: never let anyone in */
    return rc == ARGON2_OK                                              ? 0
           : rc == ARGON2_VERIFY_MISMATCH || rc == ARGON2_DECODING_FAIL ? 1
                                                                        : -1;
}

int passwords_hash_now(const char *password, size_t len, char out[PASSWORDS_PHC_MAX])
{
    return pw_hash_now(password, len, out);
}

int passwords_verify_now(const char *phc, const char *password, size_t len)
{
    return pw_verify_now(phc, password, len);
}

static void pw_run(workq_job *w)
{
    pw_job *j = (pw_job *)w;
    double t0 = pw_clock();
    if (j->verify) {
        j->result = pw_verify_now(j->phc, j->password, j->len);
    } else {
        j->result = pw_hash_now(j->password, j->len, j->phc);
    }
    j->seconds = pw_clock() - t0;
}

static void pw_job_free(pw_job *j)
{
    explicit_bzero(j->password, j->len);
    free(j->password);
    explicit_bzero(j->phc, sizeof(j->phc));
    free(j);
}

static void pw_done(workq_job *w, int ran)
{
    pw_job *j = (pw_job *)w;
    if (!ran)
        j->result = -1;
    else
        metric_observe(pw.m_seconds, j->seconds);
    j->cb(j->result, j->verify || j->result != 0 ? NULL : j->phc, j->ud);
    pw_job_free(j);
}

static int pw_submit(int verify, const char *phc, const char *password, size_t len, passwords_fn cb,
                     void *ud)
{
    pw_job *j = xcalloc(1, sizeof(*j));
    j->password = xmalloc(len + 1);
    memcpy(j->password, password, len);
    j->password[len] = '\0';
    j->len = len;
    j->verify = verify;
    if (verify)
        snprintf(j->phc, sizeof(j->phc), "%s",
                 phc && strlen(phc) < PW_ENCODED_MAX ? phc : pw.dummy);
    j->cb = cb;
    j->ud = ud;
    if (workq_submit(pw.q, &j->base, pw_run, pw_done) != 0) {
        pw_job_free(j);
        return -1;
    }
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
    return pw.q ? workq_running(pw.q) : 0;
}

unsigned passwords_waiting(void)
{
    return pw.q ? workq_waiting(pw.q) : 0;
}

static void pw_drop(workq_job *w)
{
    pw_job_free((pw_job *)w);
}

void passwords_shutdown(void)
{
    /* At exit, after the server is gone: waiting jobs are dropped without their callbacks
     * (their requests no longer exist). */
    workq_free(pw.q, pw_drop);
    pw.q = NULL;
}
