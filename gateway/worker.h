/* worker: one gateway worker process: its listeners are inherited from the master (fds 3 and
 * 4), the shared memory too (fd 5); it serves until SIGTERM, then drains and exits 0. */
#ifndef GW_WORKER_H
#define GW_WORKER_H

#include "gw_config.h"

#define GW_FD_HTTP  3
#define GW_FD_HTTPS 4
#define GW_FD_SHM   5

/* Runs the worker; returns the process exit status. */
int gw_worker_main(const gw_config *cfg, int slot);

#endif
