/* ocr_driver: worker-ocr's ocr_file on the command line, for tests/integration/test_ocr.py.
 *   ocr_driver [-p max_pages] [-t timeout_ms] [-d dpi] [-c content_type] [-l lang]
 *              [-s tessdata] [-e] [-j threads] FILE...
 * Each FILE in turn on one thread (so its engine is reused), one JSON line each:
 * {"file","rc","text","confidence","pages","error","ms","threads","worker"}; threads is the
 * number of threads the process has after the job (1: Tesseract's OpenMP started none). -e
 * ends the thread's engine (ocr_thread_end) after each file. -j N: N threads at once, each
 * doing every FILE (worker says which thread). */
#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "ocr.h"

static int driver_threads(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

typedef struct driver {
    ocr_opts o;
    const char *type;
    int end, nfiles, id;
    char **files;
} driver;

static pthread_mutex_t driver_out = PTHREAD_MUTEX_INITIALIZER;

static void *driver_run(void *arg)
{
    driver *d = arg;
    for (int i = 0; i < d->nfiles; i++) {
        ocr_result r;
        uint64_t t0 = clock_mono_ms();
        int rc = ocr_file(d->files[i], d->type, &d->o, &r);
        uint64_t ms = clock_mono_ms() - t0;
        json_t *j =
            json_pack("{s:s, s:i, s:s?, s:f, s:i, s:s, s:I, s:i, s:i}", "file", d->files[i], "rc",
                      rc, "text", r.text, "confidence", r.confidence, "pages", r.pages, "error",
                      r.error, "ms", (json_int_t)ms, "threads", driver_threads(), "worker", d->id);
        char *s = json_dumps(j, JSON_COMPACT);
        pthread_mutex_lock(&driver_out);
        printf("%s\n", s);
        fflush(stdout);
        pthread_mutex_unlock(&driver_out);
        free(s);
        json_decref(j);
        ocr_result_free(&r);
        if (d->end)
            ocr_thread_end();
    }
    ocr_thread_end();
    return NULL;
}

int main(int argc, char **argv)
{
    driver d = {0};
    ocr_opts_default(&d.o);
    int nthreads = 1, c;
    while ((c = getopt(argc, argv, "p:t:d:c:l:s:ej:")) != -1) {
        switch (c) {
        case 'p': d.o.max_pages = atoi(optarg); break;
        case 't': d.o.timeout_ms = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'd': d.o.dpi = atoi(optarg); break;
        case 'c': d.type = optarg; break;
        case 'l': d.o.lang = optarg; break;
        case 's': d.o.tessdata = optarg; break;
        case 'e': d.end = 1; break;
        case 'j': nthreads = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: ocr_driver [-p N] [-t MS] [-d DPI] [-c TYPE] [-j N] FILE...\n");
            return 2;
        }
    }
    d.files = argv + optind;
    d.nfiles = argc - optind;
    if (nthreads <= 1) {
        driver_run(&d);
        return 0;
    }
    pthread_t t[16];
    driver each[16];
    if (nthreads > 16)
        nthreads = 16;
    for (int i = 0; i < nthreads; i++) {
        each[i] = d;
        each[i].id = i;
        pthread_create(&t[i], NULL, driver_run, &each[i]);
    }
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    return 0;
}
