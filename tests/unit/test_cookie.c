/* test_cookie: common/cookie.c, the one Cookie header parser: pairs split on ';', spaces
 * around names and values ignored, whole names only, too long values told apart. */
#include <string.h>

#include "cookie.h"
#include "test.h"

static void finds_whole_names(void)
{
    char out[32];
    CHECK_INT(cookie_find("access_token=abc", "access_token", out, sizeof out), 3);
    CHECK_STR(out, "abc");
    CHECK_INT(cookie_find("theme=dark; access_token=abc; lang=en", "access_token", out, sizeof out),
              3);
    CHECK_STR(out, "abc");
    CHECK_INT(cookie_find("theme=dark;access_token=x1", "access_token", out, sizeof out), 2);
    CHECK_STR(out, "x1");
    /* a name that only ends or starts like it is another cookie */
    CHECK_INT(cookie_find("xaccess_token=no; access_token_2=no", "access_token", out, sizeof out),
              COOKIE_ABSENT);
    CHECK_INT(cookie_find("", "a", out, sizeof out), COOKIE_ABSENT);
    CHECK_INT(cookie_find("a", "a", out, sizeof out), COOKIE_ABSENT);
    /* the first of two */
    CHECK_INT(cookie_find("a=1; a=2", "a", out, sizeof out), 1);
    CHECK_STR(out, "1");
}

static void spaces_are_not_part_of_it(void)
{
    char out[32];
    CHECK_INT(cookie_find("  a = v1 ;b=2", "a", out, sizeof out), 2);
    CHECK_STR(out, "v1");
    CHECK_INT(cookie_find("b=2;\ta=\t", "a", out, sizeof out), 0);
    CHECK_STR(out, "");
    CHECK_INT(cookie_find("a==x=", "a", out, sizeof out), 3); /* split at the first '=' */
    CHECK_STR(out, "=x=");
}

static void too_long_is_told_apart(void)
{
    char out[4];
    CHECK_INT(cookie_find("a=1234", "a", out, sizeof out), COOKIE_TOO_LONG);
    CHECK_INT(cookie_find("a=123", "a", out, sizeof out), 3);
    CHECK_STR(out, "123");
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {TEST_CASE(finds_whole_names),
                                      TEST_CASE(spaces_are_not_part_of_it),
                                      TEST_CASE(too_long_is_told_apart)};
    return test_main("cookie", cases, argc, argv);
}
