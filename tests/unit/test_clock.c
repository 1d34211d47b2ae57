/* test_clock: clock_mono_ms is the monotonic clock (libuv's, which the event loops' timers use),
 * clock_wall_ms is calendar time (what goes into tokens); the two are far apart on any machine
 * that has been up for less than decades, so using one for the other is visible. */
#include "clock.h"
#include "test.h"

#include <time.h>
#include <uv.h>

static void mono_is_libuv_clock(void)
{
    uint64_t a = uv_hrtime() / 1000000u, m = clock_mono_ms(), b = uv_hrtime() / 1000000u;
    CHECK(a <= m && m <= b + 1);
}

static void mono_never_goes_back(void)
{
    uint64_t prev = clock_mono_ms();
    for (int i = 0; i < 100000; i++) {
        uint64_t now = clock_mono_ms();
        CHECK(now >= prev);
        if (now < prev)
            break;
        prev = now;
    }
}

static void wall_is_calendar_time(void)
{
    uint64_t w = clock_wall_ms();
    int64_t t = (int64_t)time(NULL);
    CHECK((int64_t)(w / 1000u) >= t - 1 && (int64_t)(w / 1000u) <= t + 1);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {TEST_CASE(mono_is_libuv_clock),
                                      TEST_CASE(mono_never_goes_back),
                                      TEST_CASE(wall_is_calendar_time)};
    return test_main("clock", cases, argc, argv);
}
