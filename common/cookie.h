/* cookie: one cookie's value from a request's Cookie headers (RFC 6265 section 5.4:
 * "name=value" pairs separated by ';', spaces around a pair ignored). */
#ifndef COMMON_COOKIE_H
#define COMMON_COOKIE_H

#include <stddef.h>

#include "http_server.h"

#define COOKIE_ABSENT   (-1)
#define COOKIE_TOO_LONG (-2)

/* The first cookie called name in one Cookie header value, copied NUL-terminated into out
 * (cap bytes). Returns its length, COOKIE_ABSENT, or COOKIE_TOO_LONG. */
long cookie_find(const char *header, const char *name, char *out, size_t cap);
/* The same over every Cookie header of req, in order. */
long cookie_get(const http_req *req, const char *name, char *out, size_t cap);

#endif
