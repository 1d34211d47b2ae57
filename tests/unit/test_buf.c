/* test_buf: the growable byte buffer: appends across growth keep every byte, the NUL after
 * them, printf of long output, truncate, steal and free. */
#include "buf.h"
#include "test.h"

#include <stdlib.h>

static void empty_is_valid(void)
{
    buf b = {0};
    CHECK_STR(buf_str(&b), "");
    CHECK(buf_steal(&b) == NULL);
    buf_free(&b);
    CHECK(b.p == NULL && b.len == 0 && b.cap == 0);
}

static void append_grows_and_terminates(void)
{
    buf b = {0};
    char want[5000];
    for (size_t i = 0; i < sizeof want - 1; i++) {
        char ch = (char)('a' + i % 26);
        buf_append(&b, &ch, 1);
        want[i] = ch;
    }
    want[sizeof want - 1] = '\0';
    CHECK_INT(b.len, sizeof want - 1);
    CHECK(b.cap > b.len);
    CHECK_STR(b.p, want);
    buf_append(&b, "", 0);
    CHECK_INT(b.len, sizeof want - 1);
    buf_free(&b);
}

static void binary_bytes_kept(void)
{
    buf b = {0};
    buf_append(&b, "a\0b", 3);
    buf_append(&b, "\0", 1);
    CHECK_INT(b.len, 4);
    CHECK(memcmp(b.p, "a\0b\0", 5) == 0);
    buf_free(&b);
}

static void printf_short_and_long(void)
{
    buf b = {0};
    buf_printf(&b, "HTTP/1.1 %d %s\r\n", 200, "OK");
    CHECK_STR(buf_str(&b), "HTTP/1.1 200 OK\r\n");
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    buf_printf(&b, "[%s]", big); /* longer than any fixed scratch */
    CHECK_INT(b.len, 17 + 2 + sizeof big - 1);
    CHECK(b.p[17] == '[' && b.p[b.len - 1] == ']' && b.p[b.len] == '\0');
    buf_free(&b);
}

static void puts_truncate_steal(void)
{
    buf b = {0};
    buf_puts(&b, "Host: ");
    buf_puts(&b, "example.com");
    CHECK_STR(buf_str(&b), "Host: example.com");
    buf_truncate(&b, 4);
    CHECK_STR(buf_str(&b), "Host");
    buf_truncate(&b, 10); /* longer than the content: no change */
    CHECK_STR(buf_str(&b), "Host");
    char *s = buf_steal(&b);
    CHECK_STR(s, "Host");
    CHECK(b.p == NULL && b.len == 0);
    free(s);
    buf_reserve(&b, 100);
    CHECK(b.cap >= 101 && b.len == 0);
    buf_free(&b);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        TEST_CASE(empty_is_valid), TEST_CASE(append_grows_and_terminates),
        TEST_CASE(binary_bytes_kept), TEST_CASE(printf_short_and_long),
        TEST_CASE(puts_truncate_steal)};
    return test_main("buf", cases, argc, argv);
}
