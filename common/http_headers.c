/* http_headers: the table of special header names (see http_headers.h). Sorted by lower-case
 * name for bsearch. */
#include "http_headers.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct http_hdr_name {
    const char *name;
    unsigned flags;
} http_hdr_name;

static const http_hdr_name hh_table[] = {
    {"connection", HTTP_HDR_HOP},
    {"content-length", HTTP_HDR_FRAMING},
    {"content-security-policy", HTTP_HDR_SECURITY},
    {"date", HTTP_HDR_REPLACED},
    {"expect", HTTP_HDR_REPLACED},
    {"forwarded", HTTP_HDR_FORWARDING},
    {"host", HTTP_HDR_REPLACED},
    {"keep-alive", HTTP_HDR_HOP},
    {"proxy-authenticate", HTTP_HDR_HOP},
    {"proxy-authorization", HTTP_HDR_HOP},
    {"proxy-connection", HTTP_HDR_HOP},
    {"referrer-policy", HTTP_HDR_SECURITY},
    {"strict-transport-security", HTTP_HDR_SECURITY},
    {"te", HTTP_HDR_HOP},
    {"trailer", HTTP_HDR_HOP},
    {"trailers", HTTP_HDR_HOP},
    {"transfer-encoding", HTTP_HDR_FRAMING},
    {"upgrade", HTTP_HDR_HOP},
    {"x-content-type-options", HTTP_HDR_SECURITY},
    {"x-forwarded-for", HTTP_HDR_FORWARDING},
    {"x-forwarded-host", HTTP_HDR_FORWARDING},
    {"x-forwarded-proto", HTTP_HDR_FORWARDING},
    {"x-frame-options", HTTP_HDR_SECURITY},
    {"x-real-ip", HTTP_HDR_FORWARDING},
    {"x-request-id", HTTP_HDR_REPLACED},
};

static int hh_cmp(const void *key, const void *entry)
{
    return strcasecmp(key, ((const http_hdr_name *)entry)->name);
}

unsigned http_headers_flags(const char *name)
{
    const http_hdr_name *e =
        bsearch(name, hh_table, sizeof hh_table / sizeof hh_table[0], sizeof hh_table[0], hh_cmp);
    return e ? e->flags : 0;
}

int http_headers_list_has(const char *list, const char *token)
{
    size_t n = strlen(token);
    const char *v = list;
    while (v && *v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        const char *s = v;
        while (*v && *v != ',')
            v++;
        const char *e = v;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - s) == n && strncasecmp(s, token, n) == 0)
            return 1;
    }
    return 0;
}

int http_headers_hop(const char *name, const char *conn)
{
    return (http_headers_flags(name) & HTTP_HDR_NOT_FORWARDED) || http_headers_list_has(conn, name);
}
