/* evict: the archive side of svc-storage through common/objstore (blocking calls, run on the
 * threadpool): a local copy fetched back from the archive, an archived object deleted with
 * its document, and local copies of archived documents evicted after STORAGE_LOCAL_RETENTION. */
#ifndef STORAGE_EVICT_H
#define STORAGE_EVICT_H

#include <uv.h>

/* Opens the archive from the environment (ARCHIVE_URL, S3_*). 0, or -1 after logging why. */
int evict_setup(void);
void evict_teardown(void);
/* Downloads <org>/<id> into dest; cb(0) when it is there, cb(-1) otherwise. */
typedef void (*evict_fn)(int rc, void *ud);
void evict_fetch(uv_loop_t *loop, const char *org, const char *id, const char *dest, evict_fn cb,
                 void *ud);
/* Deletes <org>/<id> from the archive (errors are logged). */
void evict_delete_archived(uv_loop_t *loop, const char *org, const char *id);
/* With STORAGE_LOCAL_RETENTION set: unlinks local copies of documents archived "done" and
 * older than that (called by the sweeper). */
void evict_sweep(uv_loop_t *loop);

#endif
