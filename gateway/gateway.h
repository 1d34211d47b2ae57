/* gateway: the state of one worker process, shared by the files that serve requests. */
#ifndef GW_GATEWAY_H
#define GW_GATEWAY_H

#include <uv.h>

#include "gw_config.h"
#include "http_client.h"
#include "http_server.h"
#include "shm.h"
#include "static.h"
#include "tls.h"
#include "upstream.h"

/* What a worker's upstream asks the shared memory on each pick (upstream_set_skip). */
typedef struct gw_shm_view {
    gw_shm *shm;
    size_t idx;
    const char *name;
} gw_shm_view;

typedef struct gw_worker {
    uv_loop_t *loop;
    const gw_config *cfg;
    gw_shm *shm;
    int slot; /* this worker's slot in the shared memory */
    http_client *client;
    upstream *ups[GW_MAX_UPSTREAMS];
    gw_shm_view views[GW_MAX_UPSTREAMS];
    gw_static *statics;
    tls_server *tls;
    http_server *http_srv, *https_srv;
} gw_worker;

#endif
