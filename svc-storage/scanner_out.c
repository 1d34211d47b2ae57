/* scanner_out: what the scanner prints. On a terminal one progress line (files, bytes, rate,
 * time left) redrawn in place, with failures printed above it; otherwise one plain line per
 * file. Then a summary. */
#include "scanner.h"

#include "clock.h"

#include <stdio.h>
#include <string.h>

#define OUT_BAR_WIDTH 24
#define OUT_REDRAW_MS 200

static struct {
    const scanner_opts *o;
    size_t files_total, files_done;
    uint64_t bytes_total, bytes_done;
    uint64_t start_ms, drawn_ms;
    int bar_shown;
} out;

static const char *const out_words[] = {
    [SCANNER_PENDING] = "pending",           [SCANNER_UPLOADED] = "uploaded",
    [SCANNER_SKIPPED] = "skipped",           [SCANNER_DUPLICATE] = "duplicate",
    [SCANNER_WOULD_UPLOAD] = "would upload", [SCANNER_FAILED] = "failed",
};

/* n bytes as "512 B", "3.4 KiB", "12.0 MiB", "1.2 GiB". */
static const char *out_bytes(uint64_t n, char *b, size_t blen)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(b, blen, "%llu B", (unsigned long long)n);
    else
        snprintf(b, blen, "%.1f %s", v, units[u]);
    return b;
}

static void out_clear_bar(void)
{
    if (out.bar_shown) {
        fputs("\r\033[K", stdout);
        out.bar_shown = 0;
    }
}

static void out_draw(uint64_t inflight, int force)
{
    uint64_t now = clock_mono_ms();
    if (!out.o->tty || (!force && now - out.drawn_ms < OUT_REDRAW_MS))
        return;
    out.drawn_ms = now;
    uint64_t done = out.bytes_done + inflight;
    if (done > out.bytes_total)
        done = out.bytes_total;
    double frac = out.bytes_total   ? (double)done / (double)out.bytes_total
                  : out.files_total ? (double)out.files_done / (double)out.files_total
                                    : 1.0;
    char bar[OUT_BAR_WIDTH + 1];
    int full = (int)(frac * OUT_BAR_WIDTH);
    for (int i = 0; i < OUT_BAR_WIDTH; i++)
        bar[i] = i < full ? '#' : '-';
    bar[OUT_BAR_WIDTH] = '\0';
    double secs = (double)(now - out.start_ms) / 1000.0;
    double rate = secs > 0.2 ? (double)done / secs : 0;
    char a[32], b[32], c[32], left[32] = "--:--";
    if (rate > 0 && out.bytes_total >= done) {
        unsigned long eta = (unsigned long)((double)(out.bytes_total - done) / rate + 0.5);
        if (eta >= 3600)
            snprintf(left, sizeof left, "%lu:%02lu:%02lu", eta / 3600, eta / 60 % 60, eta % 60);
        else
            snprintf(left, sizeof left, "%lu:%02lu", eta / 60, eta % 60);
    }
    printf("\r\033[K[%s] %zu/%zu files  %s/%s  %s/s  %s left", bar, out.files_done, out.files_total,
           out_bytes(done, a, sizeof a), out_bytes(out.bytes_total, b, sizeof b),
           out_bytes((uint64_t)rate, c, sizeof c), left);
    fflush(stdout);
    out.bar_shown = 1;
}

void scanner_out_start(const scanner_opts *o, const scanner_files *fs)
{
    memset(&out, 0, sizeof out);
    out.o = o;
    out.files_total = fs->n;
    for (size_t i = 0; i < fs->n; i++)
        out.bytes_total += fs->v[i].size;
    out.start_ms = clock_mono_ms();
    for (size_t i = 0; i < fs->n; i++)
        if (fs->v[i].result != SCANNER_PENDING)
            scanner_out_file(&fs->v[i]);
    out_draw(0, 1);
}

void scanner_out_file(const scanner_file *f)
{
    out.files_done++;
    out.bytes_done += f->size;
    char sz[32];
    if (!out.o->tty) {
        const char *w = out_words[f->result];
        if (f->result == SCANNER_FAILED)
            printf("%-12s %s: %s\n", w, f->rel, f->detail ? f->detail : "");
        else if (f->detail)
            printf("%-12s %s (%s, %s)\n", w, f->rel, out_bytes(f->size, sz, sizeof sz), f->detail);
        else
            printf("%-12s %s (%s)\n", w, f->rel, out_bytes(f->size, sz, sizeof sz));
        fflush(stdout);
        return;
    }
    if (f->result == SCANNER_FAILED) {
        out_clear_bar();
        printf("failed %s: %s\n", f->rel, f->detail ? f->detail : "");
    }
    out_draw(0, f->result == SCANNER_FAILED);
}

void scanner_out_retry(const scanner_file *f, const char *why, int next_try, int tries,
                       uint64_t wait_ms)
{
    if (out.o->tty)
        return;
    if (next_try == 0) /* a rate limit waited out: no try used */
        printf("%-12s %s: %s (again in %.1f s)\n", "retry", f->rel, why, (double)wait_ms / 1000.0);
    else
        printf("%-12s %s: %s (try %d of %d in %.1f s)\n", "retry", f->rel, why, next_try, tries,
               (double)wait_ms / 1000.0);
    fflush(stdout);
}

void scanner_out_progress(uint64_t inflight_bytes)
{
    out_draw(inflight_bytes, 0);
}

size_t scanner_out_summary(const scanner_files *fs)
{
    size_t count[SCANNER_FAILED + 1] = {0};
    for (size_t i = 0; i < fs->n; i++)
        count[fs->v[i].result]++;
    out_draw(0, 1);
    out_clear_bar();
    double secs = (double)(clock_mono_ms() - out.start_ms) / 1000.0;
    if (out.o->dry_run)
        printf("summary: would upload %zu, ", count[SCANNER_WOULD_UPLOAD]);
    else
        printf("summary: uploaded %zu, ", count[SCANNER_UPLOADED]);
    printf("skipped %zu (already there), duplicates %zu, failed %zu; %zu files in %.1f s\n",
           count[SCANNER_SKIPPED], count[SCANNER_DUPLICATE], count[SCANNER_FAILED], fs->n, secs);
    if (count[SCANNER_FAILED]) {
        printf("failed:\n");
        for (size_t i = 0; i < fs->n; i++)
            if (fs->v[i].result == SCANNER_FAILED)
                printf("  %s: %s\n", fs->v[i].rel, fs->v[i].detail ? fs->v[i].detail : "");
    }
    fflush(stdout);
    return count[SCANNER_FAILED];
}
