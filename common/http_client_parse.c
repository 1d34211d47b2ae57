/* http_client_parse: reading a response with llhttp into its exchange (see http_client.c):
 * the status and header lines into the exchange's buffer (limits HC_MAX_HEADER_BYTES and
 * HC_MAX_HEADERS; names must be tokens, values free of control characters), 1xx answers
 * skipped, the body handed to on_data, chunk extensions bounded by HTTP_CHUNK_EXT_MAX, and a
 * pause at the end of the message so that later bytes are not taken as this one's. */
#include "http_client_int.h"
#include "http_syntax.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- parsing the response ---- */

static int hc_hdr_add(http_exchange *x, const char *at, size_t len)
{
    if (x->hbuf.len + len + 1 > HC_MAX_HEADER_BYTES)
        return -1;
    buf_append(&x->hbuf, at, len);
    return 0;
}

static http_exchange *hc_parser_x(llhttp_t *p)
{
    hc_conn *k = p->data;
    return k->x;
}

static int hc_on_message_begin(llhttp_t *p)
{
    http_exchange *x = hc_parser_x(p);
    if (!x)
        return -1;
    hc_headers_reset(x);
    return 0;
}

static int hc_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    http_exchange *x = hc_parser_x(p);
    if (!x)
        return -1;
    if (len && !http_syntax_token(at, len))
        return -1; /* "Set Cookie": EPROTO */
    if (x->headers_done)
        return 0;         /* trailers are ignored */
    if (x->hstate == 2) { /* the previous value was empty */
        if (hc_hdr_add(x, "", 1))
            return -1;
        x->hstate = 0;
    }
    if (x->hstate == 0) {
        if (x->nh == HC_MAX_HEADERS)
            return -1;
        if (x->nh == x->hoff_cap) {
            x->hoff_cap = x->hoff_cap ? x->hoff_cap * 2 : 16;
            x->hoff = xrealloc(x->hoff, x->hoff_cap * sizeof *x->hoff);
        }
        x->hoff[x->nh].name = x->hbuf.len;
        x->hoff[x->nh].value = 0;
        x->nh++;
        x->hstate = 1;
    }
    return hc_hdr_add(x, at, len);
}

static int hc_on_header_field_complete(llhttp_t *p)
{
    http_exchange *x = hc_parser_x(p);
    if (!x)
        return -1;
    if (x->headers_done || x->hstate != 1)
        return 0;
    if (hc_hdr_add(x, "", 1))
        return -1;
    x->hoff[x->nh - 1].value = x->hbuf.len;
    x->hstate = 2;
    return 0;
}

static int hc_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    http_exchange *x = hc_parser_x(p);
    if (!x)
        return -1;
    if (!http_syntax_field_value(at, len))
        return -1;
    if (x->headers_done || x->hstate != 2)
        return 0;
    return hc_hdr_add(x, at, len);
}

static int hc_on_header_value_complete(llhttp_t *p)
{
    http_exchange *x = hc_parser_x(p);
    if (!x)
        return -1;
    if (x->headers_done || x->hstate != 2)
        return 0;
    if (hc_hdr_add(x, "", 1))
        return -1;
    x->hstate = 0;
    return 0;
}

/* Makes the http_header array (pointers into hbuf, which no longer moves). */
static int hc_headers_build(http_exchange *x)
{
    if (x->hstate == 2) {
        if (hc_hdr_add(x, "", 1))
            return -1;
        x->hstate = 0;
    }
    if (x->hstate != 0)
        return -1;
    if (x->hdrs_cap < x->nh || !x->hdrs) {
        free(x->hdrs);
        x->hdrs_cap = x->nh > 16 ? x->nh : 16;
        x->hdrs = xmalloc(x->hdrs_cap * sizeof *x->hdrs);
    }
    for (size_t i = 0; i < x->nh; i++) {
        char *v = x->hbuf.p + x->hoff[i].value;
        size_t n = strlen(v);
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            v[--n] = '\0';
        if (!x->hbuf.p[x->hoff[i].name])
            return -1; /* an empty name */
        x->hdrs[i].name = x->hbuf.p + x->hoff[i].name;
        x->hdrs[i].value = v;
    }
    x->headers_done = 1;
    return 0;
}

static int hc_on_headers_complete(llhttp_t *p)
{
    http_exchange *x = hc_parser_x(p);
    int status = llhttp_get_status_code(p), r = 0;
    if (!x)
        return -1;
    if (status < 100 || status > 599)
        return -1; /* not a status of RFC 9110: EPROTO */
    if (status >= 100 && status < 200 && status != 101) {
        x->informational = 1; /* 100 Continue, 103 Early Hints: skipped */
        return 0;
    }
    if (status == 101 || hc_headers_build(x) != 0)
        return -1;
    x->status = status;
    if (x->cbs.on_response)
        r = x->cbs.on_response(x, status, x->hdrs, x->nh, x->ud);
    if (x->finished)
        return -1;
    if (r != 0) {
        hc_exchange_finish(x, HC_ECANCELED);
        return -1;
    }
    if (x->is_head || status == 204 || status == 304)
        return 1;
    return x->paused ? HPE_PAUSED : 0;
}

static int hc_on_body(llhttp_t *p, const char *at, size_t len)
{
    http_exchange *x = hc_parser_x(p);
    if (!x)
        return -1;
    if (x->cbs.on_data)
        x->cbs.on_data(x, at, len, x->ud);
    if (x->finished)
        return HPE_USER;
    return x->paused ? HPE_PAUSED : 0;
}

static int hc_on_chunk_header(llhttp_t *p)
{
    http_exchange *x = hc_parser_x(p);
    if (!x)
        return -1;
    x->chunk_ext = 0;
    return 0;
}

/* Chunk extensions: at most HTTP_CHUNK_EXT_MAX bytes per chunk, else EPROTO. */
static int hc_chunk_ext(llhttp_t *p, size_t n)
{
    http_exchange *x = hc_parser_x(p);
    if (!x)
        return -1;
    x->chunk_ext += n;
    return x->chunk_ext > HTTP_CHUNK_EXT_MAX ? -1 : 0;
}

static int hc_on_chunk_ext_piece(llhttp_t *p, const char *at, size_t len)
{
    (void)at;
    return hc_chunk_ext(p, len);
}

static int hc_on_chunk_ext_delim(llhttp_t *p)
{
    return hc_chunk_ext(p, 1); /* its ';' or '=' */
}

static int hc_on_message_complete(llhttp_t *p)
{
    http_exchange *x = hc_parser_x(p);
    if (!x)
        return -1;
    if (x->informational) {
        x->informational = 0;
        return 0;
    }
    x->resp_complete = 1;
    x->keep_alive = llhttp_should_keep_alive(p);
    return HPE_PAUSED; /* stop here: later bytes are not ours */
}

const llhttp_settings_t hc_settings = {
    .on_message_begin = hc_on_message_begin,
    .on_header_field = hc_on_header_field,
    .on_header_field_complete = hc_on_header_field_complete,
    .on_header_value = hc_on_header_value,
    .on_header_value_complete = hc_on_header_value_complete,
    .on_headers_complete = hc_on_headers_complete,
    .on_body = hc_on_body,
    .on_chunk_header = hc_on_chunk_header,
    .on_chunk_extension_name = hc_on_chunk_ext_piece,
    .on_chunk_extension_value = hc_on_chunk_ext_piece,
    .on_chunk_extension_name_complete = hc_on_chunk_ext_delim,
    .on_chunk_extension_value_complete = hc_on_chunk_ext_delim,
    .on_message_complete = hc_on_message_complete,
};
