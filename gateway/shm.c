/* shm: the gateway's shared memory (see shm.h). */
#include "shm.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "crypto.h"
#include "net_addr.h"

#define GW_SHM_MAGIC 0x67773031u

static int init_mutex(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    int rc = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return rc;
}

gw_shm *gw_shm_create(int *fd_out)
{
    int fd = memfd_create("gateway-shm", MFD_CLOEXEC); /* workers get it through uv_spawn */
    if (fd < 0)
        return NULL;
    if (ftruncate(fd, sizeof(gw_shm)) != 0) {
        close(fd);
        return NULL;
    }
    gw_shm *s = mmap(NULL, sizeof(gw_shm), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (s == MAP_FAILED) {
        close(fd);
        return NULL;
    }
    int rc = init_mutex(&s->state_lock);
    for (int i = 0; i < GW_RL_PARTS && rc == 0; i++)
        rc = init_mutex(&s->rl_lock[i]) || init_mutex(&s->conn_lock[i]);
    if (rc != 0) {
        munmap(s, sizeof(gw_shm));
        close(fd);
        return NULL;
    }
    s->magic = GW_SHM_MAGIC;
    *fd_out = fd;
    return s;
}

gw_shm *gw_shm_attach(int fd)
{
    gw_shm *s = mmap(NULL, sizeof(gw_shm), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (s == MAP_FAILED)
        return NULL;
    if (s->magic != GW_SHM_MAGIC) {
        munmap(s, sizeof(gw_shm));
        return NULL;
    }
    return s;
}

void gw_shm_lock(pthread_mutex_t *m)
{
    if (pthread_mutex_lock(m) == EOWNERDEAD)
        pthread_mutex_consistent(m);
}

void gw_shm_unlock(pthread_mutex_t *m)
{
    pthread_mutex_unlock(m);
}

uint64_t gw_hash(const void *data, size_t len, uint64_t seed)
{
    const uint8_t *p = data;
    uint64_t h = 1469598103934665603ull ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h ? h : 1;
}

void gw_shm_rotate_ticket_key(gw_shm *s)
{
    gw_ticket_key k;
    crypto_random(k.name, sizeof k.name);
    crypto_random(k.key, sizeof k.key);
    k.created_ms = (int64_t)clock_mono_ms();
    gw_shm_lock(&s->state_lock);
    memmove(&s->keys[1], &s->keys[0], sizeof(gw_ticket_key) * (GW_SHM_KEYS - 1));
    s->keys[0] = k;
    gw_shm_unlock(&s->state_lock);
}

void gw_shm_ticket_keys(gw_shm *s, gw_ticket_key out[GW_SHM_KEYS])
{
    gw_shm_lock(&s->state_lock);
    memcpy(out, s->keys, sizeof(gw_ticket_key) * GW_SHM_KEYS);
    gw_shm_unlock(&s->state_lock);
}

void gw_shm_publish_health(gw_shm *s, const gw_shm_upstream *ups, size_t n)
{
    unsigned seq = atomic_load_explicit(&s->health_seq, memory_order_relaxed);
    atomic_store_explicit(&s->health_seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    memcpy(s->ups, ups, sizeof(gw_shm_upstream) * n);
    s->nupstreams = (uint32_t)n;
    s->published = 1;
    atomic_store_explicit(&s->health_seq, seq + 2, memory_order_release);
}

/* Sequence-lock reads: a read that began at an even sequence and finds the same one after
 * it saw a whole publication; otherwise it is thrown away and made again. A master that died
 * while writing leaves the sequence odd: after HEALTH_READ_TRIES the shared view counts as not
 * published (the worker's own passive health still applies), never a worker spinning forever.
 * Whatever a torn read finds is bounded (indexes and counts are clamped) before it is used. */
#define HEALTH_READ_TRIES 1000

static int health_begin(gw_shm *s, unsigned *seq)
{
    *seq = atomic_load_explicit(&s->health_seq, memory_order_acquire);
    return (*seq & 1u) == 0;
}

static int health_same(gw_shm *s, unsigned seq)
{
    atomic_thread_fence(memory_order_acquire);
    return atomic_load_explicit(&s->health_seq, memory_order_relaxed) == seq;
}

int gw_shm_upstream_counts(gw_shm *s, const char *name, unsigned *healthy, unsigned *total)
{
    for (int k = 0; k < HEALTH_READ_TRIES; k++) {
        unsigned seq, h = 0, t = 0;
        int rc = -1;
        if (!health_begin(s, &seq))
            continue;
        uint32_t n = s->published ? s->nupstreams : 0;
        for (uint32_t i = 0; i < n && i < GW_MAX_UPSTREAMS; i++) {
            if (strncmp(s->ups[i].name, name, sizeof s->ups[i].name) == 0) {
                h = s->ups[i].healthy;
                t = s->ups[i].total;
                rc = 0;
                break;
            }
        }
        if (!health_same(s, seq))
            continue;
        if (rc == 0) {
            *healthy = h;
            *total = t;
        }
        return rc;
    }
    return -1;
}

int gw_shm_peer_down(gw_shm *s, size_t idx, const char *name, const struct sockaddr *addr)
{
    if (idx >= GW_MAX_UPSTREAMS)
        return 0;
    const gw_shm_upstream *u = &s->ups[idx];
    for (int k = 0; k < HEALTH_READ_TRIES; k++) {
        unsigned seq;
        int down = 0;
        if (!health_begin(s, &seq))
            continue;
        if (s->published && idx < s->nupstreams && strncmp(u->name, name, sizeof u->name) == 0) {
            uint32_t n = u->npeers < GW_SHM_PEERS ? u->npeers : GW_SHM_PEERS;
            for (uint32_t j = 0; j < n; j++) {
                if (net_addr_eq((const struct sockaddr *)&u->peers[j].sa, addr)) {
                    down = !u->peers[j].healthy;
                    break;
                }
            }
        }
        if (health_same(s, seq))
            return down;
    }
    return 0;
}

/* The slot of ip's entry in its partition, creating it (or NULL when the partition's probe
 * window is full of live entries). Called with the partition locked. */
static gw_conn_slot *conn_slot(gw_shm *s, uint64_t h, int create)
{
    gw_conn_slot *part = s->conn[h % GW_RL_PARTS];
    size_t start = (size_t)(h / GW_RL_PARTS) % GW_CONN_PART_SLOTS;
    gw_conn_slot *free_slot = NULL;
    for (size_t i = 0; i < 16; i++) {
        gw_conn_slot *e = &part[(start + i) % GW_CONN_PART_SLOTS];
        if (e->hash == h)
            return e;
        if (!free_slot && e->hash == 0)
            free_slot = e;
    }
    if (create && free_slot) {
        memset(free_slot, 0, sizeof *free_slot);
        free_slot->hash = h;
    }
    return create ? free_slot : NULL;
}

static int conn_empty(const gw_conn_slot *e)
{
    for (int i = 0; i < GW_SHM_WORKER_SLOTS; i++)
        if (e->count[i])
            return 0;
    return 1;
}

unsigned gw_shm_conn_inc(gw_shm *s, int worker_slot, const char *ip)
{
    uint64_t h = gw_hash(ip, strlen(ip), 0x636f6e6eull);
    pthread_mutex_t *m = &s->conn_lock[h % GW_RL_PARTS];
    unsigned total = 0;
    gw_shm_lock(m);
    gw_conn_slot *e = conn_slot(s, h, 1);
    if (e) {
        e->count[worker_slot]++;
        for (int i = 0; i < GW_SHM_WORKER_SLOTS; i++)
            total += e->count[i];
    }
    gw_shm_unlock(m);
    return total; /* 0 when the table is full: not counted, never refused */
}

void gw_shm_conn_dec(gw_shm *s, int worker_slot, const char *ip)
{
    uint64_t h = gw_hash(ip, strlen(ip), 0x636f6e6eull);
    pthread_mutex_t *m = &s->conn_lock[h % GW_RL_PARTS];
    gw_shm_lock(m);
    gw_conn_slot *e = conn_slot(s, h, 0);
    if (e && e->count[worker_slot]) {
        e->count[worker_slot]--;
        if (conn_empty(e))
            e->hash = 0;
    }
    gw_shm_unlock(m);
}

void gw_shm_conn_clear_slot(gw_shm *s, int worker_slot)
{
    for (int p = 0; p < GW_RL_PARTS; p++) {
        gw_shm_lock(&s->conn_lock[p]);
        for (int i = 0; i < GW_CONN_PART_SLOTS; i++) {
            gw_conn_slot *e = &s->conn[p][i];
            if (e->hash && e->count[worker_slot]) {
                e->count[worker_slot] = 0;
                if (conn_empty(e))
                    e->hash = 0;
            }
        }
        gw_shm_unlock(&s->conn_lock[p]);
    }
}
