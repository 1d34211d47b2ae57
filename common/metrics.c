/* metrics: a process-wide registry of counters, gauges and histograms, rendered in the
 * Prometheus text exposition format 0.0.4 (# HELP and # TYPE once per name, series grouped
 * by name, histogram buckets cumulative). Single-threaded: event loop thread only. */
#include "metrics.h"

#include "xalloc.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM } metric_type;

static const double metrics_buckets[] = {.001, .0025, .005, .01, .025, .05, .1,
                                         .25,  .5,    1,    2.5, 5,    10};
#define METRICS_NBUCKETS (sizeof metrics_buckets / sizeof metrics_buckets[0])

struct metric {
    struct metric *next;
    metric_type type;
    char *labels; /* "" when none */
    double value; /* counter, gauge; histogram: sum */
    unsigned long long count;
    unsigned long long buckets[METRICS_NBUCKETS]; /* per bucket, not cumulative */
};

typedef struct metric_family {
    struct metric_family *next;
    char *name;
    char *help;
    metric_type type;
    metric *series, *series_tail;
} metric_family;

static metric_family *metrics_head, *metrics_tail;

static metric *metrics_get(metric_type type, const char *name, const char *help, const char *labels)
{
    static const char *type_names[] = {"counter", "gauge", "histogram"};
    if (!labels)
        labels = "";
    metric_family *f;
    for (f = metrics_head; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            break;
    if (f && f->type != type) {
        /* A programming error: one name with two types would render an invalid page. */
        fprintf(stderr, "metrics: %s registered as %s and %s\n", name, type_names[f->type],
                type_names[type]);
        abort();
    }
    if (!f) {
        f = xcalloc(1, sizeof *f);
        f->name = xstrdup(name);
        f->help = xstrdup(help ? help : "");
        f->type = type;
        if (metrics_tail)
            metrics_tail->next = f;
        else
            metrics_head = f;
        metrics_tail = f;
    }
    metric *m;
    for (m = f->series; m; m = m->next)
        if (strcmp(m->labels, labels) == 0)
            return m;
    m = xcalloc(1, sizeof *m);
    m->type = type;
    m->labels = xstrdup(labels);
    if (f->series_tail)
        f->series_tail->next = m;
    else
        f->series = m;
    f->series_tail = m;
    return m;
}

metric *metrics_counter(const char *name, const char *help, const char *labels)
{
    return metrics_get(METRIC_COUNTER, name, help, labels);
}

metric *metrics_gauge(const char *name, const char *help, const char *labels)
{
    return metrics_get(METRIC_GAUGE, name, help, labels);
}

metric *metrics_histogram(const char *name, const char *help, const char *labels)
{
    return metrics_get(METRIC_HISTOGRAM, name, help, labels);
}

void metric_inc(metric *m)
{
    if (m && m->type != METRIC_HISTOGRAM)
        m->value += 1;
}

/* A counter never goes down: a negative increment to a counter is ignored. */
void metric_add(metric *m, double v)
{
    if (!m || m->type == METRIC_HISTOGRAM || (m->type == METRIC_COUNTER && v < 0))
        return;
    m->value += v;
}

void metric_set(metric *m, double v)
{
    if (m && m->type != METRIC_HISTOGRAM)
        m->value = v;
}

void metric_observe(metric *m, double v)
{
    if (!m || m->type != METRIC_HISTOGRAM)
        return;
    m->value += v;
    m->count++;
    for (size_t i = 0; i < METRICS_NBUCKETS; i++) {
        if (v <= metrics_buckets[i]) {
            m->buckets[i]++;
            break;
        }
    }
}

/* A growing output buffer. */
typedef struct {
    char *buf;
    size_t len, cap;
} metrics_out;

static void metrics_printf(metrics_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void metrics_printf(metrics_out *o, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t ncap = o->cap * 2 + (size_t)n;
        o->buf = xrealloc(o->buf, ncap);
        o->cap = ncap;
    }
}

/* The shortest decimal text that reads back as v; +Inf, -Inf, NaN as Prometheus spells them. */
static void metrics_fmt(char *out, size_t cap, double v)
{
    if (isnan(v)) {
        snprintf(out, cap, "NaN");
    } else if (isinf(v)) {
        snprintf(out, cap, v > 0 ? "+Inf" : "-Inf");
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(out, cap, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
    }
}

static void metrics_help(metrics_out *o, const metric_family *f)
{
    metrics_printf(o, "# HELP %s ", f->name);
    for (const char *p = f->help; *p; p++) {
        if (*p == '\\')
            metrics_printf(o, "\\\\");
        else if (*p == '\n')
            metrics_printf(o, "\\n");
        else
            metrics_printf(o, "%c", *p);
    }
    metrics_printf(o, "\n");
}

char *metrics_render(size_t *len)
{
    static const char *type_names[] = {"counter", "gauge", "histogram"};
    metrics_out o = {.buf = xcalloc(1, 4096), .len = 0, .cap = 4096};
    char num[64];
    for (const metric_family *f = metrics_head; f; f = f->next) {
        metrics_help(&o, f);
        metrics_printf(&o, "# TYPE %s %s\n", f->name, type_names[f->type]);
        for (const metric *m = f->series; m; m = m->next) {
            const char *lb = m->labels;
            int has = lb[0] != '\0';
            if (f->type != METRIC_HISTOGRAM) {
                metrics_fmt(num, sizeof num, m->value);
                metrics_printf(&o, "%s%s%s%s %s\n", f->name, has ? "{" : "", lb, has ? "}" : "",
                               num);
                continue;
            }
            unsigned long long cum = 0;
            for (size_t i = 0; i < METRICS_NBUCKETS; i++) {
                cum += m->buckets[i];
                metrics_fmt(num, sizeof num, metrics_buckets[i]);
                metrics_printf(&o, "%s_bucket{%s%sle=\"%s\"} %llu\n", f->name, lb, has ? "," : "",
                               num, cum);
            }
            metrics_printf(&o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", f->name, lb, has ? "," : "",
                           m->count);
            metrics_fmt(num, sizeof num, m->value);
            metrics_printf(&o, "%s_sum%s%s%s %s\n", f->name, has ? "{" : "", lb, has ? "}" : "",
                           num);
            metrics_printf(&o, "%s_count%s%s%s %llu\n", f->name, has ? "{" : "", lb, has ? "}" : "",
                           m->count);
        }
    }
    if (len)
        *len = o.len;
    return o.buf;
}

void metrics_reset(void)
{
    metric_family *f = metrics_head;
    while (f) {
        metric_family *fn = f->next;
        metric *m = f->series;
        while (m) {
            metric *mn = m->next;
            free(m->labels);
            free(m);
            m = mn;
        }
        free(f->name);
        free(f->help);
        free(f);
        f = fn;
    }
    metrics_head = metrics_tail = NULL;
}
