/* test_storage_core: svc-storage's pure parts: the type sniffer, the file name sanitizer,
 * Content-Disposition, Range parsing, the streaming multipart parser (every split of a body
 * into two pieces and byte by byte, limits, malformed bodies) and the incremental SHA-256. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "crypto.h"
#include "docname.h"
#include "multipart.h"
#include "sniff.h"
#include "test.h"
#include "utf8.h"

static void test_sniff(void)
{
    CHECK_STR(sniff_type("\x89PNG\r\n\x1a\n", 8), "image/png");
    CHECK_STR(sniff_type("\xff\xd8\xff\xe0\0\x10JF", 8), "image/jpeg");
    CHECK_STR(sniff_type("II*\0\x08\0\0\0", 8), "image/tiff");
    CHECK_STR(sniff_type("MM\0*\0\0\0\x08", 8), "image/tiff");
    CHECK_STR(sniff_type("%PDF-1.7", 8), "application/pdf");
    CHECK_STR(sniff_type("%PDF-", 5), "application/pdf");
    CHECK(sniff_type("%PDF", 4) == NULL);
    CHECK(sniff_type("\x89PNG\r\n\x1a", 7) == NULL); /* a PNG cut short */
    CHECK(sniff_type("GIF89a..", 8) == NULL);
    CHECK(sniff_type("hello wo", 8) == NULL);
    CHECK(sniff_type("II*\x01....", 8) == NULL);
    CHECK(sniff_type("", 0) == NULL);
    CHECK(sniff_type("<svg xml", 8) == NULL);
}

static const char *san(const char *in)
{
    static char out[DOCNAME_MAX + 1];
    docname_sanitize(in, strlen(in), out, sizeof out);
    return out;
}

static void test_sanitize(void)
{
    CHECK_STR(san("scan.png"), "scan.png");
    CHECK_STR(san("../../etc/passwd"), "passwd");
    CHECK_STR(san("C:\\Users\\me\\doc.pdf"), "doc.pdf");
    CHECK_STR(san("dir/"), "document");
    CHECK_STR(san(""), "document");
    CHECK_STR(san(".."), "document");
    CHECK_STR(san("..."), "document");
    CHECK_STR(san(" .hidden. "), "hidden");
    CHECK_STR(san("a\"b'c.pdf"), "abc.pdf");
    CHECK_STR(san("line\r\nX-Evil: 1.pdf"), "lineX-Evil: 1.pdf");
    CHECK_STR(san("tab\there\x7f.pdf"), "tabhere.pdf");
    CHECK_STR(san("caf\xc3\xa9.pdf"), "caf\xc3\xa9.pdf");
    CHECK_STR(san("\xff\xfe.pdf"), "\xef\xbf\xbd\xef\xbf\xbd.pdf"); /* U+FFFD each */
    CHECK_STR(san("c1\xc2\x85x.pdf"), "c1x.pdf");                   /* NEL, a C1 control */
    char out[DOCNAME_MAX + 1];
    docname_sanitize("a\0b.pdf", 7, out, sizeof out);
    CHECK_STR(out, "a\xef\xbf\xbd"
                   "b.pdf");
    char longname[1000];
    for (int i = 0; i < 333; i++)
        memcpy(longname + 3 * i, "\xe2\x82\xac", 3); /* euro signs: 3 bytes each */
    docname_sanitize(longname, 999, out, sizeof out);
    CHECK_INT(strlen(out), 198); /* 66 whole characters, never a split one */
    CHECK(utf8_valid(out, strlen(out)));
}

static void test_disposition(void)
{
    char out[DOCNAME_DISPOSITION_MAX];
    docname_disposition("scan.png", out, sizeof out);
    CHECK_STR(out, "attachment; filename=\"scan.png\"; filename*=UTF-8''scan.png");
    docname_disposition("caf\xc3\xa9 100%.pdf", out, sizeof out);
    CHECK_STR(out,
              "attachment; filename=\"caf_ 100_.pdf\"; filename*=UTF-8''caf%C3%A9%20100%25.pdf");
    docname_disposition("a\\b;c=d.pdf", out, sizeof out);
    CHECK_STR(out, "attachment; filename=\"a_b;c=d.pdf\"; filename*=UTF-8''a%5Cb%3Bc%3Dd.pdf");
    char name[DOCNAME_MAX + 1];
    for (int i = 0; i < 50; i++)
        memcpy(name + 4 * i, "\xf0\x9f\x98\x80", 4);
    name[200] = '\0';
    docname_disposition(name, out, sizeof out);
    CHECK(strlen(out) < sizeof out);
    CHECK(strstr(out, "%F0%9F%98%80%F0%9F%98%80\0") != NULL);
    for (const char *p = out; *p; p++)
        CHECK(*p >= 0x20 && *p < 0x7f);
}

static void test_range(void)
{
    int64_t a = -1, b = -1;
    CHECK_INT(docname_range(NULL, 100, &a, &b), 0);
    CHECK_INT(docname_range("bytes=0-9", 100, &a, &b), 1);
    CHECK_INT(a, 0);
    CHECK_INT(b, 9);
    CHECK_INT(docname_range("bytes=90-", 100, &a, &b), 1);
    CHECK_INT(a, 90);
    CHECK_INT(b, 99);
    CHECK_INT(docname_range("bytes=-10", 100, &a, &b), 1);
    CHECK_INT(a, 90);
    CHECK_INT(b, 99);
    CHECK_INT(docname_range("bytes=-1000", 100, &a, &b), 1);
    CHECK_INT(a, 0);
    CHECK_INT(docname_range("bytes=50-1000", 100, &a, &b), 1);
    CHECK_INT(b, 99);
    CHECK_INT(docname_range("bytes=100-", 100, &a, &b), -1);
    CHECK_INT(docname_range("bytes=100-200", 100, &a, &b), -1);
    CHECK_INT(docname_range("bytes=-0", 100, &a, &b), -1);
    CHECK_INT(docname_range("bytes=0-1,3-4", 100, &a, &b), 0);
    CHECK_INT(docname_range("bytes=5-2", 100, &a, &b), 0);
    CHECK_INT(docname_range("bytes=", 100, &a, &b), 0);
    CHECK_INT(docname_range("bytes=-", 100, &a, &b), 0);
    CHECK_INT(docname_range("bytes=x-1", 100, &a, &b), 0);
    CHECK_INT(docname_range("items=0-1", 100, &a, &b), 0);
    CHECK_INT(docname_range("bytes=99999999999999999999-", 100, &a, &b), 0);
}

/* ---- multipart ---- */

typedef struct mp_seen {
    buf log; /* "part name|filename|type\n" "data..." "end\n" in order */
} mp_seen;

static int seen_part(void *ud, const mp_part *p)
{
    mp_seen *s = ud;
    buf_printf(&s->log, "part %s|%s%s|%s\n", p->name, p->has_filename ? "f:" : "", p->filename,
               p->content_type);
    return 0;
}

static int seen_data(void *ud, const char *d, size_t n)
{
    mp_seen *s = ud;
    buf_append(&s->log, d, n);
    return 0;
}

static int seen_end(void *ud)
{
    mp_seen *s = ud;
    buf_puts(&s->log, "\nend\n");
    return 0;
}

static const mp_callbacks seen_cb = {seen_part, seen_data, seen_end};

/* Parses body in pieces cut at the given positions; returns the log (caller frees) or NULL. */
static char *mp_run(const char *boundary, const char *body, size_t len, const size_t *cuts,
                    size_t ncuts, int *rc)
{
    mp_seen s = {0};
    mp_parser *p = mp_new(boundary, &seen_cb, &s);
    size_t pos = 0;
    *rc = 0;
    for (size_t i = 0; i <= ncuts && *rc == 0; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        *rc = mp_feed(p, body + pos, end - pos);
        pos = end;
    }
    if (*rc == 0)
        *rc = mp_finish(p);
    mp_free(p);
    buf_puts(&s.log, "");
    return buf_steal(&s.log);
}

static const char mp_body[] =
    "--AaB03x\r\n"
    "Content-Disposition: form-data; name=\"title\"\r\n"
    "\r\n"
    "My \r\r\n-- title\r\n"
    "--AaB03x\r\n"
    "content-disposition: form-data; name=file; filename=\"a \\\"b\\\".pdf\"\r\n"
    "Content-Type: application/pdf\r\n"
    "\r\n"
    "%PDF-1.4\r\n--AaB03\r\n--AaB03y\r\r\n\r\n-\r\n--AaB03x\r\n"
    "Content-Disposition: form-data; name=\"x\"; filename*=UTF-8''%E2%82%AC.png\r\n"
    "\r\n"
    "\r\n"
    "--AaB03x--\r\n"
    "epilogue ignored";

static const char mp_expected[] = "part title||\n"
                                  "My \r\r\n-- title"
                                  "\nend\n"
                                  "part file|f:a \"b\".pdf|application/pdf\n"
                                  "%PDF-1.4\r\n--AaB03\r\n--AaB03y\r\r\n\r\n-"
                                  "\nend\n"
                                  "part x|f:\xe2\x82\xac.png|\n"
                                  "\nend\n";

static void test_multipart_splits(void)
{
    size_t len = sizeof mp_body - 1;
    int rc;
    char *log = mp_run("AaB03x", mp_body, len, NULL, 0, &rc);
    CHECK_INT(rc, 0);
    CHECK_STR(log, mp_expected);
    free(log);
    int bad = 0;
    for (size_t cut = 0; cut <= len; cut++) {
        log = mp_run("AaB03x", mp_body, len, &cut, 1, &rc);
        bad += rc != 0 || strcmp(log, mp_expected) != 0;
        free(log);
    }
    CHECK_INT(bad, 0);
    size_t *cuts = malloc(len * sizeof *cuts);
    for (size_t i = 0; i < len; i++)
        cuts[i] = i;
    log = mp_run("AaB03x", mp_body, len, cuts, len, &rc);
    CHECK_INT(rc, 0);
    CHECK_STR(log, mp_expected);
    free(log);
    free(cuts);
}

static int mp_fails(const char *boundary, const char *body)
{
    int rc;
    free(mp_run(boundary, body, strlen(body), NULL, 0, &rc));
    return rc != 0;
}

static void test_multipart_strict(void)
{
    const char *ok = "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--b--";
    CHECK(!mp_fails("b", ok));
    CHECK(mp_fails("b",
                   "preamble\r\n--b\r\nContent-Disposition: form-data; name=a\r\n\r\n\r\n--b--"));
    CHECK(mp_fails("b", "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--b"));
    CHECK(mp_fails("b", "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx"));
    CHECK(mp_fails("b", "--b\r\n\r\nx\r\n--b--")); /* no disposition */
    CHECK(mp_fails("b", "--b\r\nContent-Disposition: attachment; name=a\r\n\r\n\r\n--b--"));
    CHECK(mp_fails("b", "--b\r\nContent-Disposition: form-data\r\n\r\n\r\n--b--")); /* no name */
    CHECK(mp_fails("b", "--b\nContent-Disposition: form-data; name=a\n\nx\r\n--b--"));
    CHECK(mp_fails("b", "--b\r\nContent-Disposition: form-data; name=a; name=b\r\n\r\n\r\n--b--"));
    CHECK(mp_fails(
        "b", "--b\r\nBad Header: x\r\nContent-Disposition: form-data; name=a\r\n\r\n\r\n--b--"));
    CHECK(mp_fails("b", "--bx\r\nContent-Disposition: form-data; name=a\r\n\r\n\r\n--b--"));
    CHECK(mp_fails("b", "--b\r\nContent-Disposition: form-data; name=\"a\r\n\r\n\r\n--b--"));
    /* transport padding after a boundary is allowed */
    CHECK(!mp_fails("b", "--b  \r\nContent-Disposition: form-data; name=a\r\n\r\n\r\n--b--"));
    /* limits: a header line, headers per part, parts (a body: head, n times piece, tail) */
#define MP_PART "\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--b"
    static const struct {
        const char *head, *piece;
        int n;
        const char *tail;
        int fails;
    } limits[] = {
        {"--b\r\nContent-Disposition: form-data; name=a\r\nX: ", "y", MP_MAX_HEADER_LINE,
         "\r\n\r\n\r\n--b--", 1},
        {"--b\r\nContent-Disposition: form-data; name=a\r\n", "X: 1\r\n", MP_MAX_HEADERS,
         "\r\n\r\n--b--", 1},
        {"--b", MP_PART, MP_MAX_PARTS + 1, "--", 1},
        {"--b", MP_PART, MP_MAX_PARTS, "--", 0},
    };
#undef MP_PART
    for (size_t k = 0; k < sizeof limits / sizeof limits[0]; k++) {
        buf big = {0};
        buf_puts(&big, limits[k].head);
        for (int i = 0; i < limits[k].n; i++)
            buf_puts(&big, limits[k].piece);
        buf_puts(&big, limits[k].tail);
        CHECK_INT(mp_fails("b", big.p) != 0, limits[k].fails);
        buf_free(&big);
    }
}

static int stop_part(void *ud, const mp_part *p)
{
    (void)ud;
    (void)p;
    return 1;
}

static void test_multipart_stop_and_boundary(void)
{
    mp_callbacks cb = {stop_part, NULL, NULL};
    mp_parser *p = mp_new("b", &cb, NULL);
    const char *body = "--b\r\nContent-Disposition: form-data; name=a\r\n\r\nxx";
    CHECK_INT(mp_feed(p, body, strlen(body)), -1);
    CHECK_STR(mp_error(p), "stopped");
    CHECK_INT(mp_feed(p, "x", 1), -1);
    mp_free(p);
    char b[MP_MAX_BOUNDARY + 1];
    CHECK_INT(mp_boundary("multipart/form-data; boundary=abc", b, sizeof b), 1);
    CHECK_STR(b, "abc");
    CHECK_INT(mp_boundary("Multipart/Form-Data; charset=utf-8; boundary=\"a b:c\"", b, sizeof b),
              1);
    CHECK_STR(b, "a b:c");
    CHECK_INT(mp_boundary("application/pdf", b, sizeof b), 0);
    CHECK_INT(mp_boundary(NULL, b, sizeof b), 0);
    CHECK_INT(mp_boundary("multipart/form-dataX; boundary=a", b, sizeof b), 0);
    CHECK_INT(mp_boundary("multipart/form-data", b, sizeof b), -1);
    CHECK_INT(mp_boundary("multipart/form-data; boundary=", b, sizeof b), -1);
    CHECK_INT(mp_boundary("multipart/form-data; boundary=a\"b", b, sizeof b), -1);
    CHECK_INT(mp_boundary("multipart/form-data; boundary=\"ab \"", b, sizeof b), -1);
    char lng[120];
    snprintf(lng, sizeof lng, "multipart/form-data; boundary=%071d", 0);
    CHECK_INT(mp_boundary(lng, b, sizeof b), -1);
}

static void test_sha256_incremental(void)
{
    char data[1000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)(i * 7);
    uint8_t one[32], inc[32];
    crypto_sha256(data, sizeof data, one);
    crypto_sha256_ctx *c = crypto_sha256_new();
    for (size_t i = 0; i < sizeof data; i += 37)
        crypto_sha256_update(c, data + i, sizeof data - i < 37 ? sizeof data - i : 37);
    crypto_sha256_finish(c, inc);
    CHECK(memcmp(one, inc, 32) == 0);
    crypto_sha256_free(crypto_sha256_new()); /* dropped unfinished */
    crypto_sha256_free(NULL);
}

int main(void)
{
    test_suite = "storage_core";
    crypto_init();
    RUN(test_sniff);
    RUN(test_sanitize);
    RUN(test_disposition);
    RUN(test_range);
    RUN(test_multipart_splits);
    RUN(test_multipart_strict);
    RUN(test_multipart_stop_and_boundary);
    RUN(test_sha256_incremental);
    return TEST_EXIT();
}
