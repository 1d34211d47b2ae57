/* shm: the memory every gateway process shares (a memfd mapped by the master and by each
 * worker): upstream health as published by the master, the TLS session-ticket keys, the
 * rate-limit buckets and the per-address connection counts. Locks are process-shared robust
 * mutexes, so a worker that dies holding one does not wedge the others. */
#ifndef GW_SHM_H
#define GW_SHM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "gw_config.h"

#define GW_SHM_PEERS        32 /* instances shown per upstream */
#define GW_SHM_KEYS         3  /* ticket keys: [0] encrypts, all decrypt */
#define GW_SHM_WORKER_SLOTS 32 /* workers alive at once (reload overlaps generations) */
#define GW_RL_PARTS         64 /* lock stripes of the rate-limit table */
#define GW_RL_PART_SLOTS    512
#define GW_CONN_PART_SLOTS  256

typedef struct gw_shm_peer {
    char addr[64];              /* "127.0.0.1:3001" */
    struct sockaddr_storage sa; /* the same, compared on each pick */
    uint8_t healthy;
} gw_shm_peer;

typedef struct gw_shm_upstream {
    char name[64];
    uint32_t healthy, total, npeers;
    gw_shm_peer peers[GW_SHM_PEERS];
} gw_shm_upstream;

typedef struct gw_ticket_key {
    uint8_t name[16];
    uint8_t key[32];
    int64_t created_ms;
} gw_ticket_key;

typedef struct gw_rl_slot {
    uint64_t hash; /* 0: free */
    int64_t last_ms;
    int64_t excess; /* milli-requests above the rate, as nginx */
} gw_rl_slot;

typedef struct gw_conn_slot {
    uint64_t hash; /* 0: free */
    uint16_t count[GW_SHM_WORKER_SLOTS];
} gw_conn_slot;

typedef struct gw_shm {
    uint32_t magic;
    pthread_mutex_t state_lock; /* ticket keys */
    /* Upstream health: one writer (the master), read without a lock by every worker on each
     * pick: a sequence lock (odd while the master writes; a reader that saw it change reads
     * again). */
    atomic_uint health_seq;
    int32_t published; /* upstream health published at least once */
    uint32_t nupstreams;
    gw_shm_upstream ups[GW_MAX_UPSTREAMS];
    gw_ticket_key keys[GW_SHM_KEYS];
    pthread_mutex_t rl_lock[GW_RL_PARTS];
    gw_rl_slot rl[GW_RL_PARTS][GW_RL_PART_SLOTS];
    pthread_mutex_t conn_lock[GW_RL_PARTS];
    gw_conn_slot conn[GW_RL_PARTS][GW_CONN_PART_SLOTS];
} gw_shm;

/* Master: creates the memfd and maps it, locks initialised. Returns NULL on error. */
gw_shm *gw_shm_create(int *fd_out);
/* Worker: maps an inherited memfd. */
gw_shm *gw_shm_attach(int fd);

/* Robust locking: recovers a lock whose owner died. */
void gw_shm_lock(pthread_mutex_t *m);
void gw_shm_unlock(pthread_mutex_t *m);

/* FNV-1a over bytes, never 0. */
uint64_t gw_hash(const void *data, size_t len, uint64_t seed);

/* Ticket keys: the master rotates (new key in [0], older shift); workers read a copy. */
void gw_shm_rotate_ticket_key(gw_shm *s);
void gw_shm_ticket_keys(gw_shm *s, gw_ticket_key out[GW_SHM_KEYS]);

/* Master: publishes n upstreams' health (no lock: only the master writes it). */
void gw_shm_publish_health(gw_shm *s, const gw_shm_upstream *ups, size_t n);
/* Health as the master sees it, read without a lock. healthy/total of the upstream named
 * name; -1 if unknown. */
int gw_shm_upstream_counts(gw_shm *s, const char *name, unsigned *healthy, unsigned *total);
/* 1 when the master published addr as down in the upstream at index idx, when that upstream
 * is called name (the master's configuration may be newer than the worker's); 0 otherwise. */
int gw_shm_peer_down(gw_shm *s, size_t idx, const char *name, const struct sockaddr *addr);

/* Connection counting per client address, per worker slot (the master clears the slot of a
 * worker that exited, so a crash leaks nothing). Returns the count for ip across workers
 * after the increment; dec undoes one. */
unsigned gw_shm_conn_inc(gw_shm *s, int worker_slot, const char *ip);
void gw_shm_conn_dec(gw_shm *s, int worker_slot, const char *ip);
void gw_shm_conn_clear_slot(gw_shm *s, int worker_slot);

#endif
