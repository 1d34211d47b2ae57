/* evict: archive fetch, delete and local eviction (see evict.h). The object store's calls
 * block, so each runs in uv_queue_work; results come back on the loop. Built without
 * common/objstore (not yet in the tree), every archive call fails cleanly. */
#include "evict.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "storage.h"
#include "xalloc.h"

#if __has_include("objstore.h")
#include "objstore.h"
#define EVICT_HAVE_OBJSTORE 1
#else
#define EVICT_HAVE_OBJSTORE 0
#endif

typedef enum { EVICT_GET, EVICT_DELETE } evict_op;

typedef struct evict_work {
    uv_work_t w;
    evict_op op;
    char key[128];
    char dest[PATH_MAX];
    char err[256];
    int rc;
    evict_fn cb;
    void *ud;
} evict_work;

int evict_setup(void)
{
#if EVICT_HAVE_OBJSTORE
    char err[256];
    storage.obj = objstore_new_from_env(storage.dir, err, sizeof err);
    if (!storage.obj) {
        log_error(NULL, "archive: %s", err);
        return -1;
    }
#endif
    return 0;
}

void evict_teardown(void)
{
#if EVICT_HAVE_OBJSTORE
    objstore_free(storage.obj);
#endif
    storage.obj = NULL;
}

static void evict_run(uv_work_t *w)
{
    evict_work *e = w->data;
#if EVICT_HAVE_OBJSTORE
    if (e->op == EVICT_GET)
        e->rc = objstore_get_file(storage.obj, e->key, e->dest, e->err, sizeof e->err);
    else
        e->rc = objstore_delete(storage.obj, e->key, e->err, sizeof e->err);
#else
    snprintf(e->err, sizeof e->err, "no archive in this build");
    e->rc = -1;
#endif
}

static void evict_after(uv_work_t *w, int status)
{
    evict_work *e = w->data;
    int rc = status < 0 ? -1 : e->rc;
    if (rc != 0)
        log_warn(NULL, "archive: %s %s: %s", e->op == EVICT_GET ? "get" : "delete", e->key,
                 rc > 0 ? "no such object" : e->err);
    if (e->cb)
        e->cb(rc == 0 ? 0 : -1, e->ud);
    free(e);
}

static void evict_queue(uv_loop_t *loop, evict_op op, const char *org, const char *id,
                        const char *dest, evict_fn cb, void *ud)
{
    evict_work *e = xcalloc(1, sizeof *e);
    e->op = op;
    snprintf(e->key, sizeof e->key, "%s/%s", org, id);
    snprintf(e->dest, sizeof e->dest, "%s", dest ? dest : "");
    e->cb = cb;
    e->ud = ud;
    e->w.data = e;
    if (!storage.obj) {
        snprintf(e->err, sizeof e->err, "no archive configured");
        e->rc = -1;
        evict_after(&e->w, 0);
        return;
    }
    uv_queue_work(loop, &e->w, evict_run, evict_after);
}

void evict_fetch(uv_loop_t *loop, const char *org, const char *id, const char *dest, evict_fn cb,
                 void *ud)
{
    evict_queue(loop, EVICT_GET, org, id, dest, cb, ud);
}

void evict_delete_archived(uv_loop_t *loop, const char *org, const char *id)
{
    evict_queue(loop, EVICT_DELETE, org, id, NULL, NULL, NULL);
}

void evict_sweep(uv_loop_t *loop)
{
    (void)loop; /* local eviction: see the report (needs common/objstore) */
}
