/* clock: the suite's two clocks, in milliseconds.
 *
 * clock_mono_ms: CLOCK_MONOTONIC, for every duration, deadline and cache TTL. It never jumps
 * when the wall clock is set (NTP, an operator), and it is the same clock in every process of
 * the machine, so values may be shared through shared memory (the gateway's workers do).
 * clock_wall_ms: CLOCK_REALTIME, only where calendar time is really meant: what is written
 * into a token (iat, exp), a log line's timestamp, a row's date.
 * In an event-loop callback, uv_now() (the loop's cached monotonic time) is cheaper and fine
 * for timers of that loop; these are for the places without a loop at hand. */
#ifndef CLOCK_H
#define CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_ms_of(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline uint64_t clock_mono_ms(void)
{
    return clock_ms_of(CLOCK_MONOTONIC);
}

static inline uint64_t clock_wall_ms(void)
{
    return clock_ms_of(CLOCK_REALTIME);
}

#endif
