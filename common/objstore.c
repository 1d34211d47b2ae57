/* objstore: the archive backends behind common/objstore.h. file:// copies into a directory
 * (temp name, fsync, rename); s3:// talks path-style HTTP to S3_ENDPOINT through libcurl,
 * signed with CURLOPT_AWS_SIGV4. libcurl 7.88 does not send x-amz-content-sha256 itself and a
 * checking server then rejects the signature, so every request carries it: the file's real
 * SHA-256 for PUT (hashed in a first pass), the empty body's hash otherwise. */
#include "objstore.h"

#include "config.h"
#include "crypto.h"
#include "curl_opts.h"
#include "xalloc.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OBJSTORE_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define OBJSTORE_KEY_PART_MAX 128
#define OBJSTORE_IO_CHUNK     65536

typedef enum { OBJSTORE_FILE, OBJSTORE_S3 } objstore_kind;

struct objstore {
    objstore_kind kind;
    char *dir;      /* file: absolute directory, no trailing '/' */
    char *bucket;   /* s3 */
    char *endpoint; /* s3: scheme://host[:port], no trailing '/' */
    char *sigv4;    /* "aws:amz:REGION:s3" */
    char *access_key;
    char *secret_key;
};

static int objstore_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int objstore_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- keys ---- */

static int objstore_part_valid(const char *p, size_t n)
{
    if (n == 0 || n > OBJSTORE_KEY_PART_MAX || p[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        int ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok || (c == '.' && i + 1 < n && p[i + 1] == '.'))
            return 0;
    }
    return 1;
}

int objstore_key_valid(const char *key)
{
    if (!key)
        return 0;
    const char *slash = strchr(key, '/');
    if (!slash)
        return 0;
    return objstore_part_valid(key, (size_t)(slash - key)) &&
           objstore_part_valid(slash + 1, strlen(slash + 1));
}

/* ---- configuration ---- */

static pthread_once_t objstore_curl_once = PTHREAD_ONCE_INIT;
static CURLcode objstore_curl_rc;

static void objstore_curl_init(void)
{
    objstore_curl_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* path made absolute against the working directory, trailing slashes dropped. */
static char *objstore_abs_dir(const char *path)
{
    char *out;
    if (path[0] == '/') {
        out = xstrdup(path);
    } else {
        char cwd[4096];
        if (!getcwd(cwd, sizeof cwd))
            return NULL;
        size_t n = strlen(cwd) + strlen(path) + 2;
        out = xmalloc(n);
        snprintf(out, n, "%s/%s", cwd, path);
    }
    size_t len = strlen(out);
    while (len > 1 && out[len - 1] == '/')
        out[--len] = '\0';
    return out;
}

static int objstore_bucket_valid(const char *b)
{
    size_t n = strlen(b);
    if (n < 3 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

static int objstore_s3_config(objstore *s, const char *bucket, char *err, size_t errlen)
{
    size_t blen = strcspn(bucket, "/");
    s->bucket = xstrndup(bucket, blen);
    /* "s3://bucket" or "s3://bucket/", no prefix */
    int extra = bucket[blen] == '/' && bucket[blen + 1] != '\0';
    if (!objstore_bucket_valid(s->bucket) || extra)
        return objstore_fail(err, errlen,
                             "ARCHIVE_URL: \"s3://%s\" is not s3://bucket (3-63 of a-z 0-9 . -)",
                             bucket);
    const char *region = config_str("S3_REGION", "us-east-1");
    if (!region || !*region)
        return objstore_fail(err, errlen, "S3_REGION is empty");
    for (const char *p = region; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            return objstore_fail(err, errlen, "S3_REGION: \"%s\" is not a region name", region);
    size_t n = strlen(region) + 16;
    s->sigv4 = xmalloc(n);
    snprintf(s->sigv4, n, "aws:amz:%s:s3", region);

    const char *ep = config_str("S3_ENDPOINT", NULL);
    if (ep && *ep) {
        if (strncmp(ep, "http://", 7) != 0 && strncmp(ep, "https://", 8) != 0)
            return objstore_fail(err, errlen, "S3_ENDPOINT: \"%s\" is not http(s)://host[:port]",
                                 ep);
        s->endpoint = xstrdup(ep);
    } else {
        n = strlen(region) + 32;
        s->endpoint = xmalloc(n);
        snprintf(s->endpoint, n, "https://s3.%s.amazonaws.com", region);
    }
    size_t len = strlen(s->endpoint);
    while (len && s->endpoint[len - 1] == '/')
        s->endpoint[--len] = '\0';

    const char *ak = config_str("S3_ACCESS_KEY_ID", NULL);
    const char *sk = config_str("S3_SECRET_ACCESS_KEY", NULL);
    if (!ak || !*ak)
        return objstore_fail(err, errlen, "S3_ACCESS_KEY_ID (or S3_ACCESS_KEY_ID_FILE) is not set");
    if (!sk || !*sk)
        return objstore_fail(err, errlen,
                             "S3_SECRET_ACCESS_KEY (or S3_SECRET_ACCESS_KEY_FILE) is not set");
    s->access_key = xstrdup(ak);
    s->secret_key = xstrdup(sk);
    return 0;
}

objstore *objstore_new_from_env(const char *storage_dir, char *err, size_t errlen)
{
    objstore *s = xcalloc(1, sizeof *s);
    const char *url = config_str("ARCHIVE_URL", NULL);
    int rc = 0;
    if (!url || !*url) {
        const char *sd = storage_dir && *storage_dir ? storage_dir : "var/storage";
        size_t n = strlen(sd) + sizeof "/archive";
        char *d = xmalloc(n);
        snprintf(d, n, "%s/archive", sd);
        s->kind = OBJSTORE_FILE;
        s->dir = objstore_abs_dir(d);
        free(d);
        if (!s->dir)
            rc = objstore_fail(err, errlen, "archive: cannot resolve the working directory");
    } else if (strncmp(url, "file://", 7) == 0) {
        s->kind = OBJSTORE_FILE;
        if (url[7] != '/' || url[8] == '\0')
            rc = objstore_fail(err, errlen, "ARCHIVE_URL: \"%s\" is not file:///absolute/dir", url);
        else
            s->dir = objstore_abs_dir(url + 7);
    } else if (strncmp(url, "s3://", 5) == 0) {
        s->kind = OBJSTORE_S3;
        rc = objstore_s3_config(s, url + 5, err, errlen);
        if (rc == 0) {
            pthread_once(&objstore_curl_once, objstore_curl_init);
            if (objstore_curl_rc != CURLE_OK)
                rc =
                    objstore_fail(err, errlen, "libcurl: %s", curl_easy_strerror(objstore_curl_rc));
        }
    } else {
        rc = objstore_fail(err, errlen,
                           "ARCHIVE_URL: \"%s\" is neither file:///dir nor s3://bucket", url);
    }
    if (rc != 0) {
        objstore_free(s);
        return NULL;
    }
    return s;
}

void objstore_free(objstore *s)
{
    if (!s)
        return;
    free(s->dir);
    free(s->bucket);
    free(s->endpoint);
    free(s->sigv4);
    free(s->access_key);
    if (s->secret_key) {
        memset(s->secret_key, 0, strlen(s->secret_key));
        free(s->secret_key);
    }
    free(s);
}

/* ---- file:// ---- */

static int objstore_write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Copies the open file in to the open file out; the bytes copied in *copied. 0 or -1 (errno;
 * *which says which side failed). */
static int objstore_copy_fd(int in, int out, uint64_t *copied, const char **which)
{
    char *buf = xmalloc(OBJSTORE_IO_CHUNK);
    int rc = 0;
    *copied = 0;
    for (;;) {
        ssize_t r = read(in, buf, OBJSTORE_IO_CHUNK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            *which = "read";
            rc = -1;
            break;
        }
        if (r == 0)
            break;
        if (objstore_write_all(out, buf, (size_t)r) != 0) {
            *which = "write";
            rc = -1;
            break;
        }
        *copied += (uint64_t)r;
    }
    free(buf);
    return rc;
}

/* mkdir -p of path's parent directories up to and including dir. */
static int objstore_mkdirs(const char *dir)
{
    char *p = xstrdup(dir);
    int rc = 0;
    for (char *q = p + 1;; q++) {
        if (*q == '/' || *q == '\0') {
            char c = *q;
            *q = '\0';
            if (mkdir(p, 0750) != 0 && errno != EEXIST) {
                rc = -1;
                break;
            }
            *q = c;
            if (c == '\0')
                break;
        }
    }
    int saved = errno;
    free(p);
    errno = saved;
    return rc;
}

/* Makes a rename in path's folder durable (best effort: the data is already synced). */
static void objstore_sync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path)
        return;
    char *dir = xstrndup(path, (size_t)(slash - path));
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

static char *objstore_file_path(const objstore *s, const char *key)
{
    size_t n = strlen(s->dir) + strlen(key) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", s->dir, key);
    return p;
}

static int objstore_file_put(objstore *s, const char *key, const char *path, char *location,
                             size_t loclen, char *err, size_t errlen)
{
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return objstore_fail(err, errlen, "archive: cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(in);
        return objstore_fail(err, errlen, "archive: %s is not a regular file", path);
    }
    char *dest = objstore_file_path(s, key);
    char *slash = strrchr(dest, '/');
    *slash = '\0';
    int rc = -1;
    char *tmp = NULL;
    if (objstore_mkdirs(dest) != 0) {
        objstore_fail(err, errlen, "archive: cannot create %s: %s", dest, strerror(errno));
        goto out;
    }
    size_t n = strlen(dest) + strlen(slash + 1) + 16;
    tmp = xmalloc(n);
    snprintf(tmp, n, "%s/.%s.XXXXXX", dest, slash + 1);
    *slash = '/';
    int out = mkstemp(tmp);
    if (out < 0) {
        objstore_fail(err, errlen, "archive: cannot create a file in %s: %s", s->dir,
                      strerror(errno));
        goto out;
    }
    uint64_t copied = 0;
    const char *which = "";
    if (objstore_copy_fd(in, out, &copied, &which) != 0) {
        objstore_fail(err, errlen, "archive: %s failed copying %s: %s", which, path,
                      strerror(errno));
    } else if (copied != (uint64_t)st.st_size) {
        objstore_fail(err, errlen, "archive: %s changed size while copied (%llu of %llu bytes)",
                      path, (unsigned long long)copied, (unsigned long long)st.st_size);
    } else if (fchmod(out, 0640) != 0 || fsync(out) != 0) {
        objstore_fail(err, errlen, "archive: cannot sync %s: %s", tmp, strerror(errno));
    } else if (close(out) != 0 || (out = -1, rename(tmp, dest) != 0)) {
        out = -1;
        objstore_fail(err, errlen, "archive: cannot write %s: %s", dest, strerror(errno));
    } else {
        rc = 0;
        objstore_sync_parent(dest);
    }
    if (out >= 0)
        close(out);
    if (rc != 0)
        unlink(tmp);
    else if ((size_t)snprintf(location, loclen, "file://%s", dest) >= loclen)
        rc = objstore_fail(err, errlen, "archive: location longer than %zu bytes", loclen);
out:
    close(in);
    free(tmp);
    free(dest);
    return rc;
}

static char *objstore_tmp_name(const char *dest_path)
{
    size_t n = strlen(dest_path) + sizeof ".tmp";
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp", dest_path);
    return tmp;
}

/* Flushes, syncs and closes fd, then renames tmp to dest. 0, or -1 with errno. */
static int objstore_commit(int fd, const char *tmp, const char *dest)
{
    int rc = fsync(fd);
    int saved = errno;
    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        saved = errno;
    }
    if (rc == 0 && rename(tmp, dest) != 0) {
        rc = -1;
        saved = errno;
    }
    errno = saved;
    return rc;
}

static int objstore_file_get(objstore *s, const char *key, const char *dest_path, char *err,
                             size_t errlen)
{
    char *src = objstore_file_path(s, key);
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        int e = errno;
        free(src);
        if (e == ENOENT)
            return 1;
        return objstore_fail(err, errlen, "archive: cannot open %s: %s", key, strerror(e));
    }
    char *tmp = objstore_tmp_name(dest_path);
    int rc = -1;
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    uint64_t copied;
    const char *which = "";
    if (out < 0) {
        objstore_fail(err, errlen, "archive: cannot create %s: %s", tmp, strerror(errno));
    } else if (objstore_copy_fd(in, out, &copied, &which) != 0) {
        objstore_fail(err, errlen, "archive: %s failed copying %s: %s", which, key,
                      strerror(errno));
        close(out);
        unlink(tmp);
    } else if (objstore_commit(out, tmp, dest_path) != 0) {
        objstore_fail(err, errlen, "archive: cannot write %s: %s", dest_path, strerror(errno));
        unlink(tmp);
    } else {
        rc = 0;
    }
    close(in);
    free(tmp);
    free(src);
    return rc;
}

static int objstore_file_delete(objstore *s, const char *key, char *err, size_t errlen)
{
    char *p = objstore_file_path(s, key);
    int rc = 0;
    if (unlink(p) != 0 && errno != ENOENT)
        rc = objstore_fail(err, errlen, "archive: cannot delete %s: %s", key, strerror(errno));
    free(p);
    return rc;
}

/* ---- s3:// ---- */

typedef struct objstore_req {
    const char *method; /* PUT GET HEAD DELETE */
    const char *key;
    FILE *in;           /* PUT: the body */
    curl_off_t in_size; /* PUT */
    char sha256[65];    /* x-amz-content-sha256 */
    int out_fd;         /* GET: where a 2xx body goes, else -1 */
    int out_failed;     /* errno of a failed write to out_fd */
    CURL *curl;
    long status;
    curl_off_t length; /* Content-Length of the answer (HEAD) */
    char body[2048];   /* a non-2xx answer's body, truncated */
    size_t body_len;
} objstore_req;

static size_t objstore_write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
    objstore_req *r = ud;
    size_t n = size * nmemb;
    long status = 0;
    curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300 && r->out_fd >= 0) {
        if (objstore_write_all(r->out_fd, data, n) != 0) {
            r->out_failed = errno ? errno : EIO;
            return 0;
        }
        return n;
    }
    size_t room = sizeof r->body - 1 - r->body_len;
    size_t take = n < room ? n : room;
    memcpy(r->body + r->body_len, data, take);
    r->body_len += take;
    r->body[r->body_len] = '\0';
    return n;
}

/* The text of <tag>...</tag> in the error body, or "" when absent. */
static void objstore_xml_field(const char *body, const char *tag, char *out, size_t outlen)
{
    char open_tag[32], close_tag[32];
    snprintf(open_tag, sizeof open_tag, "<%s>", tag);
    snprintf(close_tag, sizeof close_tag, "</%s>", tag);
    out[0] = '\0';
    const char *a = strstr(body, open_tag);
    if (!a)
        return;
    a += strlen(open_tag);
    const char *b = strstr(a, close_tag);
    if (!b)
        return;
    size_t n = (size_t)(b - a);
    if (n >= outlen)
        n = outlen - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (a[i] >= 0x20 && a[i] < 0x7f) ? a[i] : ' ';
    out[n] = '\0';
}

/* Runs one request; 0 when it got an HTTP answer (r->status), -1 with err otherwise. */
static int objstore_s3_perform(objstore *s, objstore_req *r, char *err, size_t errlen)
{
    CURL *c = curl_easy_init();
    if (!c)
        return objstore_fail(err, errlen, "S3 %s: cannot create a curl handle", r->method);
    r->curl = c;
    size_t ulen = strlen(s->endpoint) + strlen(s->bucket) + strlen(r->key) + 3;
    char *url = xmalloc(ulen);
    snprintf(url, ulen, "%s/%s/%s", s->endpoint, s->bucket, r->key);
    char hdr[128];
    snprintf(hdr, sizeof hdr, "x-amz-content-sha256: %s", r->sha256);
    struct curl_slist *headers = curl_slist_append(NULL, hdr);
    char cerr[CURL_ERROR_SIZE] = "";

    curl_opts_base(c, url, 5000L, 1024L, 30L, cerr);
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, s->sigv4);
    curl_easy_setopt(c, CURLOPT_USERNAME, s->access_key);
    curl_easy_setopt(c, CURLOPT_PASSWORD, s->secret_key);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, objstore_write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    if (strcmp(r->method, "PUT") == 0) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_opts_body_from(c, r->in);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, r->in_size);
    } else if (strcmp(r->method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(r->method, "DELETE") == 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
    }

    CURLcode rc = curl_easy_perform(c);
    int ret = 0;
    if (rc != CURLE_OK) {
        if (r->out_failed)
            ret = objstore_fail(err, errlen, "S3 %s %s/%s: cannot write the download: %s",
                                r->method, s->bucket, r->key, strerror(r->out_failed));
        else
            ret = objstore_fail(err, errlen, "S3 %s %s/%s: %s", r->method, s->bucket, r->key,
                                cerr[0] ? cerr : curl_easy_strerror(rc));
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &r->length);
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    r->curl = NULL;
    free(url);
    return ret;
}

/* The error for a non-2xx answer: status, S3 error code and message (never the secret). */
static int objstore_s3_status_error(objstore *s, const objstore_req *r, char *err, size_t errlen)
{
    char code[64], msg[256];
    objstore_xml_field(r->body, "Code", code, sizeof code);
    objstore_xml_field(r->body, "Message", msg, sizeof msg);
    if (strstr(msg, s->secret_key))
        msg[0] = '\0';
    return objstore_fail(err, errlen, "S3 %s %s/%s: HTTP %ld%s%s%s%s", r->method, s->bucket, r->key,
                         r->status, code[0] ? " " : "", code, msg[0] ? ": " : "", msg);
}

static int objstore_is_2xx(long status)
{
    return status >= 200 && status < 300;
}

static void objstore_req_init(objstore_req *r, const char *method, const char *key)
{
    memset(r, 0, sizeof *r);
    r->method = method;
    r->key = key;
    r->out_fd = -1;
    memcpy(r->sha256, OBJSTORE_EMPTY_SHA256, sizeof r->sha256);
}

/* The SHA-256 (hex) and size of the open file, read to its end. 0 or -1 (errno). */
static int objstore_hash_file(FILE *f, char hex[65], curl_off_t *size)
{
    uint64_t n;
    if (crypto_sha256_file(f, hex, &n) != 0)
        return -1;
    *size = (curl_off_t)n;
    return 0;
}

static int objstore_s3_put(objstore *s, const char *key, const char *path, char *location,
                           size_t loclen, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rbe");
    if (!f)
        return objstore_fail(err, errlen, "archive: cannot open %s: %s", path, strerror(errno));
    objstore_req r;
    objstore_req_init(&r, "PUT", key);
    int rc = -1;
    if (objstore_hash_file(f, r.sha256, &r.in_size) != 0 || fseek(f, 0, SEEK_SET) != 0) {
        objstore_fail(err, errlen, "archive: cannot read %s: %s", path, strerror(errno));
        goto out;
    }
    r.in = f;
    if (objstore_s3_perform(s, &r, err, errlen) != 0)
        goto out;
    if (!objstore_is_2xx(r.status)) {
        objstore_s3_status_error(s, &r, err, errlen);
        goto out;
    }
    curl_off_t want = r.in_size;
    objstore_req_init(&r, "HEAD", key);
    if (objstore_s3_perform(s, &r, err, errlen) != 0)
        goto out;
    if (!objstore_is_2xx(r.status)) {
        objstore_s3_status_error(s, &r, err, errlen);
        goto out;
    }
    if (r.length != want) {
        objstore_fail(err, errlen, "S3 PUT %s/%s: stored %lld bytes, sent %lld", s->bucket, key,
                      (long long)r.length, (long long)want);
        goto out;
    }
    if ((size_t)snprintf(location, loclen, "s3://%s/%s", s->bucket, key) >= loclen) {
        objstore_fail(err, errlen, "archive: location longer than %zu bytes", loclen);
        goto out;
    }
    rc = 0;
out:
    fclose(f);
    return rc;
}

static int objstore_s3_get(objstore *s, const char *key, const char *dest_path, char *err,
                           size_t errlen)
{
    char *tmp = objstore_tmp_name(dest_path);
    objstore_req r;
    objstore_req_init(&r, "GET", key);
    int rc = -1;
    r.out_fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (r.out_fd < 0) {
        objstore_fail(err, errlen, "archive: cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    if (objstore_s3_perform(s, &r, err, errlen) != 0) {
        /* err set */
    } else if (objstore_is_2xx(r.status)) {
        int fd = r.out_fd;
        r.out_fd = -1;
        if (objstore_commit(fd, tmp, dest_path) == 0)
            rc = 0;
        else
            objstore_fail(err, errlen, "archive: cannot write %s: %s", dest_path, strerror(errno));
    } else {
        char code[64];
        objstore_xml_field(r.body, "Code", code, sizeof code);
        if (r.status == 404 && strcmp(code, "NoSuchKey") == 0)
            rc = 1;
        else
            objstore_s3_status_error(s, &r, err, errlen);
    }
    if (r.out_fd >= 0)
        close(r.out_fd);
    if (rc != 0)
        unlink(tmp);
    free(tmp);
    return rc;
}

static int objstore_s3_delete(objstore *s, const char *key, char *err, size_t errlen)
{
    objstore_req r;
    objstore_req_init(&r, "DELETE", key);
    if (objstore_s3_perform(s, &r, err, errlen) != 0)
        return -1;
    if (objstore_is_2xx(r.status))
        return 0;
    char code[64];
    objstore_xml_field(r.body, "Code", code, sizeof code);
    if (r.status == 404 && strcmp(code, "NoSuchKey") == 0)
        return 0;
    return objstore_s3_status_error(s, &r, err, errlen);
}

/* ---- the interface ---- */

static int objstore_check_key(const char *key, char *err, size_t errlen)
{
    if (objstore_key_valid(key))
        return 0;
    return objstore_fail(err, errlen, "archive: invalid key (want <org>/<doc> of [0-9a-zA-Z._-])");
}

int objstore_put_file(objstore *s, const char *key, const char *path, char *location, size_t loclen,
                      char *err, size_t errlen)
{
    if (objstore_check_key(key, err, errlen) != 0)
        return -1;
    if (s->kind == OBJSTORE_S3)
        return objstore_s3_put(s, key, path, location, loclen, err, errlen);
    return objstore_file_put(s, key, path, location, loclen, err, errlen);
}

int objstore_get_file(objstore *s, const char *key, const char *dest_path, char *err, size_t errlen)
{
    if (objstore_check_key(key, err, errlen) != 0)
        return -1;
    if (s->kind == OBJSTORE_S3)
        return objstore_s3_get(s, key, dest_path, err, errlen);
    return objstore_file_get(s, key, dest_path, err, errlen);
}

int objstore_delete(objstore *s, const char *key, char *err, size_t errlen)
{
    if (objstore_check_key(key, err, errlen) != 0)
        return -1;
    if (s->kind == OBJSTORE_S3)
        return objstore_s3_delete(s, key, err, errlen);
    return objstore_file_delete(s, key, err, errlen);
}
