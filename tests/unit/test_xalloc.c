/* test_xalloc: the one out-of-memory policy: an allocation that cannot be made writes one line
 * to stderr and aborts; zero sizes and xstrdup(NULL) never give a surprising NULL. */
#include "xalloc.h"
#include "test.h"

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs fn in a child with stderr captured; returns the signal that ended it (0: none). */
static int run_child(void (*fn)(void), char *err, size_t errcap) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        alarm(5);
        fn();
        _exit(0);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t n;
    while (len + 1 < errcap && (n = read(fds[0], err + len, errcap - len - 1)) > 0) len += (size_t)n;
    err[len] = '\0';
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

static void calloc_overflow(void) {
    volatile size_t n = SIZE_MAX / 2;
    free(xcalloc(n, 4)); /* n * 4 does not fit in size_t */
}

static void oom_aborts_with_a_line(void) {
    char err[512];
    CHECK_INT(run_child(calloc_overflow, err, sizeof err), SIGABRT);
    CHECK(strstr(err, "out of memory allocating") != NULL);
}

static void zero_sizes(void) {
    void *a = xmalloc(0), *b = xcalloc(0, 8), *c = xrealloc(NULL, 0);
    CHECK(a && b && c);
    free(a);
    free(b);
    free(c);
}

static void copies(void) {
    CHECK(xstrdup(NULL) == NULL);
    char *s = xstrdup("abc");
    CHECK_STR(s, "abc");
    free(s);
    s = xstrndup("abcdef", 3); /* the first n bytes, terminated */
    CHECK_STR(s, "abc");
    free(s);
    unsigned char *z = xcalloc(16, 4);
    int zero = 1;
    for (int i = 0; i < 64; i++) zero &= z[i] == 0;
    CHECK(zero);
    free(z);
}

int main(void) {
    test_suite = "xalloc";
    RUN(oom_aborts_with_a_line);
    RUN(zero_sizes);
    RUN(copies);
    return TEST_EXIT();
}
