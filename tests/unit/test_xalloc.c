/* test_xalloc: the one out-of-memory policy: an allocation that cannot be made writes one line
 * to stderr and aborts; zero sizes and xstrdup(NULL) never give a surprising NULL. */
#include "xalloc.h"
#include "test.h"

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void calloc_overflow(void)
{
    volatile size_t n = SIZE_MAX / 2;
    free(xcalloc(n, 4)); /* n * 4 does not fit in size_t */
}

static void oom_aborts_with_a_line(void)
{
    char err[512];
    int st = test_run_child(calloc_overflow, err, sizeof err);
    CHECK(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    CHECK(strstr(err, "out of memory allocating") != NULL);
}

static void zero_sizes(void)
{
    void *a = xmalloc(0), *b = xcalloc(0, 8), *c = xrealloc(NULL, 0);
    CHECK(a && b && c);
    free(a);
    free(b);
    free(c);
}

static void copies(void)
{
    CHECK(xstrdup(NULL) == NULL);
    char *s = xstrdup("abc");
    CHECK_STR(s, "abc");
    free(s);
    s = xstrndup("abcdef", 3); /* the first n bytes, terminated */
    CHECK_STR(s, "abc");
    free(s);
    unsigned char *z = xcalloc(16, 4);
    int zero = 1;
    for (int i = 0; i < 64; i++)
        zero &= z[i] == 0;
    CHECK(zero);
    free(z);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {TEST_CASE(oom_aborts_with_a_line), TEST_CASE(zero_sizes),
                                      TEST_CASE(copies)};
    return test_main("xalloc", cases, argc, argv);
}
