/* cidr: parsing CIDR network lists and matching addresses against them (see cidr.h). */
#include "cidr.h"
#include "xalloc.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CIDR_ITEM_MAX 64 /* longest item: an IPv6 address with a prefix fits easily */

struct cidr_list {
    cidr_net *nets;
    size_t n;
};

static const uint8_t cidr_v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Parses an address; *is_v4 says which family it was written in. 0 or -1. */
static int cidr_addr(const char *text, uint8_t out[16], int *is_v4)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, text, &a4) == 1) {
        memcpy(out, cidr_v4_prefix, 12);
        memcpy(out + 12, &a4, 4);
        *is_v4 = 1;
        return 0;
    }
    if (inet_pton(AF_INET6, text, &a6) == 1) {
        memcpy(out, &a6, 16);
        *is_v4 = 0;
        return 0;
    }
    return -1;
}

int cidr_parse_addr(const char *text, uint8_t out[16])
{
    int is_v4;
    if (!text || strlen(text) >= CIDR_ITEM_MAX)
        return -1;
    return cidr_addr(text, out, &is_v4);
}

/* Does addr fall in the first bits of net? */
static int cidr_net_has(const cidr_net *net, const uint8_t addr[16])
{
    unsigned full = net->bits / 8, rest = net->bits % 8;
    if (memcmp(net->addr, addr, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (net->addr[full] & mask) == (addr[full] & mask);
}

int cidr_net_parse(const char *item, cidr_net *net, const char **why)
{
    char buf[CIDR_ITEM_MAX];
    if (strlen(item) >= sizeof(buf)) {
        *why = "too long";
        return -1;
    }
    snprintf(buf, sizeof(buf), "%s", item);
    char *slash = strchr(buf, '/');
    long prefix = -1;
    if (slash) {
        *slash = '\0';
        const char *p = slash + 1;
        if (!*p || strlen(p) > 3) {
            *why = "bad prefix length";
            return -1;
        }
        prefix = 0;
        for (; *p; p++) {
            if (*p < '0' || *p > '9') {
                *why = "bad prefix length";
                return -1;
            }
            prefix = prefix * 10 + (*p - '0');
        }
    }
    int is_v4;
    if (cidr_addr(buf, net->addr, &is_v4) != 0) {
        *why = "not an IPv4 or IPv6 address";
        return -1;
    }
    long max = is_v4 ? 32 : 128;
    if (prefix > max) {
        *why = "prefix length too long";
        return -1;
    }
    net->bits = (unsigned)(prefix < 0 ? 128 : is_v4 ? 96 + prefix : prefix);
    /* no bit may be set after the prefix */
    for (unsigned b = net->bits; b < 128; b++) {
        if (net->addr[b / 8] & (0x80 >> (b % 8))) {
            *why = "address bits set after the prefix";
            return -1;
        }
    }
    return 0;
}

cidr_list *cidr_list_parse(const char *text, char *err, size_t errcap)
{
    cidr_list *l = xcalloc(1, sizeof(*l));
    char *copy = xstrdup(text ? text : "");
    size_t cap = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ' || *tok == '\t')
            tok++;
        size_t len = strlen(tok);
        while (len && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
            tok[--len] = '\0';
        if (!len)
            continue;
        if (l->n == cap) {
            cap = cap ? cap * 2 : 4;
            l->nets = xrealloc(l->nets, cap * sizeof(*l->nets));
        }
        const char *why = NULL;
        if (cidr_net_parse(tok, &l->nets[l->n], &why) != 0) {
            if (err && errcap)
                snprintf(err, errcap, "\"%.64s\": %s", tok, why);
            goto fail;
        }
        l->n++;
    }
    free(copy);
    return l;
fail:
    free(copy);
    cidr_list_free(l);
    return NULL;
}

void cidr_list_free(cidr_list *l)
{
    if (!l)
        return;
    free(l->nets);
    free(l);
}

size_t cidr_list_count(const cidr_list *l)
{
    return l ? l->n : 0;
}

int cidr_nets_match(const cidr_net *nets, size_t n, const char *addr)
{
    uint8_t a[16];
    if (n == 0 || cidr_parse_addr(addr, a) != 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (cidr_net_has(&nets[i], a))
            return 1;
    return 0;
}

int cidr_list_match(const cidr_list *l, const char *addr)
{
    return l ? cidr_nets_match(l->nets, l->n, addr) : 0;
}
