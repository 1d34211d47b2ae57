/* job: entries, results and the pure rules of the job runner (see job.h). */
#include "job.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

static const char *job_or_empty(const char *v)
{
    return v ? v : "";
}

int job_init(job *j, const char *id, const char *const *kv, size_t nkv)
{
    memset(j, 0, sizeof *j);
    atomic_init(&j->cancel, 0);
    if (strlen(id) >= sizeof j->id || nkv % 2)
        return -1;
    snprintf(j->id, sizeof j->id, "%s", id);
    j->fields = xcalloc(nkv ? nkv : 1, sizeof *j->fields);
    for (size_t i = 0; i < nkv; i++)
        j->fields[i] = xstrdup(kv[i] ? kv[i] : "");
    j->nfields = nkv / 2;
    j->doc = job_or_empty(job_field(j, "doc"));
    j->org = job_or_empty(job_field(j, "org"));
    j->file = job_or_empty(job_field(j, "file"));
    j->type = job_or_empty(job_field(j, "type"));
    j->sha256 = job_or_empty(job_field(j, "sha256"));
    j->name = job_or_empty(job_field(j, "name"));
    j->size = -1;
    const char *size = job_field(j, "size");
    if (size && *size) {
        char *end;
        errno = 0;
        long long v = strtoll(size, &end, 10);
        if (!*end && !errno && v >= 0)
            j->size = v;
    }
    return 0;
}

void job_release(job *j)
{
    for (size_t i = 0; j->fields && i < j->nfields * 2; i++)
        free(j->fields[i]);
    free(j->fields);
    j->fields = NULL;
    j->nfields = 0;
}

const char *job_field(const job *j, const char *name)
{
    for (size_t i = 0; i < j->nfields; i++)
        if (strcmp(j->fields[2 * i], name) == 0)
            return j->fields[2 * i + 1];
    return NULL;
}

int job_path(const job *j, char *out, size_t cap)
{
    const char *f = j->file;
    if (!*f || *f == '/' || strcmp(f, "..") == 0 || strncmp(f, "../", 3) == 0 ||
        strstr(f, "/../") || (strlen(f) >= 3 && strcmp(f + strlen(f) - 3, "/..") == 0))
        return -1;
    int n = snprintf(out, cap, "%s/%s", j->storage_dir ? j->storage_dir : ".", f);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int job_doc_ok(const char *doc)
{
    size_t n = strlen(doc);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((doc[i] >= 'a' && doc[i] <= 'z') || (doc[i] >= 'A' && doc[i] <= 'Z') ||
              (doc[i] >= '0' && doc[i] <= '9') || doc[i] == '-'))
            return 0;
    return 1;
}

uint64_t job_backoff_ms(uint64_t base_ms, unsigned deliveries, uint64_t cap_ms)
{
    if (deliveries < 1)
        deliveries = 1;
    uint64_t v = base_ms;
    for (unsigned i = 1; i < deliveries && v < cap_ms; i++)
        v *= 2;
    return v < cap_ms ? v : cap_ms;
}

static int job_u64(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 20)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int job_id_parse(const char *id, uint64_t *ms, uint64_t *seq)
{
    const char *dash = strchr(id, '-');
    if (!dash)
        return -1;
    return job_u64(id, (size_t)(dash - id), ms) || job_u64(dash + 1, strlen(dash + 1), seq) ? -1
                                                                                            : 0;
}

int job_id_next(const char *id, char *out, size_t cap)
{
    uint64_t ms, seq;
    if (job_id_parse(id, &ms, &seq) != 0)
        return -1;
    if (seq == UINT64_MAX) {
        if (ms == UINT64_MAX)
            return -1;
        ms++;
        seq = 0;
    } else {
        seq++;
    }
    int n = snprintf(out, cap, "%" PRIu64 "-%" PRIu64, ms, seq);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}
