/* fuzz_parsers: libFuzzer target for the small parsers of common/ and svc-payments that read
 * what clients and operators send: query strings (query.c), CIDR lists (cidr.c), sizes,
 * durations, booleans and host:port (config.c), and the webhook's X-Signature header with
 * its HMAC check (svc-payments/webhook.c). The first byte picks the parser. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"
#include "config.h"
#include "query.h"
#include "webhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *s = malloc(size);
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    switch (data[0] % 5) {
    case 0: {
        char out[64];
        query_param(s, "limit", out, sizeof out);
        query_param(s, "", out, sizeof out);
        char big[4096];
        long n = query_unescape(s, size - 1, big, sizeof big, data[0] & 8);
        if (n >= 0 && (size_t)n >= sizeof big)
            abort();
        break;
    }
    case 1: {
        char err[128];
        cidr_list *l = cidr_list_parse(s, err, sizeof err);
        cidr_list_match(l, "127.0.0.1");
        cidr_list_match(l, "::ffff:10.0.0.1");
        cidr_list_match(l, s);
        cidr_list_free(l);
        break;
    }
    case 2: {
        size_t sz;
        long ms;
        int b, port;
        char host[256];
        config_parse_size(s, &sz);
        config_parse_ms(s, &ms);
        config_parse_bool(s, &b);
        config_parse_hostport(s, host, sizeof host, &port);
        char **items;
        size_t n = config_list(s, &items);
        config_list_free(items, n);
        break;
    }
    default: {
        /* header and body split at the first newline */
        char *nl = strchr(s, '\n');
        const char *body = nl ? nl + 1 : "";
        if (nl)
            *nl = '\0';
        char *secrets[] = {"whsec_one", "whsec_two"};
        webhook_verify(s, body, strlen(body), secrets, 2, 1700000000, 300);
        break;
    }
    }
    free(s);
    return 0;
}
