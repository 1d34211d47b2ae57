/* test_runner: the job runner's pure rules (worker-ocr/job.c): the retry backoff schedule,
 * the fields of a stream entry, the path of a job's file, and the entry id after another
 * (XTRIM MINID); and when common/service_token renews a token. */
#include <stdlib.h>

#include "job.h"
#include "service_token.h"
#include "test.h"

static void backoff_doubles_and_caps(void)
{
    CHECK_INT(job_backoff_ms(2000, 0, 300000), 2000);
    CHECK_INT(job_backoff_ms(2000, 1, 300000), 2000);
    CHECK_INT(job_backoff_ms(2000, 2, 300000), 4000);
    CHECK_INT(job_backoff_ms(2000, 3, 300000), 8000);
    CHECK_INT(job_backoff_ms(2000, 4, 300000), 16000);
    CHECK_INT(job_backoff_ms(2000, 8, 300000), 256000);
    CHECK_INT(job_backoff_ms(2000, 9, 300000), 300000);
    CHECK_INT(job_backoff_ms(2000, 4000000000u, 300000), 300000); /* no overflow */
    CHECK_INT(job_backoff_ms(400000, 1, 300000), 300000);
}

static void entry_fields(void)
{
    const char *kv[] = {"doc",  "0b7c-1",    "org",  "o1",     "file",   "files/0b/0b7c-1",
                        "type", "image/png", "size", "1234",   "sha256", "ab",
                        "name", "scan.png",  "mode", "sleep:1"};
    job j;
    CHECK_INT(job_init(&j, "1700000000000-3", kv, 16), 0);
    CHECK_STR(j.id, "1700000000000-3");
    CHECK_STR(j.doc, "0b7c-1");
    CHECK_STR(j.org, "o1");
    CHECK_STR(j.file, "files/0b/0b7c-1");
    CHECK_STR(j.type, "image/png");
    CHECK_STR(j.name, "scan.png");
    CHECK_INT(j.size, 1234);
    CHECK_INT(j.nfields, 8);
    CHECK_STR(job_field(&j, "mode"), "sleep:1");
    CHECK(job_field(&j, "nothing") == NULL);
    char path[256];
    j.storage_dir = "/srv/storage";
    CHECK_INT(job_path(&j, path, sizeof path), 0);
    CHECK_STR(path, "/srv/storage/files/0b/0b7c-1");
    job_release(&j);

    const char *bad[] = {"doc", "d", "size", "-5", "file", "../etc/passwd"};
    CHECK_INT(job_init(&j, "1-0", bad, 6), 0);
    CHECK_INT(j.size, -1);
    CHECK_STR(j.org, ""); /* absent: empty, never NULL */
    CHECK_INT(job_path(&j, path, sizeof path), -1);
    job_release(&j);

    const char *odd[] = {"doc"};
    CHECK_INT(job_init(&j, "1-0", odd, 1), -1);
    job_release(&j);
    const char *files[][1] = {{"/etc/passwd"}, {"a/../../b"}, {"a/.."}, {""}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        const char *f[] = {"file", files[i][0]};
        CHECK_INT(job_init(&j, "1-0", f, 2), 0);
        CHECK_INT(job_path(&j, path, sizeof path), -1);
        job_release(&j);
    }
}

static void doc_ids(void)
{
    CHECK(job_doc_ok("6f1c2a0e-8d4b-4c55-9a3e-0b1d2c3e4f50"));
    CHECK(!job_doc_ok(""));
    CHECK(!job_doc_ok("../../auth"));
    CHECK(!job_doc_ok("a/b"));
    CHECK(!job_doc_ok("a?b"));
    CHECK(
        !job_doc_ok("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")); /* 65 */
}

static void entry_ids(void)
{
    char out[48];
    uint64_t ms, seq;
    CHECK_INT(job_id_parse("1700000000000-7", &ms, &seq), 0);
    CHECK_INT(ms, 1700000000000LL);
    CHECK_INT(seq, 7);
    CHECK_INT(job_id_next("1700000000000-7", out, sizeof out), 0);
    CHECK_STR(out, "1700000000000-8");
    CHECK_INT(job_id_next("0-0", out, sizeof out), 0);
    CHECK_STR(out, "0-1");
    CHECK_INT(job_id_next("5-18446744073709551615", out, sizeof out), 0);
    CHECK_STR(out, "6-0");
    CHECK_INT(job_id_next("18446744073709551615-18446744073709551615", out, sizeof out), -1);
    CHECK_INT(job_id_parse("17-", &ms, &seq), -1);
    CHECK_INT(job_id_parse("x-1", &ms, &seq), -1);
    CHECK_INT(job_id_parse("99999999999999999999999-1", &ms, &seq), -1);
    CHECK_INT(job_id_next("1-0", out, 3), -1); /* does not fit */
}

/* common/service_token.c: when a cached service token is renewed. */
static void token_margin(void)
{
    CHECK_INT(service_token_margin_ms(300000), 30000); /* 5 min: 30 s before */
    CHECK_INT(service_token_margin_ms(60000), 13000);
    CHECK_INT(service_token_margin_ms(4000), 1800);
    CHECK_INT(service_token_margin_ms(1000), 500); /* never the whole lifetime */
    CHECK_INT(service_token_margin_ms(0), 0);
}

int main(void)
{
    test_suite = "runner";
    RUN(backoff_doubles_and_caps);
    RUN(entry_fields);
    RUN(doc_ids);
    RUN(entry_ids);
    RUN(token_margin);
    return TEST_EXIT();
}
