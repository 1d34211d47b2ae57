/* log: one JSON object per line on stdout, written with a single write(2) so that lines from
 * several processes sharing stdout never interleave. Field values are written as given and
 * never filtered here: callers must not pass tokens, passwords, keys or cookies. */
#include "log.h"

#include "buf.h"
#include "config.h"
#include "utf8.h"
#include "xalloc.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static char log_svc[64];
static log_level log_min = LOG_INFO;

static const char *log_names[] = {"debug", "info", "warn", "error"};

void log_init(const char *svc)
{
    snprintf(log_svc, sizeof log_svc, "%s", svc ? svc : "");
    const char *lv = config_str("LOG_LEVEL", NULL);
    if (!lv)
        return;
    for (int i = LOG_DEBUG; i <= LOG_ERROR; i++) {
        if (strcasecmp(lv, log_names[i]) == 0) {
            log_min = (log_level)i;
            return;
        }
    }
    if (strcasecmp(lv, "warning") == 0) {
        log_min = LOG_WARN;
        return;
    }
    fprintf(stderr, "config: LOG_LEVEL=\"%s\": not one of debug, info, warn, error\n", lv);
    exit(2);
}

void log_set_level(log_level level)
{
    log_min = level;
}

int log_enabled(log_level level)
{
    return level >= log_min;
}

/* A JSON string from bytes that may not be valid UTF-8: ill-formed ones become U+FFFD. */
static json_t *log_string(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    size_t len = strlen(s), cap = 3 * len + 1;
    char *copy = xmalloc(cap);
    utf8_sanitize(copy, cap, s, len);
    j = json_string(copy);
    free(copy);
    return j;
}

/* Writes all of buf to stdout. A non-blocking stdout that is full is waited on briefly;
 * beyond that the rest of the line is dropped rather than stalling the process. */
static void log_write(const char *buf, size_t len)
{
    int waits = 0;
    while (len > 0) {
        ssize_t n = write(STDOUT_FILENO, buf, len);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && waits++ < 10) {
            struct pollfd p = {.fd = STDOUT_FILENO, .events = POLLOUT};
            poll(&p, 1, 10);
            continue;
        }
        return;
    }
}

/* The time now as the lines carry it: UTC, milliseconds, ISO 8601. The date and time of the
 * second are formatted once per second and thread. */
static void log_timestamp(char *out, size_t n)
{
    static _Thread_local time_t sec = -1;
    static _Thread_local char head[64]; /* "YYYY-MM-DDTHH:MM:SS" */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        snprintf(head, sizeof head, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        sec = ts.tv_sec;
    }
    unsigned ms = (unsigned)(ts.tv_nsec / 1000000);
    char tail[6] = {
        '.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 'Z', '\0'};
    size_t hl = strlen(head);
    if (hl + sizeof tail > n)
        return;
    memcpy(out, head, hl);
    memcpy(out + hl, tail, sizeof tail);
}

/* Composes and writes one line; steals fields. */
static void log_line(log_level level, const char *request_id, json_t *fields, const char *msg)
{
    char tsbuf[96];
    log_timestamp(tsbuf, sizeof tsbuf);

    json_t *line = json_object();
    if (!line)
        goto out;
    json_object_set_new(line, "ts", json_string(tsbuf));
    json_object_set_new(line, "level", json_string(log_names[level]));
    json_object_set_new(line, "svc",
                        log_string(log_svc[0] ? log_svc : program_invocation_short_name));
    json_object_set_new(line, "msg", log_string(msg));
    if (request_id)
        json_object_set_new(line, "request_id", log_string(request_id));
    if (json_is_object(fields)) {
        const char *key;
        json_t *value;
        json_object_foreach(fields, key, value)
        {
            /* The fixed members keep their meaning: a field of the same name is dropped. */
            if (!json_object_get(line, key))
                json_object_set(line, key, value);
        }
    }

    char *text = json_dumps(line, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(line);
    if (!text)
        goto out;
    size_t len = strlen(text);
    char *withnl = xrealloc(text, len + 2);
    withnl[len] = '\n';
    withnl[len + 1] = '\0';
    log_write(withnl, len + 1);
    free(withnl);

out:
    json_decref(fields);
}

void log_emit(log_level level, const char *request_id, json_t *fields, const char *fmt, ...)
{
    if (level < LOG_DEBUG || level > LOG_ERROR)
        level = LOG_ERROR;
    if (!log_enabled(level)) {
        json_decref(fields);
        return;
    }

    char msgbuf[512];
    char *msg = msgbuf;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msgbuf, sizeof msgbuf, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof msgbuf) {
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
            xalloc_oom((size_t)n + 1);
        va_end(ap);
    } else if (n < 0) {
        msgbuf[0] = '\0';
    }

    log_line(level, request_id, fields, msg);
    if (msg != msgbuf)
        free(msg);
}

void log_access(const char *request_id, json_t *fields)
{
    log_line(LOG_INFO, request_id, fields, "access");
}

/* ---- access lines written straight to text ---- */

#define LOG_LIT(s) (s), sizeof(s) - 1

/* A JSON string as json_dumps(JSON_ENSURE_ASCII) writes it; ill-formed UTF-8 first becomes
 * U+FFFD as in log_string. */
/* The bytes a JSON string holds as they are: printable ASCII but the quote and backslash. */
static int log_plain(unsigned char c)
{
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

static void log_put_string(buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    const char *q = s;
    while (log_plain((unsigned char)*q))
        q++;
    if (!*q) { /* the common case: nothing to escape */
        size_t n = (size_t)(q - s);
        buf_reserve(b, n + 2);
        b->p[b->len++] = '"';
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len++] = '"';
        b->p[b->len] = '\0';
        return;
    }
    size_t len = (size_t)(q - s) + strlen(q);
    char *copy = NULL;
    if (!utf8_valid(s, len)) {
        size_t cap = 3 * len + 1;
        copy = xmalloc(cap);
        len = utf8_sanitize(copy, cap, s, len);
        s = copy;
    }
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    buf_append(b, "\"", 1);
    while (p < end) {
        const unsigned char *run = p;
        while (p < end && log_plain(*p))
            p++;
        if (p > run)
            buf_append(b, run, (size_t)(p - run));
        if (p == end)
            break;
        unsigned c = *p;
        char esc[12];
        if (c < 0x80) {
            p++;
            const char *short_esc = c == '"'    ? "\\\""
                                    : c == '\\' ? "\\\\"
                                    : c == '\b' ? "\\b"
                                    : c == '\f' ? "\\f"
                                    : c == '\n' ? "\\n"
                                    : c == '\r' ? "\\r"
                                    : c == '\t' ? "\\t"
                                                : NULL;
            if (short_esc) {
                buf_append(b, short_esc, 2);
            } else {
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                buf_append(b, esc, 6);
            }
            continue;
        }
        /* well-formed here: 2, 3 or 4 bytes */
        unsigned cp, n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
        cp = c & (n == 4 ? 0x07 : n == 3 ? 0x0f : 0x1f);
        for (unsigned k = 1; k < n; k++)
            cp = (cp << 6) | (p[k] & 0x3f);
        p += n;
        unsigned units[2], nu = 0;
        if (cp >= 0x10000) {
            cp -= 0x10000;
            units[nu++] = 0xd800 | (cp >> 10);
            units[nu++] = 0xdc00 | (cp & 0x3ff);
        } else {
            units[nu++] = cp;
        }
        for (unsigned k = 0; k < nu; k++) {
            esc[0] = '\\';
            esc[1] = 'u';
            for (int d = 0; d < 4; d++)
                esc[2 + d] = hex[(units[k] >> (12 - 4 * d)) & 15];
            buf_append(b, esc, 6);
        }
    }
    buf_append(b, "\"", 1);
    free(copy);
}

static void log_put_key(buf *b, const char *name)
{
    buf_append(b, ",", 1);
    log_put_string(b, name);
    buf_append(b, ":", 1);
}

static void log_put_int(buf *b, int64_t v)
{
    char t[24];
    size_t i = sizeof t;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        t[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        t[--i] = '-';
    buf_append(b, t + i, sizeof t - i);
}

/* As jansson writes a real: %.17g, with ".0" when that reads as an integer. */
static void log_put_real(buf *b, double v)
{
    char t[64];
    int n = snprintf(t, sizeof t, "%.17g", v);
    if (n <= 0 || (size_t)n >= sizeof t)
        return;
    buf_append(b, t, (size_t)n);
    if (!strpbrk(t, ".eE") && !strpbrk(t, "ni")) /* not nan or inf */
        buf_append(b, ".0", 2);
}

/* A duration in microseconds as milliseconds with three decimals: 1234 is 1.234. */
static void log_put_ms(buf *b, int64_t v)
{
    uint64_t us = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    if (v < 0)
        buf_append(b, "-", 1);
    log_put_int(b, (int64_t)(us / 1000));
    char t[4] = {'.', (char)('0' + us / 100 % 10), (char)('0' + us / 10 % 10),
                 (char)('0' + us % 10)};
    buf_append(b, t, sizeof t);
}

/* The members every line has, in place of a field of the same name. */
static int log_fixed_member(const char *name)
{
    static const char *const fixed[] = {"ts", "level", "svc", "msg", "request_id"};
    for (size_t k = 0; k < sizeof fixed / sizeof fixed[0]; k++)
        if (name[0] == fixed[k][0] && strcmp(name, fixed[k]) == 0)
            return 1;
    return 0;
}

void log_access_fields(const char *request_id, const log_field *fields, size_t n)
{
    char tsbuf[96];
    log_timestamp(tsbuf, sizeof tsbuf);
    buf b = {0};
    buf_reserve(&b, 480);
    buf_append(&b, LOG_LIT("{\"ts\":"));
    log_put_string(&b, tsbuf);
    buf_append(&b, LOG_LIT(",\"level\":\"info\",\"svc\":"));
    log_put_string(&b, log_svc[0] ? log_svc : program_invocation_short_name);
    buf_append(&b, LOG_LIT(",\"msg\":\"access\""));
    if (request_id) {
        buf_append(&b, LOG_LIT(",\"request_id\":"));
        log_put_string(&b, request_id);
    }
    for (size_t i = 0; i < n; i++) {
        const log_field *f = &fields[i];
        if ((f->kind == LOG_FIELD_STR && !f->str) || log_fixed_member(f->name))
            continue;
        log_put_key(&b, f->name);
        switch (f->kind) {
        case LOG_FIELD_STR: log_put_string(&b, f->str); break;
        case LOG_FIELD_INT: log_put_int(&b, f->num); break;
        case LOG_FIELD_BOOL: buf_append(&b, f->num ? "true" : "false", f->num ? 4 : 5); break;
        case LOG_FIELD_REAL: log_put_real(&b, f->real); break;
        case LOG_FIELD_MS: log_put_ms(&b, f->num); break;
        }
    }
    buf_append(&b, LOG_LIT("}\n"));
    log_write(b.p, b.len);
    buf_free(&b);
}
