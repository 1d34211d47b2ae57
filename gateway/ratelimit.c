/* ratelimit: nginx's limit_req leaky bucket in the shared memory (see ratelimit.h).
 * excess is kept in milli-requests: each request adds 1000, time drains rate*1000 per second;
 * above burst*1000 the request is refused. Entries live in lock-striped open-addressing
 * partitions; a full probe window evicts its least recently used entry. */
#include "ratelimit.h"

#include <math.h>
#include <string.h>

#include "clock.h"

#define PROBE 8

unsigned gw_ratelimit_check(gw_shm *s, int route, const char *ip, double rate, unsigned burst)
{
    uint64_t h = gw_hash(ip, strlen(ip), (uint64_t)route * 0x9e3779b97f4a7c15ull + 1);
    size_t part = h % GW_RL_PARTS;
    size_t start = (size_t)(h / GW_RL_PARTS) % GW_RL_PART_SLOTS;
    int64_t now = (int64_t)clock_mono_ms();
    unsigned retry = 0;

    gw_shm_lock(&s->rl_lock[part]);
    gw_rl_slot *e = NULL, *victim = NULL;
    for (size_t i = 0; i < PROBE; i++) {
        gw_rl_slot *c = &s->rl[part][(start + i) % GW_RL_PART_SLOTS];
        if (c->hash == h) {
            e = c;
            break;
        }
        if (c->hash == 0) {
            if (!victim || victim->hash != 0)
                victim = c;
        } else if (!victim || (victim->hash != 0 && c->last_ms < victim->last_ms)) {
            victim = c;
        }
    }
    if (!e) {
        /* A new client: admitted, with an empty bucket (nginx starts excess at 0). */
        victim->hash = h;
        victim->excess = 0;
        victim->last_ms = now;
        gw_shm_unlock(&s->rl_lock[part]);
        return 0;
    }
    int64_t elapsed = now - e->last_ms;
    if (elapsed < 0)
        elapsed = 0;
    int64_t drained = (int64_t)(rate * (double)elapsed); /* milli-requests */
    int64_t excess = e->excess - drained;
    if (excess < 0)
        excess = 0;
    excess += 1000;
    int64_t limit = (int64_t)burst * 1000;
    if (excess > limit) {
        /* Refused: the bucket is left as it was (drained up to now). */
        e->excess = excess - 1000;
        e->last_ms = now;
        double wait_s = (double)(excess - limit) / 1000.0 / rate;
        retry = (unsigned)ceil(wait_s);
        if (retry == 0)
            retry = 1;
    } else {
        e->excess = excess;
        e->last_ms = now;
    }
    gw_shm_unlock(&s->rl_lock[part]);
    return retry;
}
