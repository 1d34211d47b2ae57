/* master: the gateway's master process. It opens the listening sockets once, creates the
 * shared memory, spawns the workers (re-executing this binary with --worker, the sockets and
 * the shared memory inherited), runs the active health checks and publishes their result,
 * rotates the session-ticket keys, and replaces workers that die. SIGHUP re-reads the config
 * and certificates: new workers start on the same sockets, the old ones drain and exit, so no
 * connection is refused or dropped. SIGTERM/SIGINT: every worker drains, then the master
 * exits 0. */
#ifndef GW_MASTER_H
#define GW_MASTER_H

/* workers_override: > 0 replaces the config's workers. Returns the exit status. */
int gw_master_main(const char *config_path, int workers_override);

#endif
