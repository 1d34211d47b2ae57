/* es256: ES256 signing and access-token verification of svc-auth on a workq lane, with the
 * verified-token cache and shared verifications of one token (see es256.h).
 *
 * Threads: a job's run only reads auth.keys (fixed after start-up; crypto.c warms each key's
 * tables at load so that signing and verifying with a shared key only read it) and works on
 * objects of its own (the claims given to es256_sign, the token copy of a verification). */
#include "es256.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "crypto.h"
#include "metrics.h"
#include "workq.h"
#include "xalloc.h"

#define ES256_NOT_RUN (-1) /* the status of a check that never ran (lane full, shutdown) */

typedef struct es256_sign_job {
    workq_job base; /* first: the lane's part */
    const char *typ;
    json_t *claims;
    char *token;
    es256_signed_fn cb;
    void *ud;
} es256_sign_job;

typedef struct es256_call {
    es256_verified_fn cb;
    void *ud;
} es256_call;

/* One signature check in flight, shared by every request presenting the token meanwhile
 * (they wait in auth.token_cache: ttl_cache_join). */
typedef struct es256_flight {
    workq_job base;  /* first: the lane's part */
    uint8_t key[32]; /* SHA-256 of the token */
    char *token;
    size_t len;
    jwt_expect ex;
    jwt_err err;
    json_t *claims;
} es256_flight;

static struct {
    workq *q;
    metric *m_hit, *m_verify, *m_shared;
} es;

int es256_init(uv_loop_t *loop, unsigned concurrency, unsigned queue_max)
{
    memset(&es, 0, sizeof(es));
    es.q = workq_new(
        loop, concurrency, queue_max,
        metrics_gauge("auth_es256_jobs_running", "ES256 signatures and checks running", NULL),
        metrics_gauge("auth_es256_jobs_waiting", "ES256 signatures and checks queued", NULL),
        metrics_counter("auth_es256_queue_full_total",
                        "requests refused because the ES256 queue was full", NULL));
    es.m_hit = metrics_counter("auth_token_cache_hits_total",
                               "access tokens found in the verified-token cache", NULL);
    es.m_verify = metrics_counter("auth_token_verifications_total",
                                  "ES256 signature checks of access tokens", NULL);
    es.m_shared =
        metrics_counter("auth_token_verifications_shared_total",
                        "requests that waited for a check of the same token in flight", NULL);
    return es.q ? 0 : -1;
}

/* ---- signing ---- */
static void es256_sign_job_free(es256_sign_job *j)
{
    json_decref(j->claims);
    free(j->token);
    free(j);
}

static void es256_sign_run(workq_job *w)
{
    es256_sign_job *j = (es256_sign_job *)w;
    j->token = jwt_sign(auth.keys, j->typ, j->claims);
}

static void es256_sign_done(workq_job *w, int ran)
{
    es256_sign_job *j = (es256_sign_job *)w;
    char *token = ran ? j->token : NULL;
    if (!ran)
        free(j->token);
    j->token = NULL;
    j->cb(token, j->ud);
    es256_sign_job_free(j);
}

int es256_reserve(void)
{
    return workq_reserve(es.q);
}

void es256_release(void)
{
    workq_release(es.q);
}

int es256_sign(const char *typ, json_t *claims, int reserved, es256_signed_fn cb, void *ud)
{
    if (!claims) {
        if (reserved)
            workq_release(es.q);
        return -1;
    }
    es256_sign_job *j = xcalloc(1, sizeof(*j));
    j->typ = typ;
    j->claims = claims;
    j->cb = cb;
    j->ud = ud;
    if (reserved) {
        workq_submit_reserved(es.q, &j->base, es256_sign_run, es256_sign_done);
        return 0;
    }
    if (workq_submit(es.q, &j->base, es256_sign_run, es256_sign_done) != 0) {
        es256_sign_job_free(j);
        return -1;
    }
    return 0;
}

/* ---- verification ---- */
static void es256_flight_free(es256_flight *f)
{
    json_decref(f->claims);
    free(f->token);
    free(f);
}

static void es256_verify_run(workq_job *w)
{
    es256_flight *f = (es256_flight *)w;
    f->err = jwt_verify(auth.keys, f->token, f->len, &f->ex, &f->claims);
}

static void es256_verify_done(workq_job *w, int ran)
{
    es256_flight *f = (es256_flight *)w;
    int ok = ran && f->err == JWT_OK;
    uint64_t until = 0;
    if (ok) {
        /* kept until the token expires: its exp (wall clock) as a time on the cache's clock */
        int64_t left = json_integer_value(json_object_get(f->claims, "exp")) + AUTH_LEEWAY_S -
                       (int64_t)time(NULL);
        until = clock_mono_ms() + (uint64_t)(left > 0 ? left : 0) * 1000u;
    }
    ttl_cache_done(auth.token_cache, f->key, ran ? (int)f->err : ES256_NOT_RUN,
                   ok ? f->claims : NULL, until);
    es256_flight_free(f);
}

static void es256_call_answer(int status, json_t *claims, void *ud)
{
    es256_call call = *(es256_call *)ud;
    free(ud);
    int ran = status != ES256_NOT_RUN;
    call.cb(ran, ran ? (jwt_err)status : JWT_OK, claims, call.ud);
}

static void es256_expect(jwt_expect *ex)
{
    memset(ex, 0, sizeof(*ex));
    ex->typ = AUTH_TOKEN_TYP;
    ex->iss = auth.issuer;
    ex->aud = auth.audience;
    ex->now = auth_now_s();
    ex->leeway = AUTH_LEEWAY_S;
}

int es256_verify_access(const char *token, size_t len, es256_verified_fn cb, void *ud)
{
    uint8_t key[32];
    crypto_sha256(token, len, key);
    jwt_expect ex;
    es256_expect(&ex);
    json_t *claims = ttl_cache_get(auth.token_cache, key, clock_mono_ms());
    if (claims) {
        metric_inc(es.m_hit);
        jwt_err err = jwt_check_time(claims, &ex);
        cb(1, err, err == JWT_OK ? claims : NULL, ud);
        return 0;
    }
    /* the cheap checks first: a malformed, foreign or expired token never takes a place */
    jwt_err err = jwt_decode(auth.keys, token, len, &ex, NULL);
    if (err != JWT_OK) {
        cb(1, err, NULL, ud);
        return 0;
    }
    es256_call *call = xcalloc(1, sizeof(*call));
    call->cb = cb;
    call->ud = ud;
    if (!ttl_cache_join(auth.token_cache, key, es256_call_answer, call)) {
        metric_inc(es.m_shared); /* the same token is being checked: wait for that answer */
        return 0;
    }
    es256_flight *f = xcalloc(1, sizeof(*f));
    char *copy = xmalloc(len + 1);
    memcpy(copy, token, len);
    copy[len] = '\0';
    memcpy(f->key, key, 32);
    f->token = copy;
    f->len = len;
    f->ex = ex;
    if (workq_submit(es.q, &f->base, es256_verify_run, es256_verify_done) != 0) {
        es256_flight_free(f); /* lane full: every waiter (this caller alone) hears so */
        ttl_cache_done(auth.token_cache, key, ES256_NOT_RUN, NULL, 0);
        return 0;
    }
    metric_inc(es.m_verify);
    return 0;
}

unsigned es256_running(void)
{
    return es.q ? workq_running(es.q) : 0;
}

unsigned es256_waiting(void)
{
    return es.q ? workq_waiting(es.q) : 0;
}

static void es256_drop(workq_job *w)
{
    /* jobs are either signatures or verifications: tell them apart by their run function */
    if (w->run == es256_sign_run) {
        es256_sign_job_free((es256_sign_job *)w);
    } else {
        es256_flight_free((es256_flight *)w); /* its waiters go with auth.token_cache */
    }
}

void es256_shutdown(void)
{
    workq_free(es.q, es256_drop);
    es.q = NULL;
}
