/* log: JSON lines on stdout ({"ts","level","svc","msg","request_id",...fields}).
 * Never pass tokens, passwords, keys or cookies as fields. */
#ifndef COMMON_LOG_H
#define COMMON_LOG_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

/* Sets the "svc" field and the minimum level (from LOG_LEVEL: debug|info|warn|error). */
void log_init(const char *svc);
void log_set_level(log_level level);
int log_enabled(log_level level);

/* Writes one line. request_id may be NULL; fields is a JSON object whose members are added
 * to the line, stolen (may be NULL); fmt is a printf format for "msg". One write(2) per line. */
void log_emit(log_level level, const char *request_id, json_t *fields, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* An access log line (msg "access", level info) written whatever LOG_LEVEL says: access logs
 * are switched by their own setting. fields is stolen. */
void log_access(const char *request_id, json_t *fields);

/* The same line from typed fields (distinct names), written straight to text (no JSON
 * objects: a busy gateway writes one per request). The output is what log_access would
 * write; LOG_FIELD_MS, a duration given in microseconds (num), is written as milliseconds
 * with three decimals (1234 as 1.234), as a JSON real of that value. */
typedef enum {
    LOG_FIELD_STR,
    LOG_FIELD_INT,
    LOG_FIELD_BOOL,
    LOG_FIELD_REAL,
    LOG_FIELD_MS
} log_field_kind;
typedef struct log_field {
    const char *name;
    log_field_kind kind;
    const char *str; /* LOG_FIELD_STR; NULL: the field is left out */
    int64_t num;     /* LOG_FIELD_INT, LOG_FIELD_BOOL, LOG_FIELD_MS */
    double real;     /* LOG_FIELD_REAL */
} log_field;
void log_access_fields(const char *request_id, const log_field *fields, size_t n);

#define log_debug(rid, ...) log_emit(LOG_DEBUG, (rid), NULL, __VA_ARGS__)
#define log_info(rid, ...)  log_emit(LOG_INFO, (rid), NULL, __VA_ARGS__)
#define log_warn(rid, ...)  log_emit(LOG_WARN, (rid), NULL, __VA_ARGS__)
#define log_error(rid, ...) log_emit(LOG_ERROR, (rid), NULL, __VA_ARGS__)

#endif
