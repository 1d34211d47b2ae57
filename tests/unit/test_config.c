/* test_config: settings from the environment and from NAME_FILE, strict parsing, and exit
 * status 2 with a message naming the variable for a value that does not parse. */
#include "config.h"
#include "test.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* The exit status of fn run in a child (stderr into err); -1 when it did not exit. */
static int child_exit(void (*fn)(void), char *err, size_t errcap)
{
    int st = test_run_child(fn, err, errcap);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void env_values(void)
{
    setenv("T_STR", "hello", 1);
    setenv("T_INT", "-42", 1);
    setenv("T_BOOL", "Yes", 1);
    setenv("T_SIZE", "50M", 1);
    setenv("T_MS", "15m", 1);
    CHECK_STR(config_str("T_STR", "def"), "hello");
    CHECK_STR(config_str("T_UNSET_X", "def"), "def");
    CHECK(config_str("T_UNSET_X", NULL) == NULL);
    CHECK_INT(config_int("T_INT", 7), -42);
    CHECK_INT(config_int("T_UNSET_X", 7), 7);
    CHECK_INT(config_bool("T_BOOL", 0), 1);
    CHECK_INT(config_bool("T_UNSET_X", 1), 1);
    CHECK_INT(config_size("T_SIZE", 1), 50u * 1024 * 1024);
    CHECK_INT(config_size("T_UNSET_X", 123), 123);
    CHECK_INT(config_ms("T_MS", 1), 15L * 60 * 1000);
    CHECK_INT(config_ms("T_UNSET_X", 250), 250);
}

static void file_values(void)
{
    char path[] = "/tmp/test_config_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const char content[] = "s3cret value\r\n\n";
    CHECK_INT(write(fd, content, sizeof content - 1), sizeof content - 1);
    close(fd);
    unsetenv("T_SECRET");
    setenv("T_SECRET_FILE", path, 1);
    CHECK_STR(config_str("T_SECRET", NULL), "s3cret value");
    /* Read once: a later change of the file is not seen. */
    fd = open(path, O_WRONLY | O_TRUNC);
    CHECK_INT(write(fd, "other", 5), 5);
    close(fd);
    CHECK_STR(config_str("T_SECRET", NULL), "s3cret value");
    /* The variable itself wins over its _FILE. */
    setenv("T_SECRET", "direct", 1);
    CHECK_STR(config_str("T_SECRET", NULL), "direct");
    unsetenv("T_SECRET");

    /* Typed values come from files too. */
    char path2[] = "/tmp/test_config_XXXXXX";
    fd = mkstemp(path2);
    CHECK_INT(write(fd, "8k\n", 3), 3);
    close(fd);
    setenv("T_FSIZE_FILE", path2, 1);
    CHECK_INT(config_size("T_FSIZE", 0), 8192);
    unlink(path);
    unlink(path2);
}

static void parse_size(void)
{
    size_t v;
    CHECK_INT(config_parse_size("0", &v), 0);
    CHECK_INT(v, 0);
    CHECK_INT(config_parse_size("1024", &v), 0);
    CHECK_INT(v, 1024);
    CHECK_INT(config_parse_size("512k", &v), 0);
    CHECK_INT(v, 512 * 1024);
    CHECK_INT(config_parse_size("512K", &v), 0);
    CHECK_INT(v, 512 * 1024);
    CHECK_INT(config_parse_size("1m", &v), 0);
    CHECK_INT(v, 1024 * 1024);
    CHECK_INT(config_parse_size("2G", &v), 0);
    CHECK_INT(v, 2ULL * 1024 * 1024 * 1024);
    const char *bad[] = {"",
                         "k",
                         "1kb",
                         "1 k",
                         " 1",
                         "1.5m",
                         "-1",
                         "1t",
                         "abc",
                         "99999999999999999999",
                         "17179869184g"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 77;
        if (config_parse_size(bad[i], &v) == 0)
            printf("  accepted size \"%s\"\n", bad[i]);
        CHECK(config_parse_size(bad[i], &v) != 0);
        CHECK_INT(v, 77);
    }
}

static void parse_ms(void)
{
    long v;
    CHECK_INT(config_parse_ms("250", &v), 0);
    CHECK_INT(v, 250);
    CHECK_INT(config_parse_ms("250ms", &v), 0);
    CHECK_INT(v, 250);
    CHECK_INT(config_parse_ms("5s", &v), 0);
    CHECK_INT(v, 5000);
    CHECK_INT(config_parse_ms("15m", &v), 0);
    CHECK_INT(v, 900000);
    CHECK_INT(config_parse_ms("1h", &v), 0);
    CHECK_INT(v, 3600000);
    CHECK_INT(config_parse_ms("30d", &v), 0);
    CHECK_INT(v, 30L * 86400000);
    const char *bad[] = {"",     "s",    "5S",  "5 s", "-5s",
                         "1.5s", "5sec", "5us", "1w",  "9999999999999999999d"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (config_parse_ms(bad[i], &v) == 0)
            printf("  accepted duration \"%s\"\n", bad[i]);
        CHECK(config_parse_ms(bad[i], &v) != 0);
    }
}

static void parse_bool(void)
{
    int v;
    const char *yes[] = {"1", "true", "TRUE", "yes", "on", "On"};
    const char *no[] = {"0", "false", "no", "off", "OFF"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        v = 0;
        CHECK_INT(config_parse_bool(yes[i], &v), 0);
        CHECK_INT(v, 1);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        v = 1;
        CHECK_INT(config_parse_bool(no[i], &v), 0);
        CHECK_INT(v, 0);
    }
    CHECK(config_parse_bool("", &v) != 0);
    CHECK(config_parse_bool("2", &v) != 0);
    CHECK(config_parse_bool("yess", &v) != 0);
}

static void parse_hostport(void)
{
    char host[64];
    int port = 0;
    CHECK_INT(config_parse_hostport("auth:8080", host, sizeof host, &port), 0);
    CHECK_STR(host, "auth");
    CHECK_INT(port, 8080);
    CHECK_INT(config_parse_hostport("127.0.0.1:0", host, sizeof host, &port), 0);
    CHECK_STR(host, "127.0.0.1");
    CHECK_INT(port, 0);
    CHECK_INT(config_parse_hostport("[::1]:443", host, sizeof host, &port), 0);
    CHECK_STR(host, "::1");
    CHECK_INT(port, 443);
    const char *bad[] = {"auth",   "auth:",   ":80",  "auth:65536", "auth:8x",
                         "::1:80", "[::1]80", "[::1", "auth:-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (config_parse_hostport(bad[i], host, sizeof host, &port) == 0)
            printf("  accepted hostport \"%s\"\n", bad[i]);
        CHECK(config_parse_hostport(bad[i], host, sizeof host, &port) != 0);
    }
    /* Host longer than the buffer. */
    CHECK(config_parse_hostport("averylonghostname:80", host, 8, &port) != 0);
}

static void child_bad_int(void)
{
    setenv("T_BAD_INT", "12abc", 1);
    config_int("T_BAD_INT", 1);
}
static void child_bad_size(void)
{
    setenv("T_BAD_SIZE", "10 MB", 1);
    config_size("T_BAD_SIZE", 1);
}
static void child_bad_ms(void)
{
    setenv("T_BAD_MS", "5sec", 1);
    config_ms("T_BAD_MS", 1);
}
static void child_bad_bool(void)
{
    setenv("T_BAD_BOOL", "maybe", 1);
    config_bool("T_BAD_BOOL", 1);
}
static void child_missing_file(void)
{
    unsetenv("T_NOFILE");
    setenv("T_NOFILE_FILE", "/nonexistent/secret", 1);
    config_str("T_NOFILE", "def");
}
static void child_good(void)
{
    setenv("T_GOOD_INT", "12", 1);
    if (config_int("T_GOOD_INT", 1) != 12)
        _exit(3);
}

static void bad_values_exit_2(void)
{
    char err[1024];
    CHECK_INT(child_exit(child_good, err, sizeof err), 0);
    CHECK_INT(child_exit(child_bad_int, err, sizeof err), 2);
    CHECK(strstr(err, "T_BAD_INT") != NULL);
    CHECK_INT(child_exit(child_bad_size, err, sizeof err), 2);
    CHECK(strstr(err, "T_BAD_SIZE") != NULL);
    CHECK_INT(child_exit(child_bad_ms, err, sizeof err), 2);
    CHECK(strstr(err, "T_BAD_MS") != NULL);
    CHECK_INT(child_exit(child_bad_bool, err, sizeof err), 2);
    CHECK(strstr(err, "T_BAD_BOOL") != NULL);
    CHECK_INT(child_exit(child_missing_file, err, sizeof err), 2);
    CHECK(strstr(err, "T_NOFILE_FILE") != NULL);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {TEST_CASE(env_values),       TEST_CASE(file_values),
                                      TEST_CASE(parse_size),       TEST_CASE(parse_ms),
                                      TEST_CASE(parse_bool),       TEST_CASE(parse_hostport),
                                      TEST_CASE(bad_values_exit_2)};
    return test_main("config", cases, argc, argv);
}
