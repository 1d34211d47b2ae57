/* gateway: the suite's reverse proxy. `gateway --config FILE [--workers N]` runs the master
 * (master.c), which re-executes this binary as `gateway --worker SLOT --config FILE` for each
 * worker (worker.c). `--check` only validates the configuration; `--healthcheck` asks the
 * running gateway's plain HTTP port (any answer means its workers serve: a container's
 * HEALTHCHECK). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_config.h"
#include "healthcheck.h"
#include "log.h"
#include "master.h"
#include "tls.h"
#include "worker.h"

static int usage(void)
{
    fprintf(stderr, "usage: gateway --config FILE [--workers N] [--check | --healthcheck]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *config = NULL;
    int workers = 0, slot = -1, check = 0, healthcheck = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            config = argv[++i];
        else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc)
            workers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--worker") == 0 && i + 1 < argc)
            slot = atoi(argv[++i]);
        else if (strcmp(argv[i], "--check") == 0)
            check = 1;
        else if (strcmp(argv[i], "--healthcheck") == 0)
            healthcheck = 1;
        else
            return usage();
    }
    if (!config || (argv[0] && workers < 0))
        return usage();
    log_init("gateway");
    if (check || healthcheck || slot >= 0) {
        static gw_config cfg;
        char err[512];
        if (gw_config_load(config, &cfg, err, sizeof err) != 0) {
            fprintf(stderr, "gateway: %s\n", err);
            return 2;
        }
        if (healthcheck) {
            if (!cfg.http_port) {
                fprintf(stderr, "gateway: --healthcheck asks the plain HTTP listener: none\n");
                return 1;
            }
            int status = healthcheck_get(cfg.http_port, "/health", 3000);
            printf("gateway: port %d %s\n", cfg.http_port,
                   status > 0 ? "answers" : "does not answer");
            return status > 0 ? 0 : 1;
        }
        if (check) {
            if (cfg.https_port) {
                tls_server_opts to = {cfg.cert,
                                      cfg.key,
                                      cfg.cert2[0] ? cfg.cert2 : NULL,
                                      cfg.key2[0] ? cfg.key2 : NULL,
                                      NULL,
                                      NULL,
                                      0};
                tls_server *t = tls_server_new(&to, err, sizeof err);
                if (!t) {
                    fprintf(stderr, "gateway: TLS: %s\n", err);
                    return 2;
                }
                tls_server_free(t);
            }
            printf("gateway: %s is valid\n", config);
            return 0;
        }
        return gw_worker_main(&cfg, slot);
    }
    return gw_master_main(config, workers);
}
