/* test_log: lines written to stdout are captured through a pipe and parsed back as JSON:
 * fields, order of the fixed members, levels, request id, long messages, one line per call. */
#include "log.h"
#include "test.h"

#include <fcntl.h>
#include <regex.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int saved_stdout = -1;
static int pipe_rd = -1;

/* Redirects stdout (fd 1) into a pipe until capture_end. */
static void capture_begin(void)
{
    int fds[2];
    if (pipe(fds) != 0)
        abort();
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    fcntl(fds[0], F_SETPIPE_SZ, 1 << 20);
    fflush(stdout);
    saved_stdout = dup(1);
    dup2(fds[1], 1);
    close(fds[1]);
    pipe_rd = fds[0];
}

/* Restores stdout; returns what was written (caller frees). */
static char *capture_end(void)
{
    fflush(stdout);
    dup2(saved_stdout, 1);
    close(saved_stdout);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    ssize_t n;
    for (;;) {
        if (len + 1 == cap)
            buf = realloc(buf, cap *= 2);
        n = read(pipe_rd, buf + len, cap - len - 1);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    close(pipe_rd);
    return buf;
}

static void line_fields(void)
{
    log_init("svc-test");
    log_set_level(LOG_INFO);
    capture_begin();
    log_emit(LOG_WARN, "req-123", json_pack("{s:i, s:s}", "status", 503, "path", "/x"),
             "upstream %s failed %d times", "auth", 3);
    char *out = capture_end();
    size_t len = strlen(out);
    CHECK(len > 0 && out[len - 1] == '\n');
    CHECK(strchr(out, '\n') == out + len - 1); /* exactly one line */
    json_error_t err;
    json_t *j = json_loads(out, 0, &err);
    CHECK(j != NULL);
    CHECK_STR(json_string_value(json_object_get(j, "level")), "warn");
    CHECK_STR(json_string_value(json_object_get(j, "svc")), "svc-test");
    CHECK_STR(json_string_value(json_object_get(j, "msg")), "upstream auth failed 3 times");
    CHECK_STR(json_string_value(json_object_get(j, "request_id")), "req-123");
    CHECK_INT(json_integer_value(json_object_get(j, "status")), 503);
    CHECK_STR(json_string_value(json_object_get(j, "path")), "/x");
    /* ts: RFC 3339 UTC with milliseconds. */
    const char *ts = json_string_value(json_object_get(j, "ts"));
    regex_t re;
    regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$",
            REG_EXTENDED | REG_NOSUB);
    CHECK(ts && regexec(&re, ts, 0, NULL, 0) == 0);
    regfree(&re);
    /* The fixed members come first, in order. */
    CHECK(strncmp(out, "{\"ts\":", 6) == 0);
    const char *pl = strstr(out, "\"level\""), *ps = strstr(out, "\"svc\""),
               *pm = strstr(out, "\"msg\""), *pr = strstr(out, "\"request_id\"");
    CHECK(pl && ps && pm && pr && pl < ps && ps < pm && pm < pr);
    json_decref(j);
    free(out);
}

static void no_request_id_and_reserved(void)
{
    capture_begin();
    /* A field cannot overwrite a fixed member. */
    log_emit(LOG_ERROR, NULL, json_pack("{s:s, s:s}", "level", "debug", "extra", "ok"), "plain");
    log_info(NULL, "second");
    char *out = capture_end();
    char *nl = strchr(out, '\n');
    CHECK(nl != NULL);
    if (nl)
        *nl = '\0';
    json_t *j = json_loads(out, 0, NULL);
    CHECK(j != NULL);
    CHECK(json_object_get(j, "request_id") == NULL);
    CHECK_STR(json_string_value(json_object_get(j, "level")), "error");
    CHECK_STR(json_string_value(json_object_get(j, "extra")), "ok");
    json_decref(j);
    if (nl) {
        json_t *j2 = json_loads(nl + 1, 0, NULL);
        CHECK(j2 != NULL);
        CHECK_STR(json_string_value(json_object_get(j2, "msg")), "second");
        CHECK_STR(json_string_value(json_object_get(j2, "level")), "info");
        json_decref(j2);
    }
    free(out);
}

static void levels(void)
{
    log_set_level(LOG_WARN);
    CHECK(!log_enabled(LOG_INFO));
    CHECK(log_enabled(LOG_ERROR));
    capture_begin();
    log_debug(NULL, "hidden debug");
    log_info(NULL, "hidden info");
    log_emit(LOG_INFO, NULL, json_pack("{s:i}", "n", 1), "hidden with fields");
    log_warn(NULL, "shown");
    char *out = capture_end();
    CHECK(strstr(out, "hidden") == NULL);
    CHECK(strstr(out, "shown") != NULL);
    free(out);

    /* LOG_LEVEL from the environment. */
    setenv("LOG_LEVEL", "debug", 1);
    log_init("svc-test");
    CHECK(log_enabled(LOG_DEBUG));
    setenv("LOG_LEVEL", "error", 1);
    log_init("svc-test");
    CHECK(!log_enabled(LOG_WARN));
    unsetenv("LOG_LEVEL");
    log_set_level(LOG_INFO);
}

static void bad_log_level_exits_2(void)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 2);
        setenv("LOG_LEVEL", "verbose", 1);
        log_init("x");
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2);
}

static void long_message_and_escaping(void)
{
    size_t n = 100000;
    char *big = malloc(n + 1);
    memset(big, 'a', n);
    big[n] = '\0';
    capture_begin();
    log_info("r\"1", "%s \"quoted\"\n\xff", big);
    char *out = capture_end();
    size_t len = strlen(out);
    CHECK(len > n && out[len - 1] == '\n');
    CHECK(strchr(out, '\n') == out + len - 1); /* the message's newline is escaped */
    json_t *j = json_loads(out, 0, NULL);
    CHECK(j != NULL);
    const char *msg = json_string_value(json_object_get(j, "msg"));
    CHECK(msg && strlen(msg) == n + 13); /* the invalid byte became U+FFFD */
    CHECK(msg && strncmp(msg + n, " \"quoted\"\n\xEF\xBF\xBD", 13) == 0);
    CHECK_STR(json_string_value(json_object_get(j, "request_id")), "r\"1");
    json_decref(j);
    free(out);
    free(big);
}

/* log_access_fields writes what log_access writes from the same fields (but the time); an
 * ill-formed byte becomes U+FFFD. */
static void access_fields_as_log_access(void)
{
    const char *odd = "q\"b\\s/\x01\t\n\xc3\xa9\xf0\x9f\x98\x80\xff end";
    const char *odd_fixed = "q\"b\\s/\x01\t\n\xc3\xa9\xf0\x9f\x98\x80\xef\xbf\xbd end";
    capture_begin();
    json_t *f = json_object();
    json_object_set_new(f, "client", json_string("10.0.0.1"));
    json_object_set_new(f, "path", json_string(odd_fixed));
    json_object_set_new(f, "status", json_integer(-502));
    json_object_set_new(f, "tls", json_true());
    json_object_set_new(f, "whole", json_real(3.0));
    json_object_set_new(f, "ms", json_real(0.634197));
    json_object_set_new(f, "big", json_integer(INT64_MAX));
    log_access("rid-\xc3\xa9", f);
    log_field lf[] = {
        {"client", LOG_FIELD_STR, "10.0.0.1", 0, 0},
        {"path", LOG_FIELD_STR, odd, 0, 0},
        {"status", LOG_FIELD_INT, NULL, -502, 0},
        {"tls", LOG_FIELD_BOOL, NULL, 1, 0},
        {"whole", LOG_FIELD_REAL, NULL, 0, 3.0},
        {"ms", LOG_FIELD_REAL, NULL, 0, 0.634197},
        {"big", LOG_FIELD_INT, NULL, INT64_MAX, 0},
        {"absent", LOG_FIELD_STR, NULL, 0, 0},           /* left out */
        {"msg", LOG_FIELD_STR, "not the message", 0, 0}, /* a fixed member: dropped */
    };
    log_access_fields("rid-\xc3\xa9", lf, sizeof lf / sizeof lf[0]);
    char *out = capture_end();
    char *second = strchr(out, '\n');
    CHECK(second != NULL);
    if (second) {
        *second++ = '\0';
        char *nl = strchr(second, '\n');
        CHECK(nl && nl[1] == '\0');
        if (nl)
            *nl = '\0';
        const char *a = strstr(out, "\",\"level\""), *b = strstr(second, "\",\"level\"");
        CHECK(a && b);
        if (a && b)
            CHECK_STR(b, a);
    }
    free(out);
}

/* The ts of an access line from log_access_fields: its whole seconds (UTC). */
static long long access_line_second(const char *line)
{
    json_t *j = json_loads(line, 0, NULL);
    const char *ts = j ? json_string_value(json_object_get(j, "ts")) : NULL;
    struct tm tm = {0};
    long long sec = -1;
    if (ts && strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm))
        sec = (long long)timegm(&tm);
    json_decref(j);
    return sec;
}

/* Durations (LOG_FIELD_MS) are milliseconds with exactly three decimals; the time of each line
 * is the time it was written, across a change of second too. */
static void access_durations_and_time(void)
{
    log_field lf[] = {
        {"zero", LOG_FIELD_MS, NULL, 0, 0},    {"five_us", LOG_FIELD_MS, NULL, 5, 0},
        {"ms", LOG_FIELD_MS, NULL, 1234, 0},   {"long", LOG_FIELD_MS, NULL, 634197, 0},
        {"neg", LOG_FIELD_MS, NULL, -1500, 0},
    };
    capture_begin();
    log_access_fields("rid", lf, sizeof lf / sizeof lf[0]);
    char *out = capture_end();
    CHECK(strstr(out, "\"zero\":0.000,\"five_us\":0.005,\"ms\":1.234,\"long\":634.197,"
                      "\"neg\":-1.500}\n") != NULL);
    json_t *j = json_loads(out, 0, NULL);
    CHECK(j != NULL);
    CHECK(json_is_real(json_object_get(j, "ms")) &&
          json_real_value(json_object_get(j, "ms")) == 1.234);
    json_decref(j);
    long long first = access_line_second(out);
    CHECK(first >= 0 && llabs(first - (long long)time(NULL)) <= 1);
    free(out);
    time_t t0 = time(NULL);
    while (time(NULL) == t0)
        usleep(10000);
    capture_begin();
    log_access_fields("rid", lf, 1);
    out = capture_end();
    long long second = access_line_second(out);
    CHECK(second > first && llabs(second - (long long)time(NULL)) <= 1);
    free(out);
}

int main(void)
{
    test_suite = "log";
    alarm(30);
    RUN(line_fields);
    RUN(no_request_id_and_reserved);
    RUN(levels);
    RUN(bad_log_level_exits_2);
    RUN(long_message_and_escaping);
    RUN(access_fields_as_log_access);
    RUN(access_durations_and_time);
    return TEST_EXIT();
}
