"""test_http_server: the HTTP/1.1 server (common/http_server.c) and router through
tests/integration/echo_server, with raw sockets and http.client: keep-alive, pipelining,
bodies both ways, limits, timeouts, 100-continue, strict framing, drain, max_connections and
the 1 GiB upload that must stay under 32 MiB resident."""
import contextlib
import http.client
import os
import select
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from check import eq, main, test, true  # noqa: E402
from procs import SANITIZED, Proc, Response, binary, free_port  # noqa: E402

SUITE = "http_server"
_procs = []


def start(*opts):
    port = free_port(20000, 20999)
    p = Proc([binary("tests/echo_server"), str(port)] + list(opts), port=port)
    _procs.append(p)
    return p


def connect(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return s, s.makefile("rb")


def read_response(f, head=False):
    """One response from a buffered reader (so pipelined responses are not lost)."""
    line = f.readline()
    if not line:
        raise EOFError("connection closed before a response")
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    status = int(parts[1])
    headers = []
    while True:
        h = f.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        name, _, value = h.decode("latin-1").partition(":")
        headers.append((name.strip().lower(), value.strip()))
    r = Response(status, headers, b"")
    if head or status < 200 or status in (204, 304):
        return r
    body = b""
    if (r.header("transfer-encoding") or "").lower() == "chunked":
        while True:
            size = int(f.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while f.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            body += f.read(size)
            f.read(2)
    elif r.header("content-length") is not None:
        body = f.read(int(r.header("content-length")))
    else:
        body = f.read()
    r.body = body
    return r


def close(sock, f):
    f.close()
    sock.close()


@contextlib.contextmanager
def connected(port, timeout=5.0):
    """A raw connection (socket, buffered reader) for a with block, closed on leaving it."""
    s, f = connect(port, timeout)
    try:
        yield s, f
    finally:
        close(s, f)


@contextlib.contextmanager
def running(*opts):
    """An echo_server of its own started with opts for a with block, stopped on leaving it."""
    p = start(*opts)
    try:
        yield p
    finally:
        p.stop()


def client(port, timeout):
    """An http.client connection for a with block, closed on leaving it."""
    return contextlib.closing(http.client.HTTPConnection("127.0.0.1", port, timeout=timeout))


def is_closed(sock, f, wait=3.0):
    """True when the server closed the connection (EOF) within wait seconds."""
    sock.settimeout(wait)
    try:
        return f.read(1) == b""
    except socket.timeout:
        return False
    except OSError:  # reset
        return True


def expect_rejected(port, raw, status=400):
    """Sends raw (bytes, or a list of pieces sent with a pause between them): the answer is
    status and a close."""
    pieces = raw if isinstance(raw, list) else [raw]
    with connected(port) as (s, f):
        for p in pieces:
            s.sendall(p)
            if len(pieces) > 1:
                time.sleep(0.15)
        r = read_response(f)
        eq(r.status, status, f"status for {pieces[0][:60]!r}")
        eq(r.header("connection"), "close", "Connection header")
        true((r.header("content-type") or "").startswith("application/json"), "a JSON error")
        true(is_closed(s, f), "the connection is closed after the error")
        return r


def expect_ok(port, raw, body=b"hello\n"):
    """Sends raw: a 200 whose body is body."""
    with connected(port) as (s, f):
        s.sendall(raw)
        r = read_response(f)
        eq(r.status, 200, f"status for {raw[:60]!r}")
        eq(r.body, body)


def setup():
    return start("--max-body=1048576")


def teardown(p):
    p.stop()


# ---------------------------------------------------------------- basics

@test
def keep_alive_reuses_connection(p):
    with client(p.port, 5) as c:
        c.request("GET", "/hello")
        r = c.getresponse()
        eq(r.read(), b"hello\n")
        first = c.sock.getsockname()
        for _ in range(3):
            c.request("POST", "/echo", body=b"xyz")
            r = c.getresponse()
            eq(r.status, 200)
            eq(r.read(), b"xyz")
            eq(c.sock.getsockname(), first, "same connection")
        true(r.getheader("Date", "").endswith("GMT"), "Date header")
        true(r.getheader("Connection") is None, "no Connection: close")


@test
def http10_close_and_keep_alive(p):
    with connected(p.port) as (s, f):
        s.sendall(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = read_response(f)
        eq(r.status, 200)
        eq(r.header("connection"), "keep-alive")
        s.sendall(b"GET /hello HTTP/1.0\r\n\r\n")
        r = read_response(f)
        eq(r.body, b"hello\n")
        eq(r.header("connection"), "close")
        true(is_closed(s, f), "HTTP/1.0 without keep-alive closes")


@test
def request_id_kept_or_generated(p):
    with connected(p.port) as (s, f):
        s.sendall(b"GET /headers HTTP/1.1\r\nHost: a\r\nX-Request-ID: abc-123\r\n\r\n")
        r = read_response(f)
        eq(r.header("x-request-id"), "abc-123")
        eq(__import__("json").loads(r.body)["request_id"], "abc-123")
        s.sendall(b"GET /headers HTTP/1.1\r\nHost: a\r\nX-Request-ID: " + b"x" * 200 + b"\r\n\r\n")
        r = read_response(f)
        rid = r.header("x-request-id")
        true(rid and len(rid) == 32 and all(ch in "0123456789abcdef" for ch in rid),
             f"generated id, got {rid!r}")
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        r2 = read_response(f)
        true(r2.header("x-request-id") not in (None, rid), "a new id per request")


@test
def head_has_no_body(p):
    with connected(p.port) as (s, f):
        s.sendall(b"HEAD /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        r = read_response(f, head=True)
        eq(r.status, 200)
        eq(r.header("content-length"), "6")
        s.sendall(b"HEAD /chunked HTTP/1.1\r\nHost: a\r\n\r\n")
        r = read_response(f, head=True)
        eq(r.header("transfer-encoding"), "chunked")
        # had a body been written, this would read it as a status line
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        r = read_response(f)
        eq(r.status, 200)
        eq(r.body, b"hello\n")


@test
def chunked_both_ways(p):
    expect_ok(p.port, b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n",
              b"hello world")
    with client(p.port, 10) as c:
        c.request("GET", "/chunked")
        r = c.getresponse()
        eq(r.getheader("Transfer-Encoding"), "chunked")
        eq(r.read(), b"abbccc")
        c.request("GET", "/big?size=3000000&chunked=1")
        r = c.getresponse()
        eq(len(r.read()), 3000000)
        c.request("GET", "/big?size=3000000")
        r = c.getresponse()
        eq(r.getheader("Content-Length"), "3000000")
        eq(len(r.read()), 3000000)


@test
def json_body_checks(p):
    with client(p.port, 5) as c:
        def post(body, ctype):
            hdrs = {"Content-Type": ctype} if ctype else {}
            c.request("POST", "/json", body=body, headers=hdrs)
            r = c.getresponse()
            return r.status, r.read()
        eq(post(b'{"a":[1,2]}', "application/json; charset=utf-8"), (200, b'{"a":[1,2]}'))
        eq(post(b'{"a":1}', None)[0], 200)
        st, body = post(b"{nope", "application/json")
        eq(st, 400)
        true(b'"invalid_json"' in body, body)
        eq(post(b"[1]", "application/json")[0], 400)
        eq(post(b'{"a":1,"a":2}', "application/json")[0], 400)
        st, body = post(b'{"a":1}', "text/plain")
        eq(st, 415)
        true(b'"unsupported_media_type"' in body, body)


@test
def router_params_404_405_head(p):
    with client(p.port, 5) as c:
        def req(method, path):
            c.request(method, path)
            r = c.getresponse()
            return r, r.read()
        r, body = req("GET", "/items/a%20b?x=1")
        eq(body, b'{"id":"a b"}')
        eq(req("GET", "/items/a%2Fb")[0].status, 404)
        eq(req("GET", "/items/a%00b")[0].status, 404)
        eq(req("GET", "/items/")[0].status, 404)
        eq(req("GET", "/items/a/b")[0].status, 404)
        r, body = req("GET", "/nope")
        eq(r.status, 404)
        true(b'"not_found"' in body, body)
        r, body = req("DELETE", "/items/1")
        eq(r.status, 405)
        eq(r.getheader("Allow"), "GET, HEAD")
        true(b'"method_not_allowed"' in body, body)
        r, body = req("HEAD", "/items/7")
        eq(r.status, 200)
        eq(body, b"")
        r, body = req("GET", "/metrics")
        true(b'http_requests_total{method="GET",route="/items/{id}",status="200"}' in body,
             "requests counted per route")
        true(b'http_request_duration_seconds_bucket{method="DELETE",route="unmatched"' in body,
             "latency histogram")


# ---------------------------------------------------------------- pipelining

@test
def pipelining_in_order_with_out_of_order_completion(p):
    with connected(p.port) as (s, f):
        t0 = time.time()
        s.sendall(b"GET /slow?ms=600&id=one HTTP/1.1\r\nHost: a\r\n\r\n"
                  b"GET /slow?ms=300&id=two HTTP/1.1\r\nHost: a\r\n\r\n"
                  b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nthree"
                  b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        bodies = [read_response(f).body for _ in range(4)]
        elapsed = time.time() - t0
        eq(bodies, [b"one", b"two", b"three", b"hello\n"])
        true(elapsed < 0.85, f"handlers ran concurrently ({elapsed:.2f}s, serial would be 0.9s)")


@test
def pipelined_streamed_response_waits_its_turn(p):
    with connected(p.port) as (s, f):
        s.sendall(b"GET /slow?ms=300&id=first HTTP/1.1\r\nHost: a\r\n\r\n"
                  b"GET /big?size=5000000&chunked=1 HTTP/1.1\r\nHost: a\r\n\r\n"
                  b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        eq(read_response(f).body, b"first")
        eq(len(read_response(f).body), 5000000)
        eq(read_response(f).body, b"hello\n")


@test
def many_pipelined_requests(p):
    with connected(p.port) as (s, f):
        n = 200
        s.sendall(b"".join(b"GET /items/%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(n)))
        for i in range(n):
            eq(read_response(f).body, b'{"id":"%d"}' % i)


@test
def pipeline_limit_stops_reading(_main):
    with running("--max-pipeline=2") as p, connected(p.port) as (s, f):
        t0 = time.time()
        s.sendall(b"".join(b"GET /slow?ms=300&id=%d HTTP/1.1\r\nHost: a\r\n\r\n" % i
                           for i in range(4)))
        bodies = [read_response(f).body for _ in range(4)]
        elapsed = time.time() - t0
        eq(bodies, [b"0", b"1", b"2", b"3"])
        true(elapsed >= 0.55, f"at most 2 in flight: two rounds of 300 ms, took {elapsed:.2f}s")


# ---------------------------------------------------------------- strict framing

HOST = b"Host: a\r\n"
SMUGGLED = b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n"


@test
def reject_obs_fold(p):
    for raw in (b"GET /hello HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n",
                b"GET /hello HTTP/1.1\r\nHost: a\r\nX-A:\r\n\tfolded\r\n\r\n",
                [b"GET /hello HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n", b" folded\r\n\r\n"]):
        expect_rejected(p.port, raw)


@test
def reject_transfer_encoding_on_http10(p):
    expect_rejected(p.port, b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n0\r\n\r\n" + SMUGGLED)


@test
def reject_duplicate_or_missing_host(p):
    for raw in (b"GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                b"GET /hello HTTP/1.1\r\n\r\n",
                b"GET /hello HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n"):
        expect_rejected(p.port, raw)


@test
def reject_space_before_colon(p):
    # llhttp 8.1 refuses it for Content-Length and Transfer-Encoding only
    for raw in (b"GET /hello HTTP/1.1\r\nHost : a\r\n\r\n",
                b"GET /hello HTTP/1.1\r\nHost: a\r\nX-Forwarded-For : 1.2.3.4\r\n\r\n",
                b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello",
                b"GET /hello HTTP/1.1\r\nHost: a\r\n: empty-name\r\n\r\n",
                [b"GET /hello HTTP/1.1\r\nHost: a\r\nX-Real-IP", b" : 1.2.3.4\r\n\r\n"]):
        expect_rejected(p.port, raw)


@test
def reject_chunk_without_crlf(p):
    head = b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    expect_rejected(p.port, head + b"5\r\nhelloXX0\r\n\r\n")
    expect_rejected(p.port, head + b"5\r\nhello\rX0\r\n\r\n")
    # the bytes after the data arrive in another read
    expect_rejected(p.port, [head + b"5\r\nhello", b"XX0\r\n\r\n"])
    expect_rejected(p.port, [head + b"5\r\nhello\r", b"X0\r\n\r\n"])
    # and a correct body split at the same places is fine
    with connected(p.port) as (s, f):
        for piece in (head + b"5\r\nhello", b"\r", b"\n0\r\n\r\n"):
            s.sendall(piece)
            time.sleep(0.1)
        eq(read_response(f).body, b"hello")


@test
def reject_content_length_with_transfer_encoding(p):
    expect_rejected(p.port, b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED)
    expect_rejected(p.port, b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                    b"Content-Length: 4\r\n\r\n0\r\n\r\n" + SMUGGLED)


@test
def reject_bad_content_length(p):
    for cl in (b"Content-Length: 5\r\nContent-Length: 5", b"Content-Length: 5\r\nContent-Length: 6",
               b"Content-Length: 5, 5", b"Content-Length: abc", b"Content-Length: +5",
               b"Content-Length: -1", b"Content-Length: 99999999999999999999999"):
        expect_rejected(p.port, b"POST /echo HTTP/1.1\r\nHost: a\r\n" + cl + b"\r\n\r\nhello")


@test
def reject_transfer_encoding_not_chunked(p):
    for te in (b"Transfer-Encoding: gzip", b"Transfer-Encoding: gzip, chunked",
               b"Transfer-Encoding: chunked, gzip",
               b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
               b"Transfer-Encoding: xchunked"):
        expect_rejected(p.port, b"POST /echo HTTP/1.1\r\nHost: a\r\n" + te + b"\r\n\r\n0\r\n\r\n")


@test
def reject_malformed_request_lines(p):
    expect_rejected(p.port, b"GET /hello\r\n\r\n")  # HTTP/0.9
    expect_rejected(p.port, b"GET /hello HTTP/1.2\r\nHost: a\r\n\r\n")
    expect_rejected(p.port, b"G@T /hello HTTP/1.1\r\nHost: a\r\n\r\n")
    expect_rejected(p.port, b"GET /hello HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n")
    expect_rejected(p.port, b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n")


@test
def reject_header_names_that_are_not_tokens(p):
    # RFC 9110 5.1: field-name = token; llhttp 8.1 lets a space through unless strict
    for name in (b"Bad Name", b"X\"Q", b"X(Y)", b"X/Y", b"X@Y", b"X[1]", b"X{", b"X=Y",
                 b"X\x01Y", b"X\x7fY", b"X\xe9"):
        expect_rejected(p.port, b"GET /hello HTTP/1.1\r\nHost: a\r\n" + name + b": y\r\n\r\n")
    # in a trailer too
    expect_rejected(p.port, b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                    b"\r\n5\r\nhello\r\n0\r\nBad Trailer: x\r\n\r\n" + SMUGGLED)
    expect_ok(p.port, b"GET /hello HTTP/1.1\r\nHost: a\r\nX-Ok_1.2~!#$%&'*+^`|: y\r\n\r\n")


@test
def reject_control_characters_in_values_and_target(p):
    for v in (b"a\x01b", b"a\x7fb", b"a\x1bb", b"a\rb", b"a\x00", b"\x0b"):
        expect_rejected(p.port, b"GET /hello HTTP/1.1\r\nHost: a\r\nX-V: " + v + b"\r\n\r\n")
    for t in (b"/hel\tlo", b"/hello\x80", b"/hello\xff", b"/hel\x01lo", b"/hello\x7f",
              b"/hel\x00lo"):
        expect_rejected(p.port, b"GET " + t + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    # obs-text and HTAB inside a value are allowed (RFC 9110 5.5)
    expect_ok(p.port, b"GET /hello HTTP/1.1\r\nHost: a\r\nX-V: caf\xe9\tau lait\r\n\r\n")


@test
def reject_host_that_is_not_an_authority(p):
    for host in (b"a b", b"a\tb", b"user@a", b"a/b", b"a?b", b"a#b", b"a:b", b"a:80:80",
                 b"a:123456", b"a:65536", b"[::1", b"[zz::1]", b"::1", b"[::1]x", b"a%2", b"a%zz",
                 b"a\\b", b"a\"b", b"<a>"):
        expect_rejected(p.port, b"GET /hello HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    expect_rejected(p.port, b"GET /hello HTTP/1.0\r\nHost: a b\r\n\r\n")
    for host in (b"example.com", b"example.com:8080", b"127.0.0.1:80", b"[::1]", b"[::1]:443",
                 b"[2001:db8::1]:65535", b"a%20b", b"xn--bcher-kva.example", b"a:", b""):
        expect_ok(p.port, b"GET /hello HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")


CHUNKED = b"Transfer-Encoding: chunked\r\n\r\n"


@test
def chunk_extensions_are_bounded(p):
    # one chunk's extensions over 16 KiB: 400 (CVE-2024-22019)
    expect_rejected(p.port, b"POST /echo HTTP/1.1\r\nHost: a\r\n" + CHUNKED +
                    b"2;" + b"a" * 17000 + b"\r\nhi\r\n0\r\n\r\n")
    expect_rejected(p.port, b"POST /echo HTTP/1.1\r\nHost: a\r\n" + CHUNKED +
                    b"2;a=" + b"v" * 17000 + b"\r\nhi\r\n0\r\n\r\n")
    # 64 MiB of extension never ends: the server answers and closes long before
    with connected(p.port) as (s, f):
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\n" + CHUNKED + b"2;")
        sent = 0
        try:
            while sent < 64 << 20 and not select.select([s], [], [], 0)[0]:
                s.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        true(sent < 4 << 20, f"{sent} bytes of one chunk extension sent before an answer")
        r = read_response(f)
        eq(r.status, 400)
        true(is_closed(s, f), "closed")
    # they count against the body limit: 2 data bytes + 101 extension bytes > 16
    expect_rejected(p.port, b"POST /small HTTP/1.1\r\nHost: a\r\n" + CHUNKED +
                    b"2;" + b"e" * 100 + b"\r\nhi\r\n0\r\n\r\n", 413)
    # many chunks under the per-chunk cap, over the body limit (1 MiB) in all: 413
    many = b"".join(b"1;" + b"x" * 10000 + b"\r\nz\r\n" for _ in range(110))
    expect_rejected(p.port, b"POST /echo HTTP/1.1\r\nHost: a\r\n" + CHUNKED + many +
                    b"0\r\n\r\n", 413)
    # streamed to the handler: the server's limit
    with connected(p.port) as (s, f):
        s.sendall(b"POST /stream-sink HTTP/1.1\r\nHost: a\r\n" + CHUNKED)
        try:
            s.sendall(many + b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        eq(read_response(f).status, 413)
    # small extensions are fine
    with connected(p.port) as (s, f):
        s.sendall(b"POST /small HTTP/1.1\r\nHost: a\r\n" + CHUNKED +
                  b"5;a=b\r\nhello\r\n0;z\r\n\r\n")
        eq(read_response(f).body, b"hello")
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\n" + CHUNKED +
                  b"5;" + b"n" * 16000 + b"\r\nhello\r\n0\r\n\r\n")
        eq(read_response(f).body, b"hello")


# ---------------------------------------------------------------- limits

@test
def limit_414_request_line(p):
    expect_rejected(p.port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414)


@test
def limit_431_headers(p):
    expect_rejected(p.port, b"GET /hello HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 9000 +
                    b"\r\n\r\n", 431)
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(101))
    expect_rejected(p.port, b"GET /hello HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n", 431)
    total = b"".join(b"X-T%d: %s\r\n" % (i, b"t" * 4000) for i in range(10))
    expect_rejected(p.port, b"GET /hello HTTP/1.1\r\nHost: a\r\n" + total + b"\r\n", 431)
    # a long head made of whitespace is bounded too
    expect_rejected(p.port, b"GET /hello HTTP/1.1\r\nHost: a\r\nX-Ws:" + b" " * 50000 +
                    b"v\r\n\r\n", 431)
    # within the limits: fine
    with connected(p.port) as (s, f):
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: a\r\nX-Ok: " + b"o" * 8000 + b"\r\n\r\n")
        eq(read_response(f).status, 200)


@test
def limit_413_body(p):
    # Content-Length over the route's limit: refused at once, before any body byte
    r = expect_rejected(p.port, b"POST /small HTTP/1.1\r\nHost: a\r\nContent-Length: 17\r\n\r\n",
                        413)
    true(b'"payload_too_large"' in r.body, r.body)
    # chunked: refused when the data goes over
    expect_rejected(p.port, b"POST /small HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n", 413)
    # the server-wide default (1 MiB here)
    expect_rejected(p.port, b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n",
                    413)
    # at the limit: fine
    with connected(p.port) as (s, f):
        s.sendall(b"POST /small HTTP/1.1\r\nHost: a\r\nContent-Length: 16\r\n\r\n" + b"s" * 16)
        eq(read_response(f).body, b"s" * 16)


@test
def unread_small_body_is_discarded_large_closes(p):
    with connected(p.port) as (s, f):
        s.sendall(b"POST /refuse HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"z" * 1000)
        r = read_response(f)
        eq(r.status, 403)
        true(r.header("connection") is None, "kept alive")
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        eq(read_response(f).body, b"hello\n")
    with connected(p.port) as (s, f):
        s.sendall(b"POST /refuse HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n" +
                  b"z" * 100000)
        r = read_response(f)
        eq(r.status, 403)
        eq(r.header("connection"), "close")
        true(is_closed(s, f), "closed instead of reading 10 MB")


@test
def expect_100_continue(p):
    # refused before upload: no 100, the final answer at once, the body never sent
    expect_rejected(p.port, b"POST /refuse HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n"
                    b"Expect: 100-continue\r\n\r\n", 403)
    # over the limit: 413 without 100
    with connected(p.port) as (s, f):
        s.sendall(b"POST /small HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        eq(read_response(f).status, 413)
    # accepted: 100 Continue, then the body, then the answer
    with connected(p.port) as (s, f):
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        eq(read_response(f).status, 100)
        s.sendall(b"hello")
        r = read_response(f)
        eq(r.status, 200)
        eq(r.body, b"hello")
    # unknown expectation
    expect_rejected(p.port, b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                    b"Expect: teapot\r\n\r\nhello", 417)


# ---------------------------------------------------------------- timeouts

@test
def timeouts_header_body_idle(_main):
    with running("--header-timeout=600", "--body-timeout=600", "--idle-timeout=600") as p:
        # slow head: 408 then close
        with connected(p.port) as (s, f):
            t0 = time.time()
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: a\r\n")
            r = read_response(f)
            eq(r.status, 408)
            true(0.4 < time.time() - t0 < 2.0, "after the header timeout")
            true(is_closed(s, f), "closed")
        # a slow-loris trickle does not extend the head's deadline
        with connected(p.port) as (s, f):
            t0 = time.time()
            for piece in (b"GET /hello HTTP/1.1\r\n", b"Host: a\r\n", b"X-A: 1\r\n",
                          b"X-B: 2\r\n", b"X-C: 3\r\n"):
                try:
                    s.sendall(piece)
                except OSError:
                    break
                time.sleep(0.25)
            eq(read_response(f).status, 408)
            true(time.time() - t0 < 2.0, "the head's whole deadline counts")
        # nothing sent at all: closed silently
        with connected(p.port) as (s, f):
            true(is_closed(s, f), "a silent connection is closed")
        # slow body: 408 then close
        with connected(p.port) as (s, f):
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
            eq(read_response(f).status, 408)
            true(is_closed(s, f), "closed")
        # idle keep-alive: closed silently after the idle timeout
        with connected(p.port) as (s, f):
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
            eq(read_response(f).status, 200)
            t0 = time.time()
            true(is_closed(s, f, wait=3.0), "idle connection closed")
            true(0.4 < time.time() - t0 < 2.0, "after the idle timeout")


@test
def send_timeout_closes_a_client_that_does_not_read(_main):
    with running("--send-timeout=500") as p:
        with connected(p.port) as (s, f):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.sendall(b"GET /big?size=500000000 HTTP/1.1\r\nHost: a\r\n\r\n")
            time.sleep(2.0)  # not reading: the server's writes stall, then it gives up
            got = 0
            s.settimeout(5)
            try:
                while True:
                    b = s.recv(1 << 20)
                    if not b:
                        break
                    got += len(b)
            except (ConnectionResetError, socket.timeout):
                pass
            true(got < 500000000, f"the server gave up ({got} bytes of 500 MB)")
        eq(p.p.poll(), None, "still running")


@test
def streamed_upload_with_pauses(p):
    with connected(p.port, timeout=20) as (s, f):
        size = 3 << 20
        t0 = time.time()
        s.sendall(b"POST /stream-sink?rate=4194304 HTTP/1.1\r\nHost: a\r\n"
                  b"Content-Length: %d\r\n\r\n" % size)
        chunk = b"u" * 65536
        for _ in range(size // len(chunk)):
            s.sendall(chunk)
        r = read_response(f)
        eq(r.status, 200)
        eq(__import__("json").loads(r.body)["bytes"], size)
        true(time.time() - t0 >= 0.6, "consumed at the handler's rate (3 MiB at 4 MiB/s)")
    # a client that leaves in the middle: the handler is told, the server goes on
    with connected(p.port) as (s, f):
        s.sendall(b"POST /stream-sink?rate=65536 HTTP/1.1\r\nHost: a\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n" + b"10000\r\n" + b"v" * 65536 + b"\r\n")
        time.sleep(0.3)
    time.sleep(0.3)
    with client(p.port, 5) as c:
        c.request("GET", "/hello")
        eq(c.getresponse().read(), b"hello\n")


# ---------------------------------------------------------------- connections and drain

@test
def max_connections_accepts_then_closes(_main):
    with running("--max-connections=2") as p, contextlib.ExitStack() as held:
        for _ in range(2):
            s, f = held.enter_context(connected(p.port))
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
            eq(read_response(f).status, 200)
        with connected(p.port) as (s3, f3):
            try:
                s3.sendall(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
            except OSError:
                pass
            true(is_closed(s3, f3), "the third connection is closed without an answer")
        close(s, f)  # the second one: a place frees up
        time.sleep(0.2)
        with connected(p.port) as (s4, f4):
            s4.sendall(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
            eq(read_response(f4).status, 200)


@test
def drain_on_sigterm(_main):
    with running("--drain-timeout=5000") as p:
        idle, idle_f = connect(p.port)
        idle.sendall(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        eq(read_response(idle_f).status, 200)
        busy, busy_f = connect(p.port)
        busy.sendall(b"GET /slow?ms=1000&id=inflight HTTP/1.1\r\nHost: a\r\n\r\n")
        time.sleep(0.2)
        p.p.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        true(is_closed(idle, idle_f, wait=2.0), "idle keep-alive connection closed")
        refused = False
        try:
            socket.create_connection(("127.0.0.1", p.port), timeout=1).close()
        except OSError:
            refused = True
        true(refused, "new connections refused while draining")
        r = read_response(busy_f)
        eq(r.status, 200)
        eq(r.body, b"inflight")
        eq(r.header("connection"), "close")
        eq(p.p.wait(timeout=5), 0, "exit status")
        close(idle, idle_f)
        close(busy, busy_f)


# ---------------------------------------------------------------- memory under a slow reader

def socket_buffers_bytes():
    total = 0
    for name in ("tcp_rmem", "tcp_wmem"):
        with open(f"/proc/sys/net/ipv4/{name}") as f:
            total += int(f.read().split()[2])
    return total


def memory_bounded_upload(p):
    total = 1 << 30
    piece = 65536
    slow_s = 10.0
    data = os.urandom(piece)
    frame = b"%x\r\n" % piece + data + b"\r\n"
    sent = [0]
    sent_at_slow_end = [None]
    err = []
    s, f = connect(p.port, timeout=60)

    def sender():
        try:
            s.sendall(b"POST /stream-sink?rate=1048576&for=%d HTTP/1.1\r\nHost: a\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n" % int(slow_s * 1000))
            while sent[0] < total:
                s.sendall(frame)
                sent[0] += piece
            s.sendall(b"0\r\n\r\n")
        except Exception as e:  # noqa: BLE001 - reported by the test
            err.append(e)

    peak = 0
    t = threading.Thread(target=sender, daemon=True)
    t0 = time.time()
    t.start()
    try:
        while t.is_alive() and time.time() - t0 < 120:
            peak = max(peak, p.rss_kib())
            if sent_at_slow_end[0] is None and time.time() - t0 >= slow_s - 0.3:
                sent_at_slow_end[0] = sent[0]
            time.sleep(0.2)
        t.join(timeout=1)
        if sent_at_slow_end[0] is None:
            sent_at_slow_end[0] = sent[0]  # all of it went in the slow phase: no backpressure
        true(not t.is_alive(), "upload finished in time")
        true(not err, f"sender: {err}")
        r = read_response(f)
        peak = max(peak, p.rss_kib())
        eq(r.status, 200)
        eq(__import__("json").loads(r.body)["bytes"], total)
        allowed = 10 * (1 << 20) + socket_buffers_bytes() + (1 << 20)
        print(f"  memory: peak VmRSS {peak} KiB; {sent_at_slow_end[0] / (1 << 20):.1f} MiB "
              f"pushed in the first {slow_s:.0f} s (allowed {allowed / (1 << 20):.1f} MiB); "
              f"1 GiB in {time.time() - t0:.1f} s", flush=True)
        true(sent_at_slow_end[0] <= allowed,
             f"backpressure: {sent_at_slow_end[0]} bytes pushed in {slow_s} s")
        true(sent_at_slow_end[0] >= 5 * (1 << 20), "the slow phase did read")
        true(peak < 32 * 1024, f"peak VmRSS {peak} KiB")
    finally:
        close(s, f)


if not SANITIZED:
    @test
    def memory_1gib_chunked_upload_to_slow_reader(p):
        memory_bounded_upload(p)


@test
def servers_exit_cleanly(p):
    """Every server started here drained on SIGTERM and exited 0, without sanitizer reports."""
    p.stop()
    for proc in _procs:
        proc.stop()
        with open(proc.log_path, errors="replace") as f:
            out = f.read()
        for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            true(bad not in out, f"{bad} in the output of {proc.p.args}: {out[-3000:]}")
        eq(proc.p.returncode, 0, f"exit status of {proc.p.args[2:]}")


if __name__ == "__main__":
    main(SUITE, setup=setup, teardown=teardown)
