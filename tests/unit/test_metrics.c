/* test_metrics: the registry rendered as Prometheus text, checked line by line. */
#include "metrics.h"
#include "test.h"

#include <stdlib.h>

static void counters_and_gauges(void)
{
    metrics_reset();
    metric *a =
        metrics_counter("http_requests_total", "Requests served.", "method=\"GET\",status=\"200\"");
    metric *g = metrics_gauge("pg_pool_in_use", "Connections in use.", NULL);
    metric *b =
        metrics_counter("http_requests_total", "ignored help", "method=\"POST\",status=\"201\"");
    CHECK(metrics_counter("http_requests_total", NULL, "method=\"GET\",status=\"200\"") == a);
    CHECK(a != b);
    metric_inc(a);
    metric_inc(a);
    metric_add(b, 5);
    metric_add(b, -3); /* a counter never goes down */
    metric_set(g, 3);
    metric_add(g, -1);
    metric_add(g, 0.5);
    size_t len;
    char *out = metrics_render(&len);
    CHECK_INT(len, strlen(out));
    CHECK_STR(out, "# HELP http_requests_total Requests served.\n"
                   "# TYPE http_requests_total counter\n"
                   "http_requests_total{method=\"GET\",status=\"200\"} 2\n"
                   "http_requests_total{method=\"POST\",status=\"201\"} 5\n"
                   "# HELP pg_pool_in_use Connections in use.\n"
                   "# TYPE pg_pool_in_use gauge\n"
                   "pg_pool_in_use 2.5\n");
    free(out);
    metrics_reset();
    out = metrics_render(&len);
    CHECK_INT(len, 0);
    CHECK_STR(out, "");
    free(out);
}

static void histogram(void)
{
    metrics_reset();
    metric *h = metrics_histogram("http_request_duration_seconds", "Latency.", "route=\"/x\"");
    metric *h2 = metrics_histogram("http_request_duration_seconds", NULL, NULL);
    metric_observe(h, 0.001); /* on a boundary: counted in le="0.001" */
    metric_observe(h, 0.003);
    metric_observe(h, 0.2);
    metric_observe(h, 30); /* only in +Inf */
    metric_observe(h2, 0.05);
    char *out = metrics_render(NULL);
    CHECK_STR(out, "# HELP http_request_duration_seconds Latency.\n"
                   "# TYPE http_request_duration_seconds histogram\n"
                   "http_request_duration_seconds_bucket{route=\"/x\",le=\"0.001\"} 1\n"
                   "http_request_duration_seconds_bucket{route=\"/x\",le=\"0.0025\"} 1\n"
                   "http_request_duration_seconds_bucket{route=\"/x\",le=\"0.005\"} 2\n"
                   "http_request_duration_seconds_bucket{route=\"/x\",le=\"0.01\"} 2\n"
                   "http_request_duration_seconds_bucket{route=\"/x\",le=\"0.025\"} 2\n"
                   "http_request_duration_seconds_bucket{route=\"/x\",le=\"0.05\"} 2\n"
                   "http_request_duration_seconds_bucket{route=\"/x\",le=\"0.1\"} 2\n"
                   "http_request_duration_seconds_bucket{route=\"/x\",le=\"0.25\"} 3\n"
                   "http_request_duration_seconds_bucket{route=\"/x\",le=\"0.5\"} 3\n"
                   "http_request_duration_seconds_bucket{route=\"/x\",le=\"1\"} 3\n"
                   "http_request_duration_seconds_bucket{route=\"/x\",le=\"2.5\"} 3\n"
                   "http_request_duration_seconds_bucket{route=\"/x\",le=\"5\"} 3\n"
                   "http_request_duration_seconds_bucket{route=\"/x\",le=\"10\"} 3\n"
                   "http_request_duration_seconds_bucket{route=\"/x\",le=\"+Inf\"} 4\n"
                   "http_request_duration_seconds_sum{route=\"/x\"} 30.204\n"
                   "http_request_duration_seconds_count{route=\"/x\"} 4\n"
                   "http_request_duration_seconds_bucket{le=\"0.001\"} 0\n"
                   "http_request_duration_seconds_bucket{le=\"0.0025\"} 0\n"
                   "http_request_duration_seconds_bucket{le=\"0.005\"} 0\n"
                   "http_request_duration_seconds_bucket{le=\"0.01\"} 0\n"
                   "http_request_duration_seconds_bucket{le=\"0.025\"} 0\n"
                   "http_request_duration_seconds_bucket{le=\"0.05\"} 1\n"
                   "http_request_duration_seconds_bucket{le=\"0.1\"} 1\n"
                   "http_request_duration_seconds_bucket{le=\"0.25\"} 1\n"
                   "http_request_duration_seconds_bucket{le=\"0.5\"} 1\n"
                   "http_request_duration_seconds_bucket{le=\"1\"} 1\n"
                   "http_request_duration_seconds_bucket{le=\"2.5\"} 1\n"
                   "http_request_duration_seconds_bucket{le=\"5\"} 1\n"
                   "http_request_duration_seconds_bucket{le=\"10\"} 1\n"
                   "http_request_duration_seconds_bucket{le=\"+Inf\"} 1\n"
                   "http_request_duration_seconds_sum 0.05\n"
                   "http_request_duration_seconds_count 1\n");
    free(out);
    metrics_reset();
}

static void help_escaping_and_values(void)
{
    metrics_reset();
    metric *g = metrics_gauge("odd_gauge", "a \\ back\nslash", NULL);
    metric_set(g, 0.1);
    metric *big = metrics_counter("big_total", "", NULL);
    metric_set(big, 12345678901.0);
    char *out = metrics_render(NULL);
    CHECK_STR(out, "# HELP odd_gauge a \\\\ back\\nslash\n"
                   "# TYPE odd_gauge gauge\n"
                   "odd_gauge 0.1\n"
                   "# HELP big_total \n"
                   "# TYPE big_total counter\n"
                   "big_total 12345678901\n");
    free(out);
    metric_set(metrics_gauge("odd_gauge", NULL, NULL), 1.0 / 0.0);
    out = metrics_render(NULL);
    CHECK(strstr(out, "\nodd_gauge +Inf\n") != NULL);
    free(out);
    metrics_reset();
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {TEST_CASE(counters_and_gauges), TEST_CASE(histogram),
                                      TEST_CASE(help_escaping_and_values)};
    return test_main("metrics", cases, argc, argv);
}
