/* test_utf8: utf8_sanitize against the replacement the Unicode standard recommends (one
 * U+FFFD per maximal ill-formed subpart, as Python's bytes.decode("utf-8", "replace") does),
 * truncation on character boundaries, and utf8_valid. */
#include "utf8.h"
#include "test.h"

#define R "\xEF\xBF\xBD"

static void sanitize_is(const char *in, size_t len, size_t cap, const char *want)
{
    char out[1024];
    size_t n = utf8_sanitize(out, cap, in, len);
    CHECK_STR(out, want);
    CHECK_INT(n, strlen(want));
    CHECK(utf8_valid(out, n));
}

static void valid_text_unchanged(void)
{
    sanitize_is("Mozilla/5.0 (X11)", 17, 64, "Mozilla/5.0 (X11)");
    sanitize_is("\xC3\xA9t\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF", 19, 64,
                "\xC3\xA9t\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF");
    sanitize_is("", 0, 1, "");
}

static void ill_formed_replaced(void)
{
    sanitize_is("Mozilla \xE9t\xE9", 11, 64, "Mozilla " R "t" R);
    sanitize_is("ok \xC3", 4, 64, "ok " R);          /* cut short */
    sanitize_is("\xED\xA0\x80", 3, 64, R R R);       /* surrogate */
    sanitize_is("\xC0\xAF", 2, 64, R R);             /* overlong '/' */
    sanitize_is("\xE0\x80\xAF", 3, 64, R R R);       /* overlong 3 bytes */
    sanitize_is("\xF4\x90\x80\x80", 4, 64, R R R R); /* above U+10FFFF */
    sanitize_is("\xF0\x9F\x98", 3, 64, R);           /* one subpart, one U+FFFD */
    sanitize_is("\xF0\x9F\x98x", 4, 64, R "x");
    sanitize_is("\x80\xBF\xFE\xFF", 4, 64, R R R R);
    sanitize_is("a\0b", 3, 64, "a" R "b"); /* NUL */
}

static void truncation_on_boundaries(void)
{
    char in[400];
    for (int i = 0; i < 200; i++) {
        in[2 * i] = '\xC3';
        in[2 * i + 1] = '\xA9';
    }
    char out[256];
    size_t n = utf8_sanitize(out, sizeof(out), in, sizeof(in));
    CHECK_INT(n, 254); /* 127 whole characters */
    CHECK(utf8_valid(out, n));
    sanitize_is("ab\xE2\x82\xAC", 5, 5, "ab"); /* the euro would not fit */
    sanitize_is("ab\xE2\x82\xAC", 5, 6, "ab\xE2\x82\xAC");
    sanitize_is("ab\xFF", 3, 5, "ab"); /* nor its replacement */
    sanitize_is("abc", 3, 1, "");
}

static void valid_checks(void)
{
    CHECK(utf8_valid("caf\xC3\xA9", 5));
    CHECK(!utf8_valid("caf\xC3", 4));
    CHECK(!utf8_valid("caf\xE9", 4));
    CHECK(!utf8_valid("a\0b", 3));
    CHECK(!utf8_valid("\xED\xBF\xBF", 3));
    CHECK(utf8_valid("", 0));
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {TEST_CASE(valid_text_unchanged),
                                      TEST_CASE(ill_formed_replaced),
                                      TEST_CASE(truncation_on_boundaries), TEST_CASE(valid_checks)};
    return test_main("utf8", cases, argc, argv);
}
