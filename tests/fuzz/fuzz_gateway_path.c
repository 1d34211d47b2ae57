/* fuzz_gateway_path: libFuzzer target for the gateway's path normalization (the input of
 * routing and of the never-routed check). Checks, for any input it accepts: the result starts
 * with '/', holds no empty, "." or ".." segment, is a fixed point (normalizing it again
 * changes nothing), and a path it calls blocked stays blocked. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "builtin.h"
#include "route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *raw = malloc(size + 1);
    memcpy(raw, data, size);
    raw[size] = '\0';
    char out[8192], again[8192];
    if (gw_path_normalize(raw, out, sizeof out) == 0) {
        if (out[0] != '/')
            abort();
        if (strstr(out, "//") || strstr(out, "/./") || strstr(out, "/../"))
            abort();
        size_t n = strlen(out);
        if ((n >= 2 && strcmp(out + n - 2, "/.") == 0) ||
            (n >= 3 && strcmp(out + n - 3, "/..") == 0))
            abort();
        if (gw_path_normalize(out, again, sizeof again) != 0 || strcmp(out, again) != 0)
            abort();
        if (gw_path_blocked(out) != gw_path_blocked(again))
            abort();
    }
    free(raw);
    return 0;
}
