/* net_addr: the one place that compares, sizes and prints socket addresses (IPv4 and IPv6),
 * for the HTTP client's connection pool and the upstream's peer set. */
#ifndef COMMON_NET_ADDR_H
#define COMMON_NET_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* The length of an AF_INET or AF_INET6 address (sockaddr_in for anything else). */
socklen_t net_addr_len(const struct sockaddr *sa);
/* 1 when a and b are the same family, address, port (and IPv6 scope); 0 otherwise. */
int net_addr_eq(const struct sockaddr *a, const struct sockaddr *b);
/* "127.0.0.1:80" or "[::1]:80" ("invalid" for another family), as a Host header value. */
void net_addr_text(const struct sockaddr *sa, char *out, size_t size);

#endif
