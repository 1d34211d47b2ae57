/* scanner_xfer: the transfers of the scanner on libcurl's multi interface. Each file is
 * hashed (SHA-256), looked up with GET /documents?sha256= (skipped when the organization has
 * it), then sent as a raw body streamed from disk to POST /documents?filename=. Up to o->jobs
 * transfers run at once; 502/503/504 and connection errors are retried (3 tries in all)
 * after Retry-After or a doubling backoff. A 429 is the gateway's rate limit, not a failure:
 * it is waited out (Retry-After) without using a try, up to XFER_THROTTLED times a file. */
#include "scanner.h"

#include "buf.h"
#include "clock.h"
#include "crypto.h"
#include "curl_opts.h"
#include "xalloc.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XFER_TRIES       3
#define XFER_THROTTLED   100
#define XFER_BACKOFF_MS  1000
#define XFER_MAX_WAIT_MS 60000
#define XFER_BODY_MAX    65536
#define XFER_TICK_TTY_MS 200
#define XFER_TICK_MS     1000

typedef enum { XFER_CHECK, XFER_UPLOAD } xfer_phase;

typedef struct xfer {
    struct xfer *next; /* in the active or the waiting list */
    scanner_file *f;
    xfer_phase phase;
    int tries;     /* attempts of this phase started */
    int throttled; /* 429 answers waited out */
    CURL *easy;
    struct curl_slist *hdrs;
    FILE *in;
    buf body;
    curl_off_t sent;
    uint64_t due; /* waiting: not before this (monotonic ms) */
    char cerr[CURL_ERROR_SIZE];
} xfer;

/* The files' hashes seen in this scan: open addressing over file indexes + 1. */
typedef struct xfer_hashes {
    size_t *slot;
    size_t cap;
} xfer_hashes;

typedef struct xfer_run {
    const scanner_opts *o;
    scanner_files *fs;
    CURLM *multi;
    int active_n;
    xfer *active;
    xfer *waiting;
    char *auth; /* "Authorization: ApiKey ..." */
    xfer_hashes hashes;
} xfer_run;

/* ---- hashing and duplicates within the scan ---- */

static int xfer_hash_file(scanner_file *f, char *why, size_t whylen)
{
    FILE *in = fopen(f->path, "rbe");
    if (!in) {
        snprintf(why, whylen, "cannot read: %s", strerror(errno));
        return -1;
    }
    uint64_t size;
    int rc = crypto_sha256_file(in, f->sha256, &size);
    int e = errno;
    fclose(in);
    if (rc != 0) {
        snprintf(why, whylen, "cannot read: %s", strerror(e));
        return -1;
    }
    f->size = size;
    return 0;
}

/* The index of an earlier file with the same hash, or (size_t)-1 after remembering this one. */
static size_t xfer_hashes_find_or_add(xfer_run *r, size_t idx)
{
    xfer_hashes *t = &r->hashes;
    const char *sha = r->fs->v[idx].sha256;
    size_t h = 0;
    for (int i = 0; i < 16; i++)
        h = h * 16 + (size_t)crypto_hex_value((unsigned char)sha[i]);
    for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        if (!t->slot[i]) {
            t->slot[i] = idx + 1;
            return (size_t)-1;
        }
        if (strcmp(r->fs->v[t->slot[i] - 1].sha256, sha) == 0)
            return t->slot[i] - 1;
    }
}

/* ---- results ---- */

static void xfer_finish(scanner_file *f, scanner_result res, const char *detail)
{
    f->result = res;
    free(f->detail);
    f->detail = xstrdup(detail);
    scanner_out_file(f);
}

/* "HTTP 415 unsupported_media_type: message" from a JSON error body, else the status. */
static void xfer_http_reason(long status, const buf *body, char *out, size_t outlen)
{
    json_t *j = json_loadb(body->p ? body->p : "", body->len, 0, NULL);
    json_t *e = json_object_get(j, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (code && msg)
        snprintf(out, outlen, "HTTP %ld %s: %s", status, code, msg);
    else if (code)
        snprintf(out, outlen, "HTTP %ld %s", status, code);
    else
        snprintf(out, outlen, "HTTP %ld", status);
    json_decref(j);
}

/* ---- one transfer ---- */

static size_t xfer_write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    size_t n = size * nmemb;
    if (x->body.len + n <= XFER_BODY_MAX)
        buf_append(&x->body, data, n);
    return n;
}

static int xfer_progress_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                            curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    xfer *x = ud;
    x->sent = ulnow;
    return 0;
}

/* The URL-encoded file name (RFC 3986 unreserved kept). */
static void xfer_encode(buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            buf_append(b, p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            buf_append(b, e, 3);
        }
    }
}

static void xfer_release(xfer *x)
{
    if (x->easy)
        curl_easy_cleanup(x->easy);
    x->easy = NULL;
    curl_slist_free_all(x->hdrs);
    x->hdrs = NULL;
    if (x->in)
        fclose(x->in);
    x->in = NULL;
    buf_free(&x->body);
    x->sent = 0;
}

/* Starts the transfer of x's phase. 0, or -1 with the file failed. */
static int xfer_start(xfer_run *r, xfer *x)
{
    const scanner_opts *o = r->o;
    scanner_file *f = x->f;
    buf url = {0};
    buf_puts(&url, o->url);
    if (x->phase == XFER_CHECK) {
        buf_printf(&url, "/documents?sha256=%s", f->sha256);
    } else {
        const char *base = strrchr(f->path, '/');
        buf_puts(&url, "/documents?filename=");
        xfer_encode(&url, base ? base + 1 : f->path);
        x->in = fopen(f->path, "rbe");
        if (!x->in) {
            char why[256];
            snprintf(why, sizeof why, "cannot read: %s", strerror(errno));
            buf_free(&url);
            xfer_finish(f, SCANNER_FAILED, why);
            return -1;
        }
    }
    CURL *c = x->easy = curl_easy_init();
    if (!c) {
        buf_free(&url);
        xfer_finish(f, SCANNER_FAILED, "cannot create a curl handle");
        return -1;
    }
    x->tries++;
    x->cerr[0] = '\0';
    x->hdrs = curl_slist_append(x->hdrs, r->auth);
    x->hdrs = curl_slist_append(x->hdrs, "Accept: application/json");
    curl_opts_base(c, buf_str(&url), 10000L, 1L, 60L, x->cerr);
    curl_easy_setopt(c, CURLOPT_PRIVATE, x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, xfer_write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    if (o->cacert)
        curl_easy_setopt(c, CURLOPT_CAINFO, o->cacert);
    if (o->insecure) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (x->phase == XFER_UPLOAD) {
        x->hdrs = curl_slist_append(x->hdrs, "Content-Type: application/octet-stream");
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_opts_body_from(c, x->in);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)f->size);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, xfer_progress_cb);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, x->hdrs);
    buf_free(&url);
    if (curl_multi_add_handle(r->multi, c) != CURLM_OK) {
        xfer_release(x);
        xfer_finish(f, SCANNER_FAILED, "cannot start a transfer");
        return -1;
    }
    x->next = r->active;
    r->active = x;
    r->active_n++;
    return 0;
}

static void xfer_unlink_active(xfer_run *r, xfer *x)
{
    for (xfer **p = &r->active; *p; p = &(*p)->next) {
        if (*p == x) {
            *p = x->next;
            r->active_n--;
            return;
        }
    }
}

static int xfer_curl_retryable(CURLcode rc)
{
    static const CURLcode codes[] = {
        CURLE_COULDNT_CONNECT,    CURLE_SEND_ERROR,           CURLE_RECV_ERROR,
        CURLE_OPERATION_TIMEDOUT, CURLE_GOT_NOTHING,          CURLE_PARTIAL_FILE,
        CURLE_SSL_CONNECT_ERROR,  CURLE_COULDNT_RESOLVE_HOST, CURLE_HTTP2,
        CURLE_HTTP2_STREAM};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (codes[i] == rc)
            return 1;
    return 0;
}

static int xfer_status_retryable(long status)
{
    return status == 429 || status == 502 || status == 503 || status == 504;
}

/* Puts x on the waiting list for another try; its delay is Retry-After (capped) when the
 * server gave one, else 1 s doubling per try. */
static void xfer_retry_later(xfer_run *r, xfer *x, long retry_after_s, int throttled,
                             const char *why)
{
    uint64_t wait = (uint64_t)XFER_BACKOFF_MS << (x->tries > 1 ? x->tries - 1 : 0);
    if (retry_after_s > 0)
        wait = (uint64_t)retry_after_s * 1000u;
    if (wait > XFER_MAX_WAIT_MS)
        wait = XFER_MAX_WAIT_MS;
    x->due = clock_mono_ms() + wait;
    scanner_out_retry(x->f, why, throttled ? 0 : x->tries + 1, XFER_TRIES, wait);
    x->next = r->waiting;
    r->waiting = x;
}

/* The first document's id in a {"data":[...]} answer, "" for an empty list, NULL when
 * the answer is not such a list. */
static const char *xfer_first_doc(json_t *j)
{
    json_t *docs = json_object_get(j, "data");
    if (!json_is_array(docs))
        return NULL;
    if (json_array_size(docs) == 0)
        return "";
    const char *id = json_string_value(json_object_get(json_array_get(docs, 0), "id"));
    return id ? id : "?";
}

/* A finished check: skip, stop (dry run) or go on to the upload. */
static void xfer_checked(xfer_run *r, xfer *x, long status)
{
    char why[512];
    if (status != 200) {
        xfer_http_reason(status, &x->body, why, sizeof why);
        xfer_finish(x->f, SCANNER_FAILED, why);
        xfer_release(x);
        free(x);
        return;
    }
    json_t *j = json_loadb(buf_str(&x->body), x->body.len, 0, NULL);
    const char *id = xfer_first_doc(j);
    if (!id)
        xfer_finish(x->f, SCANNER_FAILED, "GET /documents: not a list of documents");
    else if (*id)
        xfer_finish(x->f, SCANNER_SKIPPED, id);
    else if (r->o->dry_run)
        xfer_finish(x->f, SCANNER_WOULD_UPLOAD, NULL);
    json_decref(j);
    xfer_release(x);
    if (x->f->result != SCANNER_PENDING) {
        free(x);
        return;
    }
    x->phase = XFER_UPLOAD;
    x->tries = 0;
    if (xfer_start(r, x) != 0)
        free(x);
}

static void xfer_uploaded(xfer *x, long status)
{
    char why[512];
    json_t *j = json_loadb(buf_str(&x->body), x->body.len, 0, NULL);
    const char *id = json_string_value(json_object_get(j, "id"));
    if (status == 201 && id) {
        xfer_finish(x->f, SCANNER_UPLOADED, id);
    } else if (status == 200 && id && json_is_true(json_object_get(j, "duplicate"))) {
        snprintf(why, sizeof why, "already stored as %s", id);
        xfer_finish(x->f, SCANNER_DUPLICATE, why);
    } else {
        xfer_http_reason(status, &x->body, why, sizeof why);
        xfer_finish(x->f, SCANNER_FAILED, why);
    }
    json_decref(j);
    xfer_release(x);
    free(x);
}

static void xfer_done(xfer_run *r, xfer *x, CURLcode rc)
{
    xfer_unlink_active(r, x);
    curl_multi_remove_handle(r->multi, x->easy);
    long status = 0;
    curl_off_t retry_after = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(x->easy, CURLINFO_RETRY_AFTER, &retry_after);
    const char *what = x->phase == XFER_CHECK ? "GET /documents" : "POST /documents";
    char why[512];
    if (rc != CURLE_OK) {
        snprintf(why, sizeof why, "%s: %s", what, x->cerr[0] ? x->cerr : curl_easy_strerror(rc));
        if (rc == CURLE_ABORTED_BY_CALLBACK || rc == CURLE_READ_ERROR)
            snprintf(why, sizeof why, "cannot read the file while sending it");
        if (xfer_curl_retryable(rc) && x->tries < XFER_TRIES) {
            xfer_release(x);
            xfer_retry_later(r, x, 0, 0, why);
            return;
        }
        xfer_release(x);
        xfer_finish(x->f, SCANNER_FAILED, why);
        free(x);
        return;
    }
    int throttled = status == 429 && x->throttled < XFER_THROTTLED;
    if (throttled) {
        x->throttled++;
        x->tries--; /* not a try used: the same try again once allowed */
    }
    if (xfer_status_retryable(status) && (throttled || x->tries < XFER_TRIES)) {
        char reason[400];
        xfer_http_reason(status, &x->body, reason, sizeof reason);
        snprintf(why, sizeof why, "%s: %s", what, reason);
        xfer_release(x);
        xfer_retry_later(r, x, (long)retry_after, throttled, why);
        return;
    }
    if (x->phase == XFER_CHECK)
        xfer_checked(r, x, status);
    else
        xfer_uploaded(x, status);
}

/* ---- the loop ---- */

/* Hashes the next pending file and starts its check; 0 when nothing was started for it. */
static int xfer_begin_file(xfer_run *r, size_t idx)
{
    scanner_file *f = &r->fs->v[idx];
    if (f->result != SCANNER_PENDING)
        return 0;
    char why[256];
    if (xfer_hash_file(f, why, sizeof why) != 0) {
        xfer_finish(f, SCANNER_FAILED, why);
        return 0;
    }
    size_t first = xfer_hashes_find_or_add(r, idx);
    if (first != (size_t)-1) {
        snprintf(why, sizeof why, "same bytes as %s", r->fs->v[first].rel);
        xfer_finish(f, SCANNER_DUPLICATE, why);
        return 0;
    }
    xfer *x = xcalloc(1, sizeof *x);
    x->f = f;
    x->phase = XFER_CHECK;
    if (xfer_start(r, x) != 0) {
        free(x);
        return 0;
    }
    return 1;
}

/* Starts the retries that are due; returns ms until the next one (-1: none waiting). */
static long xfer_start_due(xfer_run *r)
{
    uint64_t now = clock_mono_ms();
    long next = -1;
    xfer **p = &r->waiting;
    while (*p) {
        xfer *x = *p;
        if (x->due <= now && r->active_n < r->o->jobs) {
            *p = x->next;
            if (xfer_start(r, x) != 0)
                free(x);
            continue;
        }
        long left = x->due > now ? (long)(x->due - now) : 0;
        if (next < 0 || left < next)
            next = left;
        p = &x->next;
    }
    return next;
}

int scanner_transfer(const scanner_opts *o, scanner_files *fs)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -1;
    xfer_run r = {.o = o, .fs = fs};
    r.multi = curl_multi_init();
    if (!r.multi) {
        curl_global_cleanup();
        return -1;
    }
    size_t keylen = strlen(o->api_key) + 32;
    r.auth = xmalloc(keylen);
    snprintf(r.auth, keylen, "Authorization: ApiKey %s", o->api_key);
    r.hashes.cap = 16;
    while (r.hashes.cap < fs->n * 2)
        r.hashes.cap *= 2;
    r.hashes.slot = xcalloc(r.hashes.cap, sizeof *r.hashes.slot);

    size_t next = 0;
    for (;;) {
        long wait = xfer_start_due(&r);
        while (r.active_n < o->jobs && next < fs->n)
            xfer_begin_file(&r, next++);
        if (r.active_n == 0 && !r.waiting && next >= fs->n)
            break;
        int running = 0;
        curl_multi_perform(r.multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(r.multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            xfer *x = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            xfer_done(&r, x, m->data.result);
        }
        uint64_t inflight = 0;
        for (xfer *x = r.active; x; x = x->next)
            inflight += (uint64_t)x->sent;
        scanner_out_progress(inflight);
        long tick = o->tty ? XFER_TICK_TTY_MS : XFER_TICK_MS;
        if (wait >= 0 && wait < tick)
            tick = wait;
        if (r.active_n > 0)
            curl_multi_poll(r.multi, NULL, 0, (int)tick, NULL);
        else if (r.waiting && next >= fs->n)
            curl_multi_poll(r.multi, NULL, 0, (int)(wait > 0 ? wait : 1), NULL);
    }
    size_t klen = strlen(r.auth);
    memset(r.auth, 0, klen);
    free(r.auth);
    free(r.hashes.slot);
    curl_multi_cleanup(r.multi);
    curl_global_cleanup();
    return 0;
}
