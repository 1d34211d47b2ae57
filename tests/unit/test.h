/* test.h: the tiny harness of the C test programs. Each case prints "PASS suite/name" or
 * "FAIL suite/name: where and what"; tests/run counts those lines. The program exits 1 when
 * any case failed. */
#ifndef TESTS_TEST_H
#define TESTS_TEST_H

#include <stdio.h>
#include <string.h>

static int test_failed_cases, test_case_failed;
static const char *test_suite = "test";

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            printf("  check failed %s:%d: %s\n", __FILE__, __LINE__, #cond);             \
            test_case_failed = 1;                                                       \
        }                                                                               \
    } while (0)

#define CHECK_STR(a, b)                                                                 \
    do {                                                                                \
        const char *a_ = (a), *b_ = (b);                                                \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                        \
            printf("  check failed %s:%d: %s == %s (\"%s\" vs \"%s\")\n", __FILE__,       \
                   __LINE__, #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");            \
            test_case_failed = 1;                                                       \
        }                                                                               \
    } while (0)

#define CHECK_INT(a, b)                                                                 \
    do {                                                                                \
        long long a_ = (long long)(a), b_ = (long long)(b);                             \
        if (a_ != b_) {                                                                 \
            printf("  check failed %s:%d: %s == %s (%lld vs %lld)\n", __FILE__, __LINE__,  \
                   #a, #b, a_, b_);                                                     \
            test_case_failed = 1;                                                       \
        }                                                                               \
    } while (0)

#define RUN(fn)                                                                         \
    do {                                                                                \
        test_case_failed = 0;                                                           \
        fn();                                                                           \
        printf("%s %s/%s\n", test_case_failed ? "FAIL" : "PASS", test_suite, #fn);       \
        fflush(stdout);                                                                 \
        test_failed_cases += test_case_failed;                                          \
    } while (0)

#define TEST_EXIT() (test_failed_cases ? 1 : 0)

#endif
