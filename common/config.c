/* config: settings from environment variables, or from the file named by NAME_FILE (Docker
 * secrets), parsed strictly. A value that does not parse stops the process with status 2 and
 * a message naming the variable, so a typo never runs silently with another value. */
#include "config.h"

#include "xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Values read from NAME_FILE, read once and kept until exit. */
typedef struct config_entry {
    struct config_entry *next;
    char *name;
    char *value;
} config_entry;

static config_entry *config_files;
static pthread_mutex_t config_lock = PTHREAD_MUTEX_INITIALIZER;

static void config_fail(const char *name, const char *value, const char *what)
{
    fprintf(stderr, "config: %s=\"%s\": %s\n", name, value ? value : "", what);
    exit(2);
}

/* Reads the whole file at path, trailing "\n" / "\r\n" removed. NULL on error (errno set). */
static char *config_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 256, len = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            buf = xrealloc(buf, cap * 2);
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    buf[len] = '\0';
    if (strlen(buf) != len) { /* a NUL byte inside: not a usable setting */
        free(buf);
        errno = EINVAL;
        return NULL;
    }
    return buf;
}

const char *config_str(const char *name, const char *def)
{
    const char *v = getenv(name);
    if (v)
        return v;

    char fname[256];
    if (snprintf(fname, sizeof fname, "%s_FILE", name) >= (int)sizeof fname)
        config_fail(name, NULL, "name too long");
    const char *path = getenv(fname);
    if (!path)
        return def;

    pthread_mutex_lock(&config_lock);
    for (config_entry *e = config_files; e; e = e->next) {
        if (strcmp(e->name, name) == 0) {
            pthread_mutex_unlock(&config_lock);
            return e->value;
        }
    }
    char *value = config_read_file(path);
    if (!value) {
        fprintf(stderr, "config: %s=\"%s\": cannot read: %s\n", fname, path, strerror(errno));
        exit(2);
    }
    config_entry *e = xmalloc(sizeof *e);
    e->name = xstrdup(name);
    e->value = value;
    e->next = config_files;
    config_files = e;
    pthread_mutex_unlock(&config_lock);
    return value;
}

/* Parses a whole decimal integer (optional sign, no spaces). */
static int config_parse_long(const char *s, long *out)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end)
        return -1;
    *out = v;
    return 0;
}

/* Parses leading decimal digits (no sign) into *out; returns the rest of s, NULL on overflow
 * or when there is no digit. */
static const char *config_parse_digits(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;
    while (*p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return NULL;
        v = v * 10 + d;
        p++;
    }
    if (p == s)
        return NULL;
    *out = v;
    return p;
}

/* A unit a number may carry, and what it multiplies by. */
typedef struct {
    const char *suffix;
    uint64_t mult;
} config_unit;

/* Digits followed by one of units' suffixes ("" for none); the product must not exceed max. */
static int config_parse_scaled(const char *s, const config_unit *units, size_t nunits, uint64_t max,
                               uint64_t *out)
{
    if (!s)
        return -1;
    uint64_t v;
    const char *rest = config_parse_digits(s, &v);
    if (!rest)
        return -1;
    for (size_t i = 0; i < nunits; i++) {
        if (strcmp(rest, units[i].suffix) == 0) {
            if (v > max / units[i].mult)
                return -1;
            *out = v * units[i].mult;
            return 0;
        }
    }
    return -1;
}

int config_parse_size(const char *s, size_t *out)
{
    static const config_unit units[] = {
        {"", 1},           {"k", 1ULL << 10}, {"K", 1ULL << 10}, {"m", 1ULL << 20},
        {"M", 1ULL << 20}, {"g", 1ULL << 30}, {"G", 1ULL << 30},
    };
    uint64_t v;
    if (config_parse_scaled(s, units, sizeof units / sizeof units[0], SIZE_MAX, &v) != 0)
        return -1;
    *out = (size_t)v;
    return 0;
}

int config_parse_ms(const char *s, long *out)
{
    static const config_unit units[] = {
        {"", 1},
        {"ms", 1},
        {"s", 1000},
        {"m", 60ULL * 1000},
        {"h", 3600ULL * 1000},
        {"d", 86400ULL * 1000},
    };
    uint64_t v;
    if (config_parse_scaled(s, units, sizeof units / sizeof units[0], LONG_MAX, &v) != 0)
        return -1;
    *out = (long)v;
    return 0;
}

int config_parse_bool(const char *s, int *out)
{
    static const char *yes[] = {"1", "true", "yes", "on"};
    static const char *no[] = {"0", "false", "no", "off"};
    if (!s)
        return -1;
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

int config_parse_hostport(const char *s, char *host, size_t hostcap, int *port)
{
    if (!s)
        return -1;
    const char *h, *hend, *colon;
    if (s[0] == '[') {
        h = s + 1;
        hend = strchr(h, ']');
        if (!hend || hend[1] != ':')
            return -1;
        colon = hend + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -1;
        h = s;
        hend = colon;
        if (memchr(h, ':', (size_t)(hend - h)))
            return -1; /* bare IPv6 needs brackets */
    }
    size_t hlen = (size_t)(hend - h);
    if (hlen == 0 || hlen >= hostcap)
        return -1;
    const char *p = colon + 1;
    uint64_t v;
    const char *rest = config_parse_digits(p, &v);
    if (!rest || *rest || v > 65535)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (int)v;
    return 0;
}

/* The typed getters: the variable read by parse, def when it is unset; a malformed value ends
 * the process through config_fail with what. */
#define CONFIG_GETTER(fn, type, parse, what)                                                       \
    type fn(const char *name, type def)                                                            \
    {                                                                                              \
        const char *s = config_str(name, NULL);                                                    \
        if (!s)                                                                                    \
            return def;                                                                            \
        type v;                                                                                    \
        if (parse(s, &v) != 0)                                                                     \
            config_fail(name, s, what);                                                            \
        return v;                                                                                  \
    }

CONFIG_GETTER(config_int, long, config_parse_long, "not an integer")
CONFIG_GETTER(config_bool, int, config_parse_bool,
              "not a boolean (1/0, true/false, yes/no, on/off)")
CONFIG_GETTER(config_size, size_t, config_parse_size,
              "not a size (bytes, or a number followed by k, m or g)")
CONFIG_GETTER(config_ms, long, config_parse_ms,
              "not a duration (a number followed by ms, s, m, h or d)")

#undef CONFIG_GETTER

size_t config_list(const char *s, char ***items)
{
    size_t n = 0;
    const char *p = s ? s : "";
    char **v = xcalloc(strlen(p) / 2 + 2, sizeof *v); /* at most one item per two bytes + 1 */
    while (*p) {
        size_t len = strcspn(p, ",");
        const char *b = p, *e = p + len;
        while (b < e && (*b == ' ' || *b == '\t'))
            b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (e > b)
            v[n++] = xstrndup(b, (size_t)(e - b));
        p += len;
        if (*p == ',')
            p++;
    }
    *items = v;
    return n;
}

void config_list_free(char **items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(items[i]);
    free(items);
}
