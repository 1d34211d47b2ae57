/* ocr_bench: pages per second of worker-ocr's ocr_file with the model kept loaded (bench/ocr.sh).
 *   ocr_bench [-j threads] [-r rounds] [-w warmup.png] [-o prefix] FILE...
 * Each thread first reads the warm-up image (its engine is created then, outside the timing),
 * then all threads take jobs (rounds x FILEs, in order) from one shared counter until none is
 * left. Prints one line: threads, jobs, pages, seconds, pages/s, CPU seconds a page (the
 * process's user + system time over the timed part), mean confidence, failures.
 * -o: the text of each FILE (first round) written to <prefix><file's base name>.txt after
 * the timing. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "ocr.h"

static char **bench_files;
static int bench_nfiles, bench_jobs;
static const char *bench_warmup;
static char **bench_texts; /* the first round's, by file */
static atomic_int bench_next, bench_pages, bench_failed;
static _Atomic double bench_conf;
static pthread_barrier_t bench_start;

static double bench_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void *bench_thread(void *arg)
{
    (void)arg;
    ocr_opts o;
    ocr_opts_default(&o);
    ocr_result r;
    if (bench_warmup) {
        if (ocr_file(bench_warmup, NULL, &o, &r) != 0)
            fprintf(stderr, "warm-up: %s\n", r.error);
        ocr_result_free(&r);
    }
    pthread_barrier_wait(&bench_start);
    int job;
    while ((job = atomic_fetch_add(&bench_next, 1)) < bench_jobs) {
        const char *path = bench_files[job % bench_nfiles];
        if (ocr_file(path, NULL, &o, &r) != 0) {
            fprintf(stderr, "%s: %s\n", path, r.error);
            atomic_fetch_add(&bench_failed, 1);
            continue;
        }
        atomic_fetch_add(&bench_pages, r.pages);
        if (job < bench_nfiles) {
            bench_texts[job] = r.text;
            r.text = NULL;
        }
        double old = atomic_load(&bench_conf);
        while (!atomic_compare_exchange_weak(&bench_conf, &old, old + r.confidence * r.pages))
            ;
        ocr_result_free(&r);
    }
    ocr_thread_end();
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = 1, rounds = 1, c;
    const char *out = NULL;
    while ((c = getopt(argc, argv, "j:r:w:o:")) != -1) {
        switch (c) {
        case 'j': threads = atoi(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        case 'w': bench_warmup = optarg; break;
        case 'o': out = optarg; break;
        default:
            fprintf(stderr, "usage: ocr_bench [-j N] [-r N] [-w warm.png] FILE...\n");
            return 2;
        }
    }
    bench_files = argv + optind;
    bench_nfiles = argc - optind;
    if (bench_nfiles < 1 || threads < 1 || threads > 64 || rounds < 1)
        return 2;
    bench_jobs = bench_nfiles * rounds;
    bench_texts = calloc((size_t)bench_nfiles, sizeof *bench_texts);
    pthread_barrier_init(&bench_start, NULL, (unsigned)threads + 1);
    pthread_t *t = calloc((size_t)threads, sizeof *t);
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, bench_thread, NULL);
    pthread_barrier_wait(&bench_start);
    uint64_t t0 = clock_mono_ms();
    double cpu0 = bench_cpu();
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    double secs = (double)(clock_mono_ms() - t0) / 1000.0, cpu = bench_cpu() - cpu0;
    int pages = atomic_load(&bench_pages);
    printf("threads=%d jobs=%d pages=%d seconds=%.2f pages_per_s=%.3f cpu_s_per_page=%.2f "
           "mean_conf=%.1f failed=%d\n",
           threads, bench_jobs, pages, secs, pages / secs, pages ? cpu / pages : 0.0,
           pages ? atomic_load(&bench_conf) / pages : 0.0, atomic_load(&bench_failed));
    for (int i = 0; i < bench_nfiles; i++) {
        if (out && bench_texts[i]) {
            char path[4096];
            const char *base = strrchr(bench_files[i], '/');
            snprintf(path, sizeof path, "%s%s.txt", out, base ? base + 1 : bench_files[i]);
            FILE *f = fopen(path, "w");
            if (f) {
                fputs(bench_texts[i], f);
                fclose(f);
            }
        }
        free(bench_texts[i]);
    }
    free(bench_texts);
    free(t);
    return atomic_load(&bench_failed) ? 1 : 0;
}
