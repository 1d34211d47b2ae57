/* gateway: the suite's reverse proxy. `gateway --config FILE [--workers N]` runs the master
 * (master.c), which re-executes this binary as `gateway --worker SLOT --config FILE` for each
 * worker (worker.c). `--check` only validates the configuration. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_config.h"
#include "log.h"
#include "master.h"
#include "tls.h"
#include "worker.h"

static int usage(void)
{
    fprintf(stderr, "usage: gateway --config FILE [--workers N] [--check]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *config = NULL;
    int workers = 0, slot = -1, check = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            config = argv[++i];
        else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc)
            workers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--worker") == 0 && i + 1 < argc)
            slot = atoi(argv[++i]);
        else if (strcmp(argv[i], "--check") == 0)
            check = 1;
        else
            return usage();
    }
    if (!config || (argv[0] && workers < 0))
        return usage();
    log_init("gateway");
    if (check || slot >= 0) {
        static gw_config cfg;
        char err[512];
        if (gw_config_load(config, &cfg, err, sizeof err) != 0) {
            fprintf(stderr, "gateway: %s\n", err);
            return 2;
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
