/* objstore_driver: common/objstore from the command line, for tests/integration/test_objstore.py.
 *   objstore_driver put KEY PATH     prints the location
 *   objstore_driver get KEY DEST
 *   objstore_driver delete KEY
 *   objstore_driver parallel N PATH  N threads at once on one store, each: put PATH as
 *                                    par/<i>, get it back, compare, delete, get (no such key)
 * Configuration from the environment (ARCHIVE_URL, S3_*, STORAGE_DIR). Exit status: 0 done,
 * 1 error (the message on stderr), 3 no such key (get), 2 usage or configuration. */
#include "objstore.h"

#include "xalloc.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DRIVER_MAX_THREADS 32

typedef struct driver_job {
    objstore *s;
    const char *path;
    int i;
    char err[512];
} driver_job;

/* 1 when the two files hold the same bytes. */
static int driver_same(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = getc(fa), cb = getc(fb);
        if (ca != cb)
            same = 0;
        if (ca == EOF || cb == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

static void *driver_worker(void *arg)
{
    driver_job *j = arg;
    char key[64], back[4096], loc[1024], e[512] = "";
    snprintf(key, sizeof key, "par/%d", j->i);
    snprintf(back, sizeof back, "%s.back-%d", j->path, j->i);
    if (objstore_put_file(j->s, key, j->path, loc, sizeof loc, e, sizeof e) != 0)
        snprintf(j->err, sizeof j->err, "put %s: %s", key, e);
    else if (objstore_get_file(j->s, key, back, e, sizeof e) != 0)
        snprintf(j->err, sizeof j->err, "get %s: %s", key, e);
    else if (!driver_same(j->path, back))
        snprintf(j->err, sizeof j->err, "%s came back different", key);
    else if (objstore_delete(j->s, key, e, sizeof e) != 0)
        snprintf(j->err, sizeof j->err, "delete %s: %s", key, e);
    else if (objstore_get_file(j->s, key, back, e, sizeof e) != 1)
        snprintf(j->err, sizeof j->err, "%s still there after delete", key);
    unlink(back);
    return NULL;
}

static int driver_parallel(objstore *s, int n, const char *path)
{
    pthread_t t[DRIVER_MAX_THREADS];
    driver_job *jobs = xcalloc((size_t)n, sizeof *jobs);
    for (int i = 0; i < n; i++) {
        jobs[i] = (driver_job){.s = s, .path = path, .i = i};
        pthread_create(&t[i], NULL, driver_worker, &jobs[i]);
    }
    int failed = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        if (jobs[i].err[0]) {
            fprintf(stderr, "error: %s\n", jobs[i].err);
            failed++;
        }
    }
    free(jobs);
    if (!failed)
        printf("%d threads ok\n", n);
    return failed ? 1 : 0;
}

static int driver_usage(const char *argv0)
{
    fprintf(stderr, "usage: %s put KEY PATH | get KEY DEST | delete KEY | parallel N PATH\n",
            argv0);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return driver_usage(argv[0]);
    signal(SIGPIPE, SIG_IGN);
    char err[512] = "";
    objstore *s = objstore_new_from_env(getenv("STORAGE_DIR"), err, sizeof err);
    if (!s) {
        fprintf(stderr, "config: %s\n", err);
        return 2;
    }
    const char *op = argv[1], *key = argv[2];
    int rc;
    if (strcmp(op, "put") == 0 && argc == 4) {
        char loc[1024];
        rc = objstore_put_file(s, key, argv[3], loc, sizeof loc, err, sizeof err);
        if (rc == 0)
            printf("%s\n", loc);
    } else if (strcmp(op, "get") == 0 && argc == 4) {
        rc = objstore_get_file(s, key, argv[3], err, sizeof err);
    } else if (strcmp(op, "delete") == 0 && argc == 3) {
        rc = objstore_delete(s, key, err, sizeof err);
    } else if (strcmp(op, "parallel") == 0 && argc == 4 && atoi(argv[2]) > 0 &&
               atoi(argv[2]) <= DRIVER_MAX_THREADS) {
        rc = driver_parallel(s, atoi(argv[2]), argv[3]);
        objstore_free(s);
        return rc;
    } else {
        objstore_free(s);
        return driver_usage(argv[0]);
    }
    objstore_free(s);
    if (rc == 1) {
        fprintf(stderr, "no such key\n");
        return 3;
    }
    if (rc != 0) {
        fprintf(stderr, "error: %s\n", err);
        return 1;
    }
    return 0;
}
