/* ocr_driver: worker-ocr's ocr_file on the command line, for tests/integration/test_ocr.py.
 *   ocr_driver [-p max_pages] [-t timeout_ms] [-d dpi] [-c content_type] [-l lang]
 *              [-s tessdata] [-e] FILE...
 * Each FILE in turn on this one thread (so its engine is reused), one JSON line each:
 * {"file","rc","text","confidence","pages","error","ms","threads"}; threads is the number of
 * threads the process has after the job (1: Tesseract's OpenMP started none). -e ends the
 * thread's engine (ocr_thread_end) after each file. */
#include <dirent.h>
#include <jansson.h>
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

int main(int argc, char **argv)
{
    ocr_opts o;
    ocr_opts_default(&o);
    const char *type = NULL;
    int end = 0, c;
    while ((c = getopt(argc, argv, "p:t:d:c:l:s:e")) != -1) {
        switch (c) {
        case 'p': o.max_pages = atoi(optarg); break;
        case 't': o.timeout_ms = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'd': o.dpi = atoi(optarg); break;
        case 'c': type = optarg; break;
        case 'l': o.lang = optarg; break;
        case 's': o.tessdata = optarg; break;
        case 'e': end = 1; break;
        default:
            fprintf(stderr, "usage: ocr_driver [-p N] [-t MS] [-d DPI] [-c TYPE] FILE...\n");
            return 2;
        }
    }
    for (int i = optind; i < argc; i++) {
        ocr_result r;
        uint64_t t0 = clock_mono_ms();
        int rc = ocr_file(argv[i], type, &o, &r);
        uint64_t ms = clock_mono_ms() - t0;
        json_t *j = json_pack("{s:s, s:i, s:s?, s:f, s:i, s:s, s:I, s:i}", "file", argv[i], "rc",
                              rc, "text", r.text, "confidence", r.confidence, "pages", r.pages,
                              "error", r.error, "ms", (json_int_t)ms, "threads", driver_threads());
        char *s = json_dumps(j, JSON_COMPACT);
        printf("%s\n", s);
        fflush(stdout);
        free(s);
        json_decref(j);
        ocr_result_free(&r);
        if (end)
            ocr_thread_end();
    }
    ocr_thread_end();
    return 0;
}
