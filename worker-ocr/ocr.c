/* ocr: Tesseract over the pages of a stored document (see ocr.h for what is decided where).
 * A job: the type from the magic bytes, the pages one by one (a Leptonica PIX each: read from
 * the file, or rendered by pdftoppm for a PDF), each page checked against the size limits from
 * its header before it is decoded, then recognised by this thread's TessBaseAPI with the
 * job's deadline in an ETEXT_DESC monitor. Errors are written once, by ocr_fail. */
#include "ocr.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <leptonica/allheaders.h>
#include <tesseract/capi.h>

#include "buf.h"
#include "clock.h"
#include "xalloc.h"

/* libgomp's (OpenMP 3.0 API); see ocr.h. */
void omp_set_max_active_levels(int max_levels);

#define OCR_MAX_SIDE    20000
#define OCR_MAX_PIXELS  100000000LL
#define OCR_TOOL_MEMORY (2048ULL << 20) /* address space of pdfinfo / pdftoppm */
#define OCR_TOOL_OUTPUT (1 << 20)       /* what is read of pdfinfo's output */
#define OCR_MAGIC_SCAN  1024            /* "%PDF-" may follow some junk, as readers accept */

extern char **environ;

typedef enum ocr_type { OCR_NONE, OCR_PNG, OCR_JPEG, OCR_TIFF, OCR_PDF } ocr_type;

static const struct {
    ocr_type type;
    const char *magic;
    size_t len;
} ocr_magics[] = {
    {OCR_PNG, "\x89PNG\r\n\x1a\n", 8},
    {OCR_JPEG, "\xff\xd8\xff", 3},
    {OCR_TIFF, "II*\0", 4},
    {OCR_TIFF, "MM\0*", 4},
    {OCR_TIFF, "II+\0", 4}, /* BigTIFF */
    {OCR_TIFF, "MM\0+", 4},
};

static const char *const ocr_type_names[] = {"unknown", "PNG", "JPEG", "TIFF", "PDF"};

/* This thread's engine, and what it was initialised with. */
typedef struct ocr_engine {
    TessBaseAPI *api;
    char *lang;
    char *tessdata;
} ocr_engine;

/* One call of ocr_file. */
typedef struct ocr_job {
    const char *path;
    const ocr_opts *o;
    ocr_result *r;
    uint64_t start, deadline;
    TessBaseAPI *api;
    ETEXT_DESC *monitor;
    buf text;
    double conf_sum, conf_weight;
    char tmpdir[PATH_MAX];
} ocr_job;

static pthread_once_t ocr_once = PTHREAD_ONCE_INIT;
static pthread_key_t ocr_key;

void ocr_opts_default(ocr_opts *o)
{
    *o = (ocr_opts){.lang = "eng",
                    .tessdata = NULL,
                    .psm = 6,
                    .dpi = 300,
                    .max_pages = 50,
                    .timeout_ms = 300000};
}

void ocr_result_free(ocr_result *r)
{
    free(r->text);
    r->text = NULL;
}

static int ocr_fail(ocr_job *j, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int ocr_fail(ocr_job *j, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->r->error, sizeof j->r->error, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- the per-thread engine ---- */

static void ocr_engine_free(void *p)
{
    ocr_engine *e = p;
    if (!e)
        return;
    if (e->api) {
        TessBaseAPIEnd(e->api);
        TessBaseAPIDelete(e->api);
    }
    free(e->lang);
    free(e->tessdata);
    free(e);
}

static void ocr_init_once(void)
{
    setMsgSeverity(L_SEVERITY_NONE);
    pthread_key_create(&ocr_key, ocr_engine_free);
    /* debug_file is one global of libtesseract (tprintf's "Estimating resolution as ...",
     * "Empty page!!"): set once, before any engine runs, so no thread reads it as it changes. */
    TessBaseAPI *api = TessBaseAPICreate();
    TessBaseAPISetVariable(api, "debug_file", "/dev/null");
    TessBaseAPIDelete(api);
}

static int ocr_same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* This thread's TessBaseAPI for lang/tessdata, created or re-initialised as needed. */
static int ocr_engine_get(ocr_job *j)
{
    ocr_engine *e = pthread_getspecific(ocr_key);
    if (!e) {
        e = xcalloc(1, sizeof *e);
        pthread_setspecific(ocr_key, e);
        omp_set_max_active_levels(0);
    }
    if (e->api && ocr_same(e->lang, j->o->lang) && ocr_same(e->tessdata, j->o->tessdata)) {
        j->api = e->api;
        return 0;
    }
    if (e->api) {
        TessBaseAPIEnd(e->api);
        TessBaseAPIDelete(e->api);
    }
    free(e->lang);
    free(e->tessdata);
    e->lang = xstrdup(j->o->lang);
    e->tessdata = xstrdup(j->o->tessdata);
    e->api = TessBaseAPICreate();
    if (TessBaseAPIInit3(e->api, j->o->tessdata, j->o->lang) != 0) {
        TessBaseAPIDelete(e->api);
        e->api = NULL;
        return ocr_fail(j, -2, "tesseract cannot load language '%s' from %s", j->o->lang,
                        j->o->tessdata ? j->o->tessdata : "the default tessdata");
    }
    j->api = e->api;
    return 0;
}

void ocr_thread_end(void)
{
    pthread_once(&ocr_once, ocr_init_once);
    ocr_engine_free(pthread_getspecific(ocr_key));
    pthread_setspecific(ocr_key, NULL);
}

/* ---- one page ---- */

static int ocr_size_ok(ocr_job *j, int page, long long w, long long h)
{
    if (w <= 0 || h <= 0)
        return ocr_fail(j, -1, "page %d has no pixels (corrupt header)", page);
    if (w > OCR_MAX_SIDE || h > OCR_MAX_SIDE || w * h > OCR_MAX_PIXELS)
        return ocr_fail(j, -1,
                        "page %d is too large: %lldx%lld pixels (at most %d a side and %lld "
                        "megapixels)",
                        page, w, h, OCR_MAX_SIDE, OCR_MAX_PIXELS / 1000000);
    return 0;
}

static long long ocr_remaining(const ocr_job *j)
{
    return (long long)j->deadline - (long long)clock_mono_ms();
}

static int ocr_timed_out(ocr_job *j, const char *during)
{
    return ocr_fail(j, -1, "timed out after %u ms (%s)", j->o->timeout_ms, during);
}

/* pix as Tesseract reads it best: 1 or 8 bits, no colour map, transparency over white. */
static PIX *ocr_normalise(PIX *pix)
{
    l_int32 xres = pixGetXRes(pix), yres = pixGetYRes(pix);
    if (pixGetDepth(pix) == 32 && pixGetSpp(pix) == 4) {
        PIX *flat = pixAlphaBlendUniform(pix, 0xffffff00);
        pixDestroy(&pix);
        if (!flat)
            return NULL;
        pix = flat;
    }
    l_int32 d = pixGetDepth(pix);
    if ((d == 1 || d == 8) && !pixGetColormap(pix))
        return pix;
    PIX *grey = pixConvertTo8(pix, 0);
    pixDestroy(&pix);
    if (grey)
        pixSetResolution(grey, xres, yres);
    return grey;
}

static size_t ocr_visible_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80 && *s != ' ' && *s != '\n' && *s != '\t' &&
            *s != '\r' && *s != '\f')
            n++;
    return n;
}

/* Recognises pix (taken) as the next page; dpi 0: the image's own resolution. */
static int ocr_page(ocr_job *j, PIX *pix, int dpi)
{
    int page = j->r->pages + 1;
    pix = ocr_normalise(pix);
    if (!pix)
        return ocr_fail(j, -2, "cannot convert page %d to grey (out of memory?)", page);
    long long left = ocr_remaining(j);
    if (left <= 0) {
        pixDestroy(&pix);
        return ocr_timed_out(j, "before a page");
    }
    TessBaseAPISetImage2(j->api, pix);
    if (dpi > 0)
        TessBaseAPISetSourceResolution(j->api, dpi);
    TessMonitorSetDeadlineMSecs(j->monitor, left > INT_MAX ? INT_MAX : (int)left);
    int rc = TessBaseAPIRecognize(j->api, j->monitor);
    char *text = rc == 0 ? TessBaseAPIGetUTF8Text(j->api) : NULL;
    int conf = rc == 0 ? TessBaseAPIMeanTextConf(j->api) : 0;
    TessBaseAPIClear(j->api);
    pixDestroy(&pix);
    if (rc != 0 && ocr_remaining(j) <= 0) {
        char during[32];
        snprintf(during, sizeof during, "reading page %d", page);
        return ocr_timed_out(j, during);
    }
    if (rc != 0 || !text) {
        TessDeleteText(text);
        return ocr_fail(j, -1, "tesseract cannot read page %d", page);
    }
    if (page > 1)
        buf_puts(&j->text, "\f\n");
    buf_puts(&j->text, text);
    size_t weight = ocr_visible_chars(text);
    j->conf_sum += (double)conf * (double)weight;
    j->conf_weight += (double)weight;
    j->r->pages = page;
    TessDeleteText(text);
    return 0;
}

/* ---- images ---- */

static int ocr_image(ocr_job *j, ocr_type type)
{
    l_int32 format, w, h, bps, spp, cmap;
    if (pixReadHeader(j->path, &format, &w, &h, &bps, &spp, &cmap) != 0)
        return ocr_fail(j, -1, "cannot read the %s header (corrupt file)", ocr_type_names[type]);
    int rc = ocr_size_ok(j, 1, w, h);
    if (rc)
        return rc;
    PIX *pix = pixRead(j->path);
    if (!pix)
        return ocr_fail(j, -1, "cannot decode the %s image (corrupt or truncated)",
                        ocr_type_names[type]);
    return ocr_page(j, pix, 0);
}

static int ocr_tiff(ocr_job *j)
{
    FILE *f = fopen(j->path, "rb");
    l_int32 n = 0;
    if (!f)
        return ocr_fail(j, -2, "cannot open %s: %s", j->path, strerror(errno));
    l_ok bad = tiffGetCount(f, &n);
    fclose(f);
    if (bad || n < 1)
        return ocr_fail(j, -1, "cannot read the TIFF's pages (corrupt file)");
    if (n > j->o->max_pages)
        return ocr_fail(j, -1, "more than %d pages (the TIFF has %d)", j->o->max_pages, n);
    for (l_int32 i = 0; i < n; i++) {
        l_int32 w, h, bps, spp, res, cmap, format;
        if (readHeaderTiff(j->path, i, &w, &h, &bps, &spp, &res, &cmap, &format) != 0)
            return ocr_fail(j, -1, "cannot read the header of TIFF page %d (corrupt file)", i + 1);
        int rc = ocr_size_ok(j, i + 1, w, h);
        if (rc)
            return rc;
        PIX *pix = pixReadTiff(j->path, i);
        if (!pix)
            return ocr_fail(j, -1, "cannot decode TIFF page %d (corrupt or truncated)", i + 1);
        rc = ocr_page(j, pix, 0);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- PDFs, through poppler's tools ---- */

/* The last non-empty line of a tool's stderr, printable, into msg. */
static void ocr_tool_message(const char *path, char *msg, size_t len)
{
    char tail[512] = "";
    snprintf(msg, len, "no message");
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        fseek(f, size > (long)sizeof tail - 1 ? size - (long)sizeof tail + 1 : 0, SEEK_SET);
    }
    size_t n = fread(tail, 1, sizeof tail - 1, f);
    fclose(f);
    tail[n] = '\0';
    while (n > 0 && (tail[n - 1] == '\n' || tail[n - 1] == '\r' || tail[n - 1] == ' '))
        tail[--n] = '\0';
    char *line = strrchr(tail, '\n');
    line = line ? line + 1 : tail;
    if (!*line)
        return;
    for (char *c = line; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
            *c = '?';
    snprintf(msg, len, "%.160s", line);
}

/* Runs argv (no shell) with stdout to out_path, stderr to err_path, stdin from /dev/null, in
 * a process group of its own, until the job's deadline (then the group is killed).
 * 0: it exited, *status as waitpid gives it; -1 timed out; -2 it could not be run (msg). */
static int ocr_run(ocr_job *j, char *const argv[], const char *out_path, const char *err_path,
                   int *status, char *msg, size_t msglen)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGCHLD);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    posix_spawnattr_init(&at);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    pid_t pid;
    int err = posix_spawnp(&pid, argv[0], &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (err) {
        snprintf(msg, msglen, "cannot run %s: %s", argv[0], strerror(err));
        return -2;
    }
    /* A hostile page must not take the machine's memory (its size was checked, but a PDF can
     * hold other things): the tool just started, so the limit comes before any real work. */
    struct rlimit mem = {OCR_TOOL_MEMORY, OCR_TOOL_MEMORY};
    prlimit(pid, RLIMIT_AS, &mem, NULL);
    long sleep_ms = 1;
    for (;;) {
        pid_t w = waitpid(pid, status, WNOHANG);
        if (w == pid)
            return 0;
        if (w < 0 && errno != EINTR) {
            snprintf(msg, msglen, "lost %s (waitpid: %s)", argv[0], strerror(errno));
            kill(-pid, SIGKILL);
            return -2;
        }
        long long left = ocr_remaining(j);
        if (left <= 0) {
            kill(-pid, SIGKILL);
            while (waitpid(pid, status, 0) < 0 && errno == EINTR)
                ;
            return -1;
        }
        if (sleep_ms < 20)
            sleep_ms *= 2;
        long nap = left < sleep_ms ? (long)left : sleep_ms;
        struct timespec ts = {0, nap * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Runs a poppler tool; 0 when it exited 0, else the failure written (-1 or -2). */
static int ocr_tool(ocr_job *j, char *const argv[], const char *out_path, const char *what)
{
    char err_path[PATH_MAX + 16], msg[200];
    int status = 0;
    snprintf(err_path, sizeof err_path, "%s/stderr", j->tmpdir);
    int rc = ocr_run(j, argv, out_path, err_path, &status, msg, sizeof msg);
    if (rc == -1)
        return ocr_timed_out(j, what);
    if (rc == -2)
        return ocr_fail(j, -2, "%s", msg);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    ocr_tool_message(err_path, msg, sizeof msg);
    if (WIFSIGNALED(status))
        return ocr_fail(j, -1, "%s failed (signal %d): %s", argv[0], WTERMSIG(status), msg);
    return ocr_fail(j, -1, "not a readable PDF (%s: %s)", argv[0], msg);
}

static char *ocr_read_small(const char *path, size_t max)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return xstrdup("");
    char *s = xmalloc(max + 1);
    size_t n = fread(s, 1, max, f);
    fclose(f);
    s[n] = '\0';
    return s;
}

/* pdfinfo's page count (the last "Pages:" line: a title could hold an earlier one) and each
 * page's size against the limits at dpi. */
static int ocr_pdf_check(ocr_job *j, const char *info, int *pages)
{
    int n = -1;
    for (const char *l = info; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        int page;
        double w, h;
        if (strncmp(l, "Pages:", 6) == 0)
            n = atoi(l + 6);
        else if (sscanf(l, "Page %d size: %lf x %lf", &page, &w, &h) == 3) {
            double px_w = w * j->o->dpi / 72.0 + 1, px_h = h * j->o->dpi / 72.0 + 1;
            if (px_w > 4.0 * OCR_MAX_SIDE || px_h > 4.0 * OCR_MAX_SIDE)
                px_w = px_h = 4.0 * OCR_MAX_SIDE; /* no overflow below */
            int rc = ocr_size_ok(j, page, (long long)px_w, (long long)px_h);
            if (rc)
                return rc;
        }
    }
    if (n < 0)
        return ocr_fail(j, -1, "not a readable PDF (pdfinfo gave no page count)");
    if (n == 0)
        return ocr_fail(j, -1, "the PDF has no pages");
    if (n > j->o->max_pages)
        return ocr_fail(j, -1, "more than %d pages (the PDF has %d)", j->o->max_pages, n);
    *pages = n;
    return 0;
}

/* The rendered pages' file names by page number (pdftoppm pads the number to the width of
 * the last one: p-1.png or p-01.png). */
static int ocr_pdf_pages(ocr_job *j, int n, char **names)
{
    DIR *d = opendir(j->tmpdir);
    if (!d)
        return ocr_fail(j, -2, "cannot list %s: %s", j->tmpdir, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d))) {
        char *end;
        if (strncmp(de->d_name, "p-", 2) != 0)
            continue;
        long page = strtol(de->d_name + 2, &end, 10);
        if (strcmp(end, ".png") == 0 && page >= 1 && page <= n && !names[page - 1])
            names[page - 1] = xstrdup(de->d_name);
    }
    closedir(d);
    for (int i = 0; i < n; i++)
        if (!names[i])
            return ocr_fail(j, -1, "not a readable PDF (pdftoppm rendered no page %d)", i + 1);
    return 0;
}

static int ocr_pdf(ocr_job *j)
{
    char dpi[16], last[16], info_path[PATH_MAX + 16], prefix[PATH_MAX + 16];
    snprintf(info_path, sizeof info_path, "%s/info", j->tmpdir);
    snprintf(prefix, sizeof prefix, "%s/p", j->tmpdir);
    snprintf(last, sizeof last, "%d", j->o->max_pages);
    char *info_argv[] = {"pdfinfo", "-f", "1", "-l", last, (char *)j->path, NULL};
    int rc = ocr_tool(j, info_argv, info_path, "reading the PDF's page count");
    if (rc)
        return rc;
    char *info = ocr_read_small(info_path, OCR_TOOL_OUTPUT);
    int n = 0;
    rc = ocr_pdf_check(j, info, &n);
    free(info);
    if (rc)
        return rc;
    snprintf(dpi, sizeof dpi, "%d", j->o->dpi);
    snprintf(last, sizeof last, "%d", n);
    char *render_argv[] = {"pdftoppm", "-r", dpi,  "-gray",         "-png", "-f",
                           "1",        "-l", last, (char *)j->path, prefix, NULL};
    rc = ocr_tool(j, render_argv, "/dev/null", "rendering the PDF");
    if (rc)
        return rc;
    char **names = xcalloc((size_t)n, sizeof *names);
    rc = ocr_pdf_pages(j, n, names);
    for (int i = 0; i < n && rc == 0; i++) {
        char path[PATH_MAX + 300];
        l_int32 format, w, h, bps, spp, cmap;
        snprintf(path, sizeof path, "%s/%s", j->tmpdir, names[i]);
        PIX *pix = NULL;
        if (pixReadHeader(path, &format, &w, &h, &bps, &spp, &cmap) != 0)
            rc = ocr_fail(j, -1, "pdftoppm's page %d is unreadable", i + 1);
        else if ((rc = ocr_size_ok(j, i + 1, w, h)) == 0 && !(pix = pixRead(path)))
            rc = ocr_fail(j, -2, "cannot load the rendered page %d (out of memory?)", i + 1);
        unlink(path);
        if (pix)
            rc = ocr_page(j, pix, j->o->dpi);
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

static int ocr_tmpdir_make(ocr_job *j)
{
    const char *base = getenv("TMPDIR");
    snprintf(j->tmpdir, sizeof j->tmpdir, "%s/ocr-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(j->tmpdir)) {
        int e = errno;
        j->tmpdir[0] = '\0';
        return ocr_fail(j, -2, "cannot create a temporary directory: %s", strerror(e));
    }
    return 0;
}

static void ocr_tmpdir_remove(ocr_job *j)
{
    if (!j->tmpdir[0])
        return;
    DIR *d = opendir(j->tmpdir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)))
            if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                unlinkat(dirfd(d), de->d_name, 0);
        closedir(d);
    }
    rmdir(j->tmpdir);
}

/* ---- the job ---- */

static int ocr_sniff(ocr_job *j, const char *content_type, ocr_type *type)
{
    unsigned char head[OCR_MAGIC_SCAN];
    int fd = open(j->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return ocr_fail(j, e == ENOENT || e == ENOTDIR || e == EISDIR ? -1 : -2,
                        "cannot open %s: %s", j->path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ocr_fail(j, -1, "cannot read %s: not a regular file", j->path);
    }
    ssize_t n = read(fd, head, sizeof head);
    int e = errno;
    close(fd);
    if (n < 0)
        return ocr_fail(j, -2, "cannot read %s: %s", j->path, strerror(e));
    if (n == 0)
        return ocr_fail(j, -1, "the file is empty");
    *type = OCR_NONE;
    for (size_t i = 0; i < sizeof ocr_magics / sizeof ocr_magics[0]; i++)
        if ((size_t)n >= ocr_magics[i].len &&
            memcmp(head, ocr_magics[i].magic, ocr_magics[i].len) == 0)
            *type = ocr_magics[i].type;
    if (*type == OCR_NONE && memmem(head, (size_t)n, "%PDF-", 5))
        *type = OCR_PDF;
    if (*type == OCR_NONE)
        return ocr_fail(j, -1, "unsupported file type: not a PNG, JPEG, TIFF or PDF (declared %s)",
                        content_type && *content_type ? content_type : "without a type");
    return 0;
}

int ocr_file(const char *path, const char *content_type, const ocr_opts *o, ocr_result *r)
{
    pthread_once(&ocr_once, ocr_init_once);
    ocr_opts opts;
    ocr_opts_default(&opts);
    if (o) {
        opts = *o;
        if (!opts.lang || !*opts.lang)
            opts.lang = "eng";
        if (opts.psm < 0 || opts.psm > 13)
            opts.psm = 6;
        if (opts.dpi < 50 || opts.dpi > 1200)
            opts.dpi = 300;
        if (opts.max_pages < 1)
            opts.max_pages = 50;
        if (opts.timeout_ms == 0)
            opts.timeout_ms = 300000;
    }
    *r = (ocr_result){0};
    ocr_job j = {.path = path, .o = &opts, .r = r, .start = clock_mono_ms()};
    j.deadline = j.start + opts.timeout_ms;
    ocr_type type;
    int rc = ocr_sniff(&j, content_type, &type);
    if (rc == 0)
        rc = ocr_engine_get(&j);
    if (rc == 0) {
        TessBaseAPISetPageSegMode(j.api, (TessPageSegMode)opts.psm);
        j.monitor = TessMonitorCreate();
        if (type == OCR_PDF) {
            rc = ocr_tmpdir_make(&j);
            if (rc == 0)
                rc = ocr_pdf(&j);
            ocr_tmpdir_remove(&j);
        } else if (type == OCR_TIFF) {
            rc = ocr_tiff(&j);
        } else {
            rc = ocr_image(&j, type);
        }
        TessMonitorDelete(j.monitor);
    }
    if (rc != 0) {
        buf_free(&j.text);
        r->pages = 0;
        return rc;
    }
    r->text = j.text.p ? buf_steal(&j.text) : xstrdup("");
    r->confidence = j.conf_weight > 0 ? j.conf_sum / j.conf_weight : 0;
    return 0;
}
