/* http_headers: the table of special header names (see http_headers.h), in lower case,
 * sorted by name. */
#include "http_headers.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct http_hdr_name {
    const char *name;
    unsigned flags;
    size_t len;
} http_hdr_name;

#define HH(name, flags)                                                                            \
    {                                                                                              \
        name, flags, sizeof name - 1                                                               \
    }

static const http_hdr_name hh_table[] = {
    HH("connection", HTTP_HDR_HOP),
    HH("content-length", HTTP_HDR_FRAMING),
    HH("content-security-policy", HTTP_HDR_SECURITY),
    HH("date", HTTP_HDR_REPLACED),
    HH("expect", HTTP_HDR_REPLACED),
    HH("forwarded", HTTP_HDR_FORWARDING),
    HH("host", HTTP_HDR_REPLACED),
    HH("keep-alive", HTTP_HDR_HOP),
    HH("proxy-authenticate", HTTP_HDR_HOP),
    HH("proxy-authorization", HTTP_HDR_HOP),
    HH("proxy-connection", HTTP_HDR_HOP),
    HH("referrer-policy", HTTP_HDR_SECURITY),
    HH("strict-transport-security", HTTP_HDR_SECURITY),
    HH("te", HTTP_HDR_HOP),
    HH("trailer", HTTP_HDR_HOP),
    HH("trailers", HTTP_HDR_HOP),
    HH("transfer-encoding", HTTP_HDR_FRAMING),
    HH("upgrade", HTTP_HDR_HOP),
    HH("x-content-type-options", HTTP_HDR_SECURITY),
    HH("x-forwarded-for", HTTP_HDR_FORWARDING),
    HH("x-forwarded-host", HTTP_HDR_FORWARDING),
    HH("x-forwarded-proto", HTTP_HDR_FORWARDING),
    HH("x-frame-options", HTTP_HDR_SECURITY),
    HH("x-real-ip", HTTP_HDR_FORWARDING),
    HH("x-request-id", HTTP_HDR_REPLACED),
};

/* Every header of every proxied message is looked up: the entries are grouped by their first
 * letter (the table is sorted), and the length rules out most of a group before a comparison. */
typedef struct hh_range {
    unsigned char start, end;
} hh_range;
static hh_range hh_by_letter[26];

__attribute__((constructor)) static void hh_index(void)
{
    for (size_t i = 0; i < sizeof hh_table / sizeof hh_table[0]; i++) {
        hh_range *r = &hh_by_letter[hh_table[i].name[0] - 'a'];
        if (r->end == 0)
            r->start = (unsigned char)i;
        r->end = (unsigned char)(i + 1);
    }
}

unsigned http_headers_flags(const char *name)
{
    unsigned first = (unsigned char)(name[0] | 0x20) - 'a';
    if (first >= 26)
        return 0;
    hh_range r = hh_by_letter[first];
    if (r.start == r.end)
        return 0;
    size_t n = strlen(name);
    for (size_t i = r.start; i < r.end; i++) {
        const http_hdr_name *e = &hh_table[i];
        if (e->len == n && strcasecmp(name, e->name) == 0)
            return e->flags;
    }
    return 0;
}

int http_headers_list_has(const char *list, const char *token)
{
    if (!list)
        return 0;
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
