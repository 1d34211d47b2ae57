/* fuzz_router: libFuzzer target for the router's decision (router_lookup) on arbitrary
 * paths: no crash, no leak, and the invariants of router.h hold (a 200 carries decoded
 * parameters without '/' or NUL, a 405 carries a non-empty Allow).
 * Input: byte 0 picks the method, the rest is the path (a NUL ends it). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"
#include "test_routes.h"

static router *routes;

static void h(http_req *req)
{
    (void)req;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    routes = router_new();
    test_api_routes(routes, h, h);
    /* deep patterns: many parameters to decode */
    router_add(routes, "GET", "/a/{b}/c/{d}/e/{f}/g/{h}", h, 0);
    router_add(routes, "GET", "/x/{p1}/{p2}/{p3}/{p4}/{p5}/{p6}/{p7}/{p8}", h, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *methods[] = {"GET", "HEAD", "POST", "PATCH", "DELETE", "PUT", "get", ""};
    if (size == 0)
        return 0;
    const char *method = methods[data[0] & 7];
    char *path = malloc(size);
    memcpy(path, data + 1, size - 1);
    path[size - 1] = '\0';

    router_match m;
    int st = router_lookup(routes, method, path, &m);
    if (st != m.status || (st != 200 && st != 404 && st != 405))
        abort();
    if (st == 200) {
        if (!m.pattern || m.nparams > ROUTER_MAX_PARAMS)
            abort();
        for (size_t i = 0; i < m.nparams; i++) {
            if (!m.names[i] || !m.values[i] || strchr(m.values[i], '/'))
                abort();
        }
    } else if (m.nparams != 0) {
        abort();
    }
    if (st == 405 && m.allow[0] == '\0')
        abort();
    router_match_free(&m);
    free(path);
    return 0;
}
