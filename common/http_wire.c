/* http_wire: the HTTP/1.1 wire format of requests: the llhttp 8.1 callbacks and the strict
 * framing checks around them.
 *
 * llhttp is used without any lenient flag. What it lets through is rejected here:
 * obs-fold and the head's size (a scan of the raw head bytes), whitespace before a colon
 * (the raw field name ends with it), an empty field name, a duplicate or missing Host,
 * Transfer-Encoding on HTTP/1.0 or other than exactly "chunked", HTTP/0.9, and chunk data
 * not followed by CRLF (the two bytes after each chunk's data are checked in the raw input,
 * by absolute stream offset, across reads). llhttp is built in strict mode where it is
 * compiled here, and the syntax is checked again whatever the build (http_syntax.h): field
 * names are tokens, field values and the request-target carry no control character, Host is
 * an authority. Chunk extensions are bounded per chunk (HTTP_CHUNK_EXT_MAX, then 400) and
 * count against the body limit (413).
 *
 * A callback that rejects the request records the status (parse_error); conn_parse() then
 * answers it through conn_fail() and the connection closes. */
#include "http_server_int.h"

#include <string.h>
#include <strings.h>

#include "http_syntax.h"

static llhttp_settings_t http_parser_settings;
static int http_settings_ready;

/* 1 when the parser must not go on for now. */
int conn_blocked(http_conn *c)
{
    if (c->closing || c->shutting)
        return 1;
    http_req *r = c->cur;
    if (r) {
        if (!r->headers_done)
            return 0;
        switch (r->body_mode) {
        case BODY_NONE: return r->has_body;
        case BODY_STREAM: return r->paused;
        case BODY_ABANDON: return 1;
        default: return 0;
        }
    }
    return c->no_more || c->nreqs >= c->srv->limits.max_pipeline;
}

static int parse_error(http_conn *c, int status, const char *msg)
{
    if (!c->err_status) {
        c->err_status = status;
        c->err_msg = msg;
    }
    return HPE_USER;
}

/* Scans raw head bytes up to the empty line: rejects obs-fold (a line starting with SP or
 * HTAB) and bounds the head's size. Returns 0, or -1 with c->err_status set. */
static int conn_scan_head(http_conn *c, const char *p, const char *end)
{
    const http_limits *l = &c->srv->limits;
    for (; p < end && c->scan == 1; p++) {
        char ch = *p;
        c->head_bytes++;
        if (c->scan_cr) {
            c->scan_cr = 0;
            if (ch == '\n') {
                c->scan = 2;
                break;
            }
            c->scan_line_start = 0;
        } else if (c->scan_line_start) {
            if (is_ows(ch)) {
                parse_error(c, 400, "Obsolete header line folding is not accepted.");
                return -1;
            }
            if (ch == '\r') {
                c->scan_cr = 1;
                continue;
            }
            if (ch == '\n') {
                c->scan = 2;
                break;
            }
            c->scan_line_start = 0;
        }
        if (ch == '\n') {
            c->scan_line_start = 1;
            c->scan_reqline = 0;
        }
    }
    if (c->scan_reqline && c->head_bytes > l->max_request_line) {
        parse_error(c, 414, "The request line is too long.");
        return -1;
    }
    if (c->head_bytes > l->max_request_line + l->max_headers_size + 4) {
        parse_error(c, 431, "The request headers are too large.");
        return -1;
    }
    return 0;
}

/* Checks the CRLF that must follow a chunk's data, for its bytes inside [abs, abs+len). */
static int conn_check_crlf(http_conn *c, const char *data, size_t len, uint64_t abs)
{
    while (c->crlf_left > 0) {
        uint64_t pos = c->crlf_abs + (uint64_t)(2 - c->crlf_left);
        if (pos < abs || pos >= abs + len)
            return 0;
        char want = c->crlf_left == 2 ? '\r' : '\n';
        if (data[pos - abs] != want) {
            parse_error(c, 400, "Chunk data is not followed by CRLF.");
            return -1;
        }
        c->crlf_left--;
    }
    return 0;
}

static int cb_message_begin(llhttp_t *p)
{
    http_conn *c = p->data;
    if (c->no_more || c->closing)
        return parse_error(c, 400, "No further request is accepted on this connection.");
    http_req *r = req_new(c);
    queue_append(c, r);
    r->parsing = 1;
    c->cur = r;
    c->served++;
    c->scan = 0;
    c->scan_ptr = NULL;
    c->head_bytes = 0;
    c->crlf_left = 0;
    c->chunk_ext = 0;
    c->err_status = 0;
    if (c->tkind != TIMER_HEADER)
        conn_arm(c, TIMER_HEADER, c->srv->limits.header_timeout_ms);
    return 0;
}

static int cb_method(llhttp_t *p, const char *at, size_t len)
{
    http_conn *c = p->data;
    (void)len;
    if (c->scan == 0) {
        c->scan = 1;
        c->scan_ptr = at;
        c->scan_line_start = 0;
        c->scan_cr = 0;
        c->scan_reqline = 1;
    }
    return 0;
}

static int cb_url(llhttp_t *p, const char *at, size_t len)
{
    http_conn *c = p->data;
    http_req *r = c->cur;
    if (r->target.len + len + 16 > c->srv->limits.max_request_line)
        return parse_error(c, 414, "The request line is too long.");
    if (!http_syntax_target(at, len))
        return parse_error(c, 400, "The request-target has a character that is not allowed.");
    buf_append(&r->target, at, len);
    return 0;
}

static int header_sizes_ok(http_conn *c, http_req *r)
{
    const http_limits *l = &c->srv->limits;
    if (r->hbuf.len - r->field_start > l->max_header_line)
        return parse_error(c, 431, "A request header line is too long.");
    if (r->hbuf.len > l->max_headers_size)
        return parse_error(c, 431, "The request headers are too large.");
    return 0;
}

static int cb_header_field(llhttp_t *p, const char *at, size_t len)
{
    http_conn *c = p->data;
    http_req *r = c->cur;
    buf_append(&r->hbuf, at, len);
    return header_sizes_ok(c, r);
}

static int cb_header_field_complete(llhttp_t *p)
{
    http_conn *c = p->data;
    http_req *r = c->cur;
    size_t n = r->hbuf.len - r->field_start;
    if (n == 0)
        return parse_error(c, 400, "A request header has an empty name.");
    if (is_ows(r->hbuf.p[r->hbuf.len - 1]))
        return parse_error(c, 400, "Whitespace between a header name and its colon.");
    if (!http_syntax_token(r->hbuf.p + r->field_start, n))
        return parse_error(c, 400, "A request header name is not a token.");
    if (!r->headers_done && r->nhdrs >= c->srv->limits.max_headers)
        return parse_error(c, 431, "Too many request headers.");
    buf_append(&r->hbuf, "", 1); /* the name's NUL */
    r->value_start = r->hbuf.len;
    return 0;
}

static int cb_header_value(llhttp_t *p, const char *at, size_t len)
{
    http_conn *c = p->data;
    http_req *r = c->cur;
    if (!http_syntax_field_value(at, len))
        return parse_error(c, 400, "A request header value has a control character.");
    buf_append(&r->hbuf, at, len);
    return header_sizes_ok(c, r);
}

static int cb_header_value_complete(llhttp_t *p)
{
    http_conn *c = p->data;
    http_req *r = c->cur;
    while (r->hbuf.len > r->value_start && is_ows(r->hbuf.p[r->hbuf.len - 1]))
        r->hbuf.len--;
    r->hbuf.p[r->hbuf.len] = '\0';
    const char *name = r->hbuf.p + r->field_start;
    const char *value = r->hbuf.p + r->value_start;
    size_t vlen = r->hbuf.len - r->value_start;
    if (r->headers_done) {
        /* a trailer field: checked for size above, not kept */
        r->hbuf.len = r->field_start;
        r->hbuf.p[r->hbuf.len] = '\0';
        return 0;
    }
    if (strcasecmp(name, "Host") == 0) {
        r->host_count++;
    } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
        r->te_count++;
        if (!http_token_equals(value, vlen, "chunked"))
            return parse_error(c, 400, "Transfer-Encoding must be exactly \"chunked\".");
    } else if (strcasecmp(name, "Expect") == 0) {
        r->expect_count++;
        if (http_token_equals(value, vlen, "100-continue"))
            r->expect_continue = 1;
        else
            r->expect_continue = -1;
    }
    if (r->nhdrs == r->hcap) {
        r->hcap = r->hcap ? r->hcap * 2 : 16;
        http_hdr *h = realloc(r->hdrs, r->hcap * sizeof *h);
        if (!h)
            abort();
        r->hdrs = h;
    }
    r->hdrs[r->nhdrs].name = r->field_start;
    r->hdrs[r->nhdrs].value = r->value_start;
    r->nhdrs++;
    buf_append(&r->hbuf, "", 1);
    r->field_start = r->hbuf.len;
    return 0;
}

/* Splits the target into path and query. */
static void req_split_target(http_req *r)
{
    const char *t = r->target.p ? r->target.p : "";
    size_t n = strcspn(t, "?");
    r->path = xstrndup(t, n);
    r->query = t[n] == '?' ? t + n + 1 : "";
}

static int cb_headers_complete(llhttp_t *p)
{
    http_conn *c = p->data;
    http_req *r = c->cur;

    /* finish the raw scan: the rest of the head is in this slice */
    if (c->scan == 1) {
        const char *from = c->scan_ptr ? c->scan_ptr : c->feed_ptr;
        if (conn_scan_head(c, from, c->feed_ptr + c->feed_len) < 0)
            return -1;
    }
    c->scan = 2;
    if (p->http_major != 1 || p->http_minor > 1)
        return parse_error(c, p->http_major == 0 ? 400 : 505, "Only HTTP/1.0 and 1.1 are served.");
    r->version_minor = p->http_minor;
    if (p->method == HTTP_CONNECT)
        return parse_error(c, 400, "CONNECT is not supported.");
    if (r->host_count > 1)
        return parse_error(c, 400, "More than one Host header.");
    if (r->host_count == 0 && r->version_minor == 1)
        return parse_error(c, 400, "An HTTP/1.1 request needs a Host header.");
    const char *host = http_req_header(r, "Host");
    if (host && !http_syntax_host(host, strlen(host)))
        return parse_error(c, 400, "The Host header is not a valid host[:port].");
    if ((p->flags & F_TRANSFER_ENCODING) || r->te_count) {
        if (r->version_minor == 0)
            return parse_error(c, 400, "Transfer-Encoding is not allowed in HTTP/1.0.");
        if (r->te_count != 1 || !(p->flags & F_CHUNKED))
            return parse_error(c, 400, "Transfer-Encoding must be exactly \"chunked\".");
    }
    if (r->version_minor == 0)
        r->expect_continue = 0; /* HTTP/1.0: Expect is ignored */
    else if (r->expect_count > 1 || r->expect_continue < 0)
        return parse_error(c, 417, "Only \"Expect: 100-continue\" is supported.");

    r->method = llhttp_method_name((llhttp_method_t)p->method);
    r->is_head = p->method == HTTP_HEAD;
    req_split_target(r);
    if (p->flags & F_CHUNKED)
        r->content_length = -1;
    else if (p->flags & F_CONTENT_LENGTH)
        r->content_length = (int64_t)p->content_length;
    r->has_body = r->content_length != 0;
    r->keep_alive = llhttp_should_keep_alive(p);
    req_set_id(r);
    r->headers_done = 1;
    r->t_start = uv_hrtime();
    conn_disarm(c);
    if (!r->keep_alive)
        c->no_more = 1;

    http_server *srv = c->srv;
    r->handler_owes = 1;
    req_hold(r);
    srv->handler(r, srv->handler_ud);
    int stop = c->closing || conn_blocked(c);
    if (!stop && r->has_body && !r->body_done && c->tkind != TIMER_BODY)
        conn_arm(c, TIMER_BODY, srv->limits.body_timeout_ms);
    req_release(r); /* freed here when the handler's reply closed the connection */
    return stop ? HPE_PAUSED : 0;
}

static int cb_chunk_header(llhttp_t *p)
{
    http_conn *c = p->data;
    c->chunk_left = p->content_length;
    c->chunk_ext = 0;
    return 0;
}

/* n bytes of a chunk's extensions (a name or value piece, or its ';' or '='): they carry
 * nothing we use, so at most HTTP_CHUNK_EXT_MAX per chunk, and they count against the body
 * limit (the handler's for a buffered body, the server's default otherwise). */
static int conn_chunk_ext(http_conn *c, size_t n)
{
    http_req *r = c->cur;
    c->chunk_ext += n;
    r->ext_received += n;
    if (c->chunk_ext > HTTP_CHUNK_EXT_MAX)
        return parse_error(c, 400, "A chunk extension is too long.");
    int buffered = r->body_mode == BODY_READ;
    uint64_t max = buffered ? r->body_max : c->srv->limits.max_body;
    if (r->ext_received + (buffered ? r->body_received : 0) > max)
        return parse_error(c, 413, "The request body is too large.");
    return 0;
}

static int cb_chunk_ext_piece(llhttp_t *p, const char *at, size_t len)
{
    (void)at;
    return conn_chunk_ext(p->data, len);
}

static int cb_chunk_ext_delim(llhttp_t *p)
{
    return conn_chunk_ext(p->data, 1);
}

static int cb_body(llhttp_t *p, const char *at, size_t len)
{
    http_conn *c = p->data;
    http_req *r = c->cur;
    if (r->content_length < 0) {
        c->chunk_left -= len;
        if (c->chunk_left == 0) {
            c->crlf_abs = c->feed_abs + (uint64_t)(at + len - c->feed_ptr);
            c->crlf_left = 2;
            if (conn_check_crlf(c, c->feed_ptr, c->feed_len, c->feed_abs) < 0)
                return HPE_USER;
        }
    }
    r->body_received += len;
    switch (r->body_mode) {
    case BODY_READ:
        if (r->body_received + r->ext_received > r->body_max)
            return parse_error(c, 413, "The request body is too large.");
        buf_append(&r->body, at, len);
        break;
    case BODY_STREAM: {
        if (!r->on_data || !len)
            return r->paused ? HPE_PAUSED : 0;
        req_hold(r);
        r->on_data(r, at, len);
        int stop = c->closing || r->paused;
        req_release(r);
        return stop ? HPE_PAUSED : 0;
    }
    case BODY_DISCARD: /* a known rest of at most HTTP_DISCARD_MAX bytes */ break;
    case BODY_NONE:
    case BODY_ABANDON: return HPE_PAUSED;
    }
    return 0;
}

static int cb_message_complete(llhttp_t *p)
{
    http_conn *c = p->data;
    http_req *r = c->cur;
    c->cur = NULL;
    c->scan = 0;
    if (c->tkind == TIMER_BODY)
        conn_disarm(c);
    r->body_done = 1;
    req_hold(r);
    if (r->body_mode == BODY_READ && r->read_done && !r->srv_replied) {
        r->read_done(r);
    } else if (r->body_mode == BODY_STREAM && r->on_end) {
        r->on_end(r);
    }
    r->parsing = 0;
    req_release(r);
    if (c->closing || conn_blocked(c))
        return HPE_PAUSED;
    return 0;
}

static void http_settings_init(void)
{
    if (http_settings_ready)
        return;
    llhttp_settings_init(&http_parser_settings);
    http_parser_settings.on_message_begin = cb_message_begin;
    http_parser_settings.on_method = cb_method;
    http_parser_settings.on_url = cb_url;
    http_parser_settings.on_header_field = cb_header_field;
    http_parser_settings.on_header_field_complete = cb_header_field_complete;
    http_parser_settings.on_header_value = cb_header_value;
    http_parser_settings.on_header_value_complete = cb_header_value_complete;
    http_parser_settings.on_headers_complete = cb_headers_complete;
    http_parser_settings.on_chunk_header = cb_chunk_header;
    http_parser_settings.on_chunk_extension_name = cb_chunk_ext_piece;
    http_parser_settings.on_chunk_extension_value = cb_chunk_ext_piece;
    http_parser_settings.on_chunk_extension_name_complete = cb_chunk_ext_delim;
    http_parser_settings.on_chunk_extension_value_complete = cb_chunk_ext_delim;
    http_parser_settings.on_body = cb_body;
    http_parser_settings.on_message_complete = cb_message_complete;
    http_settings_ready = 1;
}

const llhttp_settings_t *http_wire_settings(void)
{
    http_settings_init();
    return &http_parser_settings;
}

/* A request the parser cannot go on with: answered (in order) and the connection closes. */
void conn_fail(http_conn *c, int status, const char *msg)
{
    http_req *r = c->cur;
    c->no_more = 1;
    if (c->closing)
        return;
    if (!r) {
        r = req_new(c);
        queue_append(c, r);
    }
    c->cur = NULL;
    r->parsing = 0;
    if (!r->id[0])
        req_set_id(r);
    req_hold(r);
    req_error_reply(r, status, msg);
    req_release(r);
}

/* Parses one slice of input; returns the bytes consumed, or -1 when the connection failed. */
long conn_parse(http_conn *c, const char *data, size_t len)
{
    if (c->llhttp_paused) {
        llhttp_resume(&c->parser);
        c->llhttp_paused = 0;
    }
    c->feed_ptr = data;
    c->feed_len = len;
    c->feed_abs = c->in_total;
    c->err_status = 0;
    if (conn_check_crlf(c, data, len, c->in_total) < 0) {
        conn_fail(c, c->err_status, c->err_msg);
        return -1;
    }
    llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
    size_t used = len;
    if (err == HPE_PAUSED) {
        used = (size_t)(llhttp_get_error_pos(&c->parser) - data);
        c->llhttp_paused = 1;
    } else if (err == HPE_PAUSED_UPGRADE) {
        /* an Upgrade request answered as plain HTTP: go on with HTTP */
        used = (size_t)(llhttp_get_error_pos(&c->parser) - data);
        llhttp_resume_after_upgrade(&c->parser);
    } else if (err != HPE_OK) {
        if (c->closing)
            return -1;
        int status = c->err_status ? c->err_status : 400;
        const char *msg = c->err_status ? c->err_msg : "The request is malformed.";
        conn_fail(c, status, msg);
        return -1;
    }
    if (c->closing)
        return -1;
    if (c->scan == 1) {
        const char *from = c->scan_ptr ? c->scan_ptr : data;
        if (from < data + used && conn_scan_head(c, from, data + used) < 0) {
            conn_fail(c, c->err_status, c->err_msg);
            return -1;
        }
        c->scan_ptr = NULL;
    }
    c->in_total += used;
    return (long)used;
}
