/* workq: bounded lanes of threadpool work with a concurrency cap, a FIFO of waiting jobs and
 * reservations (see workq.h). */
#include "workq.h"
#include "queue.h"
#include "xalloc.h"

#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define WORKQ_NICE 19

struct workq {
    uv_loop_t *loop;
    unsigned concurrency, queue_max;
    unsigned running, waiting, reserved;
    workq_job *head, *tail; /* waiting jobs, FIFO */
    metric *m_running, *m_waiting, *m_rejected;
};

workq *workq_new(uv_loop_t *loop, unsigned concurrency, unsigned queue_max, metric *running,
                 metric *waiting, metric *rejected)
{
    workq *q = xcalloc(1, sizeof(*q));
    q->loop = loop;
    q->concurrency = concurrency ? concurrency : 1;
    q->queue_max = queue_max;
    q->m_running = running;
    q->m_waiting = waiting;
    q->m_rejected = rejected;
    return q;
}

static void workq_gauges(workq *q)
{
    if (q->m_running)
        metric_set(q->m_running, q->running);
    if (q->m_waiting)
        metric_set(q->m_waiting, q->waiting);
}

static __thread int workq_thread_niced;

static void workq_work(uv_work_t *w)
{
    workq_job *j = w->data;
    if (!workq_thread_niced) {
        workq_thread_niced = 1;
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), WORKQ_NICE);
    }
    j->run(j);
}

static void workq_start_next(workq *q);

static void workq_after(uv_work_t *w, int status)
{
    workq_job *j = w->data;
    workq *q = j->q;
    q->running--;
    j->done(j, status == 0);
    workq_start_next(q);
}

static void workq_start_next(workq *q)
{
    while (q->running < q->concurrency && q->head) {
        workq_job *j;
        SQ_POP(q->head, q->tail, j, next);
        q->waiting--;
        q->running++;
        j->work.data = j;
        if (uv_queue_work(q->loop, &j->work, workq_work, workq_after) != 0) {
            q->running--;
            j->done(j, 0);
        }
    }
    workq_gauges(q);
}

/* Places taken: running, waiting and held for later. */
static int workq_full(const workq *q)
{
    return q->running + q->waiting + q->reserved >= q->concurrency + q->queue_max;
}

static void workq_enqueue(workq *q, workq_job *j, workq_run_fn run, workq_done_fn done)
{
    j->q = q;
    j->run = run;
    j->done = done;
    SQ_PUSH(q->head, q->tail, j, next);
    q->waiting++;
    workq_start_next(q);
}

int workq_submit(workq *q, workq_job *j, workq_run_fn run, workq_done_fn done)
{
    if (workq_full(q)) {
        if (q->m_rejected)
            metric_inc(q->m_rejected);
        return -1;
    }
    workq_enqueue(q, j, run, done);
    return 0;
}

int workq_reserve(workq *q)
{
    if (workq_full(q)) {
        if (q->m_rejected)
            metric_inc(q->m_rejected);
        return -1;
    }
    q->reserved++;
    return 0;
}

void workq_release(workq *q)
{
    if (q->reserved > 0)
        q->reserved--;
}

void workq_submit_reserved(workq *q, workq_job *j, workq_run_fn run, workq_done_fn done)
{
    workq_release(q);
    workq_enqueue(q, j, run, done);
}

unsigned workq_running(const workq *q)
{
    return q->running;
}

unsigned workq_waiting(const workq *q)
{
    return q->waiting;
}

void workq_free(workq *q, void (*drop)(workq_job *j))
{
    if (!q)
        return;
    while (q->head) {
        workq_job *j;
        SQ_POP(q->head, q->tail, j, next);
        q->waiting--;
        if (drop)
            drop(j);
    }
    free(q);
}
