/* cidr: lists of IPv4 and IPv6 networks in CIDR notation ("127.0.0.0/8,::1/128") and whether
 * an address belongs to one: who is a trusted proxy (svc-auth's TRUSTED_PROXIES, the
 * gateway's trusted_proxies).
 *
 * Addresses are kept as 16 bytes, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), so a peer seen
 * as ::ffff:127.0.0.1 on a dual-stack socket matches 127.0.0.0/8. A bare address is a single
 * host (/32, /128). A network with bits set after its prefix ("10.1.2.3/8") is refused: it
 * is almost always a typo in a security setting. */
#ifndef COMMON_CIDR_H
#define COMMON_CIDR_H

#include <stddef.h>
#include <stdint.h>

/* One network: 16 bytes, prefix length over them (IPv4 /n is 96 + n). A plain value. */
typedef struct cidr_net {
    uint8_t addr[16];
    unsigned bits;
} cidr_net;

/* Parses one "address[/prefix]"; 0, or -1 with a reason in *why. */
int cidr_net_parse(const char *item, cidr_net *net, const char **why);
/* 1 when addr (text) is in one of the n networks. */
int cidr_nets_match(const cidr_net *nets, size_t n, const char *addr);

typedef struct cidr_list cidr_list;

/* Parses a comma-separated list; blanks around items are ignored, an empty text is an empty
 * list (nothing trusted). Returns NULL on a malformed item, with a message naming it in err
 * (when err is not NULL). */
cidr_list *cidr_list_parse(const char *text, char *err, size_t errcap);
void cidr_list_free(cidr_list *l);
size_t cidr_list_count(const cidr_list *l);
/* 1 when addr (IPv4 or IPv6 text) is in one of the networks; 0 when not, or when addr is not
 * an address. */
int cidr_list_match(const cidr_list *l, const char *addr);

/* Parses one address ("192.0.2.1", "2001:db8::1") into 16 bytes (IPv4 mapped). 0 or -1. */
int cidr_parse_addr(const char *text, uint8_t out[16]);

#endif
