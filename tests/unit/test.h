/* test.h: the tiny harness of the C test programs. Each case prints "PASS suite/name" or
 * "FAIL suite/name: where and what"; tests/run counts those lines. The program exits 1 when
 * any case failed. */
#ifndef TESTS_TEST_H
#define TESTS_TEST_H

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int test_failed_cases, test_case_failed;
static const char *test_suite = "test";

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("  check failed %s:%d: %s\n", __FILE__, __LINE__, #cond);                       \
            test_case_failed = 1;                                                                  \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                   \
            printf("  check failed %s:%d: %s == %s (\"%s\" vs \"%s\")\n", __FILE__, __LINE__, #a,  \
                   #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                    \
            test_case_failed = 1;                                                                  \
        }                                                                                          \
    } while (0)

#define CHECK_INT(a, b)                                                                            \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            printf("  check failed %s:%d: %s == %s (%lld vs %lld)\n", __FILE__, __LINE__, #a, #b,  \
                   a_, b_);                                                                        \
            test_case_failed = 1;                                                                  \
        }                                                                                          \
    } while (0)

#define RUN(fn)                                                                                    \
    do {                                                                                           \
        test_case_failed = 0;                                                                      \
        fn();                                                                                      \
        printf("%s %s/%s\n", test_case_failed ? "FAIL" : "PASS", test_suite, #fn);                 \
        fflush(stdout);                                                                            \
        test_failed_cases += test_case_failed;                                                     \
    } while (0)

#define TEST_EXIT() (test_failed_cases ? 1 : 0)

/* A program's cases as a table: main returns test_main(suite, cases, argc, argv), which runs
 * them in order, or only those named on the command line (`test_clock mono_never_goes_back`:
 * one case again alone; an unknown name is a failure). */
typedef struct test_case {
    const char *name;
    void (*fn)(void);
} test_case;

/* clang-format off */
#define TEST_CASE(fn) {#fn, fn}
/* clang-format on */
#define test_main(suite, cases, argc, argv)                                                        \
    test_run_cases(suite, cases, sizeof(cases) / sizeof((cases)[0]), argc, argv)

static inline int test_run_cases(const char *suite, const test_case *cases, size_t n, int argc,
                                 char **argv)
{
    test_suite = suite;
    for (size_t i = 0; i < n; i++) {
        int wanted = argc < 2;
        for (int a = 1; a < argc && !wanted; a++)
            wanted = strcmp(argv[a], cases[i].name) == 0;
        if (!wanted)
            continue;
        test_case_failed = 0;
        cases[i].fn();
        printf("%s %s/%s\n", test_case_failed ? "FAIL" : "PASS", suite, cases[i].name);
        fflush(stdout);
        test_failed_cases += test_case_failed;
    }
    for (int a = 1; a < argc; a++) {
        size_t i = 0;
        while (i < n && strcmp(argv[a], cases[i].name) != 0)
            i++;
        if (i == n) {
            printf("FAIL %s/%s: no such case\n", suite, argv[a]);
            test_failed_cases++;
        }
    }
    return TEST_EXIT();
}

/* Runs fn in a child process with its stderr captured into err (NUL-terminated); returns the
 * child's wait status (WIFEXITED/WEXITSTATUS, WIFSIGNALED/WTERMSIG), -1 if it could not run. */
static inline int test_run_child(void (*fn)(void), char *err, size_t errcap)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
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
    while (len + 1 < errcap && (n = read(fds[0], err + len, errcap - len - 1)) > 0)
        len += (size_t)n;
    err[len] = '\0';
    close(fds[0]);
    int st = -1;
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        return -1;
    return st;
}

#endif
