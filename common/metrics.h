/* metrics: a process-wide registry of counters, gauges and histograms rendered as Prometheus
 * text. Single-threaded: update from the event loop thread only. */
#ifndef COMMON_METRICS_H
#define COMMON_METRICS_H

#include <stddef.h>

typedef struct metric metric;

/* Returns the series for name + labels, creating it on first use (the same pointer for the
 * same name and labels). labels is Prometheus label text without braces, e.g.
 * "method=\"GET\",status=\"200\"", or NULL. help is kept from the first call. */
metric *metrics_counter(const char *name, const char *help, const char *labels);
metric *metrics_gauge(const char *name, const char *help, const char *labels);
/* Histogram with the default latency buckets in seconds (.001 .. 10). */
metric *metrics_histogram(const char *name, const char *help, const char *labels);

void metric_inc(metric *m);
void metric_add(metric *m, double v);
void metric_set(metric *m, double v);
void metric_observe(metric *m, double v);

/* The whole registry as Prometheus text exposition format; the caller frees. */
char *metrics_render(size_t *len);
void metrics_reset(void); /* frees everything: tests and exit */

#endif
