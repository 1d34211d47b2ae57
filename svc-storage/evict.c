/* evict: archive fetch, delete and local eviction (see evict.h). The object store's calls
 * block, so each runs in uv_queue_work; results come back on the loop. A fetched copy is
 * downloaded to a temporary name of its own and renamed into place, so two fetches of one
 * document never write the same file. Eviction marks the rows (local_evicted) in one UPDATE
 * that skips rows another instance holds, then unlinks their files. Built without
 * common/objstore (not yet in the tree), every archive call fails cleanly. */
#include "evict.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/stat.h>

#include "crypto.h"
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
    char dest[PATH_MAX], tmp[PATH_MAX], dir[PATH_MAX];
    char err[256];
    int rc;
    evict_fn cb;
    void *ud;
} evict_work;

static int evict_inflight;  /* work items queued or running */
static int evict_free_late; /* evict_teardown came while some were: the last one frees */

int evict_setup(void)
{
#if EVICT_HAVE_OBJSTORE
    char err[256];
    storage.obj = objstore_new_from_env(storage.dir, err, sizeof err);
    if (!storage.obj || evict_free_late) {
        log_error(NULL, "archive: %s", err);
        return -1;
    }
#endif
    return 0;
}

static void evict_free_store(void)
{
#if EVICT_HAVE_OBJSTORE
    objstore_free(storage.obj);
#endif
    storage.obj = NULL;
}

void evict_teardown(void)
{
    if (evict_inflight > 0)
        evict_free_late = 1; /* a thread still uses the store */
    else
        evict_free_store();
}

static void evict_run(uv_work_t *w)
{
    evict_work *e = w->data;
#if EVICT_HAVE_OBJSTORE
    if (e->op == EVICT_GET) {
        e->rc = objstore_get_file(storage.obj, e->key, e->tmp, e->err, sizeof e->err);
        if (e->rc == 0) {
            mkdir(e->dir, 0750); /* threadpool: blocking calls are fine here */
            if (rename(e->tmp, e->dest) != 0) {
                snprintf(e->err, sizeof e->err, "rename into place failed");
                unlink(e->tmp);
                e->rc = -1;
            }
        }
    } else
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

static void evict_done(uv_work_t *w, int status)
{
    evict_after(w, status);
    if (--evict_inflight == 0 && evict_free_late) {
        evict_free_late = 0;
        evict_free_store();
    }
}

static void evict_queue(uv_loop_t *loop, evict_op op, const char *org, const char *id,
                        const char *dest, evict_fn cb, void *ud)
{
    evict_work *e = xcalloc(1, sizeof *e);
    e->op = op;
    snprintf(e->key, sizeof e->key, "%s/%s", org, id);
    snprintf(e->dest, sizeof e->dest, "%s", dest ? dest : "");
    char name[24];
    crypto_random_token(name, 12);
    snprintf(e->tmp, sizeof e->tmp, "%s/tmp/fetch-%s", storage.dir, name);
    storage_file_dir(id, e->dir, sizeof e->dir);
    e->cb = cb;
    e->ud = ud;
    e->w.data = e;
    if (!storage.obj || evict_free_late) {
        snprintf(e->err, sizeof e->err, "no archive configured");
        e->rc = -1;
        evict_after(&e->w, 0);
        return;
    }
    evict_inflight++;
    uv_queue_work(loop, &e->w, evict_run, evict_done);
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

typedef struct evict_unlink {
    uv_fs_t fs;
} evict_unlink;

static void evict_unlinked(uv_fs_t *fs)
{
    if (fs->result < 0 && fs->result != UV_ENOENT)
        log_warn(NULL, "evict: unlink %s: %s", fs->path, uv_strerror((int)fs->result));
    uv_fs_req_cleanup(fs);
    free(fs->data);
}

static void evict_marked(pg_status st, PGresult *res, void *ud)
{
    uv_loop_t *loop = ud;
    if (st != PG_OK)
        return;
    for (int r = 0; r < PQntuples(res); r++) {
        char path[PATH_MAX];
        storage_file_path(pg_get(res, r, "id"), path, sizeof path);
        evict_unlink *u = xcalloc(1, sizeof *u);
        u->fs.data = u;
        uv_fs_unlink(loop, &u->fs, path, evict_unlinked);
    }
    if (PQntuples(res) > 0)
        log_info(NULL, "evict: %d local copies of archived documents removed", PQntuples(res));
}

void evict_sweep(uv_loop_t *loop)
{
    if (storage.retention_ms <= 0 || !storage.obj || !storage.svc.pg)
        return;
    char ms[24];
    snprintf(ms, sizeof ms, "%ld", storage.retention_ms);
    const char *params[] = {ms};
    pg_query(storage.svc.pg,
             "UPDATE documents SET local_evicted = true WHERE id IN (SELECT id FROM documents "
             "WHERE archive_status = 'done' AND NOT local_evicted AND created_at < now() - "
             "$1::bigint * interval '1 millisecond' LIMIT 100 FOR UPDATE SKIP LOCKED) "
             "RETURNING id::text AS id",
             1, params, evict_marked, loop);
}
