/* clockshift: an LD_PRELOAD library for tests (test_auth.py builds it with cc): the
 * clock_gettime(CLOCK_REALTIME) of the process answers the real time plus the seconds written
 * in the file $CLOCKSHIFT_FILE, read at every call, as if the wall clock had been set while
 * the process runs. Other clocks (CLOCK_MONOTONIC: libuv's, the caches') are untouched. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int clock_gettime(clockid_t id, struct timespec *ts)
{
    long rc = syscall(SYS_clock_gettime, id, ts);
    if (rc != 0 || id != CLOCK_REALTIME)
        return (int)rc;
    const char *path = getenv("CLOCKSHIFT_FILE");
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd >= 0) {
        char buf[32];
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0) {
            buf[n] = '\0';
            ts->tv_sec += strtol(buf, NULL, 10);
        }
    }
    return 0;
}
