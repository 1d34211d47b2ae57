#!/usr/bin/env python3
"""test_gateway: the gateway (master + 2 workers) in front of real gw_upstream processes,
driven by real clients (Python's http.client and ssl, curl, openssl s_client).

Covers: redirects and the ACME path on the HTTP listener; TLS policy and session resumption
across workers; security and forwarding headers; hop-by-hop headers dropped; never-routed
paths; round-robin distribution; an instance killed under load (no failed GET) and taken back;
DNS re-resolution through /etc/hosts; the shared rate limit over >= 20 connections served by
both workers; gzip; /health aggregated and identical across workers; 502/504 and the retry
rules; reload under load; slow-client timeouts; oversized headers and bodies; request
smuggling; a 1 GiB streamed upload with bounded memory; /docs."""
import contextlib
import gzip
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from check import eq, main, test, true  # noqa: E402
import procs  # noqa: E402
from procs import ROOT, SANITIZED, Proc, Response, binary, wait_port  # noqa: E402

# Ports: BASE+80 .. BASE+443 in 25000-25999 (GW_TEST_PORT_BASE, at most 25500, moves them,
# e.g. to run beside another run).
BASE = int(os.environ.get("GW_TEST_PORT_BASE", "25000"))
HTTP, HTTPS = BASE + 80, BASE + 443
API_PORTS = [BASE + 101, BASE + 102, BASE + 103]
DEAD_PORT = BASE + 199
DNS_PORT = BASE + 120
RAW_PORT = BASE + 130      # a Python upstream that writes raw (bad) responses
TRUSTED_PEER = "127.0.0.5"  # a trusted proxy (trusted_proxies), the source of some tests
DNS_NAME = f"gwtest-svc-{os.getpid()}.local"   # a name of its own: runs may overlap
HOSTS = "/etc/hosts"

S = {}   # the run's state: tmp dir, processes


def tls_ctx():
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


def req(method, path, body=None, headers=None, tls=True, timeout=10, conn=None):
    """One request; on a fresh connection unless conn is given."""
    own = conn is None
    if own:
        conn = (http.client.HTTPSConnection("127.0.0.1", HTTPS, context=tls_ctx(), timeout=timeout)
                if tls else http.client.HTTPConnection("127.0.0.1", HTTP, timeout=timeout))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        if own:
            conn.close()


def raw(data, tls=False, timeout=5, port=None):
    """Sends raw bytes, returns everything read until the server closes (or timeout)."""
    s = socket.create_connection(("127.0.0.1", port or (HTTPS if tls else HTTP)), timeout=timeout)
    if tls:
        s = tls_ctx().wrap_socket(s)
    out = b""
    try:
        s.sendall(data)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except (socket.timeout, ConnectionResetError, ssl.SSLError):
        out += b"<timeout-or-reset>"
    finally:
        s.close()
    return out


# setpriv --pdeathsig: the processes end with this test even if it is killed.
DIE_WITH_TEST = ["setpriv", "--pdeathsig", "TERM"] if shutil.which("setpriv") else []


def start_upstream(port, name, host="127.0.0.1"):
    return Proc(DIE_WITH_TEST + [binary("tests/gw_upstream"), str(port), name, host], port=None)


# Responses of the raw upstream by the last path segment: what a broken service could send.
RAW_RESPONSES = {
    "ok": b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nContent-Length: 2\r\n\r\nok",
    "space-in-name": b"HTTP/1.1 200 OK\r\nSet Cookie: a=1\r\nContent-Length: 2\r\n\r\nok",
    "space-before-colon": b"HTTP/1.1 200 OK\r\nSet-Cookie : a=1\r\nContent-Length: 2\r\n\r\nok",
    "bad-name-char": b"HTTP/1.1 200 OK\r\nX(a): 1\r\nContent-Length: 2\r\n\r\nok",
    "ctl-in-value": b"HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 2\r\n\r\nok",
    "small-ext": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"2;a=b\r\nok\r\n0\r\n\r\n",
    "big-ext": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"2;" + b"e" * 20000 + b"\r\nok\r\n0\r\n\r\n",
}


class RawUpstream:
    """A thread answering each request with RAW_RESPONSES[last path segment], then closing."""

    def __init__(self, port):
        self.sock = socket.create_server(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            with c:
                c.settimeout(5)
                head = b""
                try:
                    while b"\r\n\r\n" not in head:
                        piece = c.recv(65536)
                        if not piece:
                            break
                        head += piece
                    path = head.split(b" ", 2)[1].decode("latin-1").split("?")[0]
                    c.sendall(RAW_RESPONSES.get(path.rsplit("/", 1)[-1],
                                                b"HTTP/1.1 404 Not Found\r\n"
                                                b"Content-Length: 0\r\n\r\n"))
                except (OSError, IndexError):
                    pass

    def stop(self):
        self.stopping = True
        self.thread.join()
        self.sock.close()


def wait_listen(host, port, timeout=10):
    wait_port(port, host=host, timeout=timeout)


def access_lines():
    out = []
    for line in S["gw"].output().splitlines():
        try:
            j = json.loads(line)
        except ValueError:
            continue
        if j.get("msg") == "access":
            out.append(j)
    return out


def workers():
    """PIDs of the gateway's live workers (children of the master)."""
    return [pid for pid, cmd in procs.children(S["gw"].pid) if b"--worker" in cmd]


def wait_for(fn, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def write_config(path, tmp):
    with open(path, "w") as f:
        f.write(f"""[gateway]
workers = 2
http = 127.0.0.1:{HTTP}
https = 127.0.0.1:{HTTPS}
cert = {tmp}/server.crt
key = {tmp}/server.key
cert2 = {tmp}/rsa.crt
key2 = {tmp}/rsa.key
acme_webroot = {tmp}/acme
docs_dir = {ROOT}/var/swagger-ui
openapi = {ROOT}/docs/openapi.yaml
access_log = stdout
trusted_proxies = {TRUSTED_PEER}, 10.0.0.0/8
header_timeout = 1500ms
body_timeout = 1500ms
proxy_connect_timeout = 1s
proxy_read_timeout = 1s
drain_timeout = 10s

[upstream api]
servers = {",".join(f"127.0.0.1:{p}" for p in API_PORTS)}
health_interval = 300ms
health_timeout = 300ms
rise = 2
fall = 2
fail_timeout = 2s

[upstream dns]
servers = {DNS_NAME}:{DNS_PORT}
resolve_every = 300ms
health_interval = 300ms
rise = 1

[upstream dead]
servers = 127.0.0.1:{DEAD_PORT}
health_interval = 300ms
rise = 1

[route /api/]
upstream = api
rate = off
max_body = 1m

[route /big/]
upstream = api
rate = off
max_body = 2g

[route /limited/]
upstream = api
rate = 60r/m
burst = 10

[route /nogzip/]
upstream = api
rate = off
gzip = off

[route /dns/]
upstream = dns
rate = off

[route /dead/]
upstream = dead
rate = off

[upstream raw]
servers = 127.0.0.1:{RAW_PORT}
health_check = off
fail_timeout = 1s

[route /raw/]
upstream = raw
rate = off
""")


def hosts_set(lines):
    procs.hosts_set(DNS_NAME, lines, HOSTS)


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as the servers do
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def setup():
    try:
        return start_all()
    except Exception as e:  # noqa: BLE001 - reported as a failed case, then cleaned up
        print(f"FAIL gateway/setup: {e}", flush=True)
        teardown(None)
        sys.exit(1)


def start_all():
    busy = [p for p in [HTTP, HTTPS, DEAD_PORT, RAW_PORT] + API_PORTS if not port_free(p)]
    if busy:
        raise RuntimeError(f"ports {busy} are taken (another gateway test running? "
                           f"set GW_TEST_PORT_BASE)")
    tmp = tempfile.mkdtemp(prefix="test_gateway_")
    S["tmp"] = tmp
    S["ups"] = {}
    # our /etc/hosts lines are removed in teardown, even on failure.
    S["hosts_set"] = True
    hosts_set(["127.0.0.2"])
    subprocess.run(
        f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
        f"-subj /CN=localhost -keyout {tmp}/server.key -out {tmp}/server.crt && "
        f"openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
        f"-keyout {tmp}/rsa.key -out {tmp}/rsa.crt",
        shell=True, check=True, capture_output=True)
    os.makedirs(f"{tmp}/acme/.well-known/acme-challenge")
    with open(f"{tmp}/acme/.well-known/acme-challenge/tok-123_ABC", "w") as f:
        f.write("tok-123_ABC.thumbprint")
    for i, p in enumerate(API_PORTS):
        S["ups"][p] = start_upstream(p, f"u{i + 1}")
    S["ups"][DNS_PORT] = start_upstream(DNS_PORT, "dns-a", "127.0.0.2")
    S["raw"] = RawUpstream(RAW_PORT)
    S["dns_b"] = start_upstream(DNS_PORT, "dns-b", "127.0.0.3")
    for p in API_PORTS:
        wait_listen("127.0.0.1", p)
    wait_listen("127.0.0.2", DNS_PORT)
    wait_listen("127.0.0.3", DNS_PORT)
    cfg = f"{tmp}/gateway.ini"
    write_config(cfg, tmp)
    S["cfg"] = cfg
    S["gw"] = Proc(DIE_WITH_TEST + [binary("gateway/gateway"), "--config", cfg], port=HTTPS)
    wait_listen("127.0.0.1", HTTP)
    # Ready when the master has published health with every api instance up.
    wait_for(lambda: req("GET", "/health").json()["upstreams"]["api"]["healthy"] == 3, 10,
             "api healthy")
    return S


def teardown(_):
    try:
        if "gw" in S:
            S["gw"].stop()
        for p in list(S.get("ups", {}).values()) + [S.get("dns_b")]:
            if p:
                p.stop()
        if "raw" in S:
            S["raw"].stop()
    finally:
        if "hosts_set" in S:
            hosts_set([])
        shutil.rmtree(S.get("tmp", "/nonexistent"), ignore_errors=True)


# ---- HTTP listener ----

@test
def http_redirects_to_https_keeping_host_and_path(_):
    r = req("GET", "/api/x?y=1", tls=False, headers={"Host": "example.com:8080"})
    eq(r.status, 301)
    eq(r.h("Location"), f"https://example.com:{HTTPS}/api/x?y=1")
    r = req("GET", "/", tls=False, headers={"Host": "[::1]:80"})
    eq(r.h("Location"), f"https://[::1]:{HTTPS}/")


@test
def acme_challenge_served_from_webroot(_):
    r = req("GET", "/.well-known/acme-challenge/tok-123_ABC", tls=False)
    eq(r.status, 200)
    eq(r.body, b"tok-123_ABC.thumbprint")
    eq(req("GET", "/.well-known/acme-challenge/nope", tls=False).status, 404)
    eq(req("GET", "/.well-known/acme-challenge/..%2f..%2fgateway.ini", tls=False).status, 404)


# ---- TLS ----

def s_client(args, data=b"GET /api/whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
    p = subprocess.run(["timeout", "10", "openssl", "s_client", "-connect", f"127.0.0.1:{HTTPS}",
                        "-ign_eof"] + args, input=data, capture_output=True)
    return p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


@test
def tls_policy(_):
    out = s_client(["-alpn", "http/1.1"])
    true("TLSv1.2" in out and "ECDHE-ECDSA-CHACHA20-POLY1305" in out, out[-1500:])
    true("ALPN protocol: http/1.1" in out, "alpn")
    true("HTTP/1.1 200" in out, "a request over s_client")
    out = s_client(["-tls1_2", "-cipher", "ECDHE-RSA-CHACHA20-POLY1305"])
    true("ECDHE-RSA-CHACHA20-POLY1305" in out, "RSA certificate for an RSA suite")
    out = s_client(["-tls1_2", "-cipher", "AES128-SHA:ECDHE-RSA-AES128-SHA"])
    true("HTTP/1.1" not in out, "CBC / static-RSA suites refused")
    out = s_client(["-tls1_1"])
    true("HTTP/1.1" not in out, "TLS 1.1 refused")


@test
def session_resumption_across_workers(_):
    sess = os.path.join(S["tmp"], "sess.pem")
    out = s_client(["-tls1_2", "-sess_out", sess])
    true("New, TLSv1.2" in out, "first handshake")
    ids = []
    for i in range(12):
        rid = f"resume-{i}-{time.time()}"
        out = s_client(["-tls1_2", "-sess_in", sess],
                       f"GET /api/whoami HTTP/1.1\r\nHost: x\r\nX-Request-ID: {rid}\r\n"
                       f"Connection: close\r\n\r\n".encode())
        true("Reused, TLSv1.2" in out, f"resumed #{i}")
        true("HTTP/1.1 200" in out, f"served #{i}")
        ids.append(rid)
    time.sleep(0.3)
    served_by = {a["worker"] for a in access_lines() if a.get("request_id") in ids}
    eq(len(served_by), 2, "resumed sessions served by both workers")


@test
def security_and_forwarding_headers(_):
    r = req("GET", "/api/whoami?q=1", headers={
        "X-Request-ID": "client-id-42", "Connection": "keep-alive, X-Secret", "X-Secret": "s",
        "Keep-Alive": "timeout=5", "TE": "trailers", "Upgrade": "h2c",
        "X-Forwarded-For": "6.6.6.6", "Proxy-Authorization": "Basic eA=="})
    eq(r.status, 200)
    for name in ["Strict-Transport-Security", "Content-Security-Policy", "Referrer-Policy"]:
        true(r.h(name), name)
    eq(r.h("X-Content-Type-Options"), "nosniff")
    eq(r.h("X-Frame-Options"), "DENY")
    eq(r.h("X-Request-ID"), "client-id-42")
    seen = r.json()["headers"]
    eq(r.json()["path"], "/api/whoami")
    eq(r.json()["query"], "q=1")
    eq(seen.get("x-forwarded-for"), "127.0.0.1", "untrusted XFF replaced")
    eq(seen.get("x-real-ip"), "127.0.0.1")
    eq(seen.get("x-forwarded-proto"), "https")
    eq(seen.get("x-request-id"), "client-id-42")
    for hop in ["x-secret", "keep-alive", "te", "upgrade", "proxy-authorization"]:
        true(hop not in seen, f"{hop} dropped")
    r = req("GET", "/api/whoami")
    true(re.fullmatch(r"[0-9a-zA-Z-]{8,}", r.h("X-Request-ID") or ""), "generated id")
    eq(r.json()["headers"]["x-request-id"], r.h("X-Request-ID"))


@test
def access_log_line_without_secrets(_):
    rid = f"log-{time.time()}"
    r = req("GET", "/api/whoami?access_token=qs-secret-1", headers={
        "X-Request-ID": rid, "Authorization": "Bearer tok-secret-2", "Cookie": "sid=ck-secret-3"})
    eq(r.status, 200)
    eq(r.json()["headers"].get("authorization"), "Bearer tok-secret-2", "passed upstream")
    time.sleep(0.3)
    lines = [a for a in access_lines() if a.get("request_id") == rid]
    eq(len(lines), 1, "one line per request")
    a = lines[0]
    eq(a["status"], 200)
    eq(a["path"], "/api/whoami")
    true(a["upstream"].startswith("127.0.0.1:"), "upstream address")
    true(a["ms"] >= a["upstream_ms"] >= 0, "timings")
    out = S["gw"].output()
    for secret in ["qs-secret-1", "tok-secret-2", "ck-secret-3"]:
        true(secret not in out, f"{secret} never logged")


@test
def gateway_own_answers_have_security_headers_and_one_access_line(_):
    # Every answer the gateway writes itself goes through one helper (gateway/builtin.c):
    # security headers on https, one access line with the status the client got.
    cases = [("GET", "/api/../../x", None, 400), ("GET", "/internal/x", None, 404),
             ("GET", "/nothing-here", None, 404), ("GET", "/health", None, None),
             ("POST", "/api/sink", {"Content-Length": str(2 << 20)}, 413)]
    for i, (method, path, extra, status) in enumerate(cases):
        rid = f"own-{i}-{time.time()}"
        headers = {"X-Request-ID": rid}
        headers.update(extra or {})
        if method == "POST":
            out = raw(f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Request-ID: {rid}\r\n"
                      f"Content-Length: {2 << 20}\r\n\r\n".encode(), tls=True)
            true(out.startswith(b"HTTP/1.1 413"), f"{path}: {out[:40]!r}")
            true(b"\r\nX-Frame-Options: DENY" in out, f"{path}: security headers")
        else:
            r = req(method, path, headers=headers)
            status = status or r.status   # /health: 503 while the dead upstream is down
            eq(r.status, status, path)
            eq(r.h("X-Frame-Options"), "DENY", path)
            true(r.h("Content-Security-Policy"), path)
        wait_for(lambda: [a for a in access_lines() if a.get("request_id") == rid], 3,
                 f"the access line of {path}")
        lines = [a for a in access_lines() if a.get("request_id") == rid]
        eq(len(lines), 1, f"{path}: one line")
        eq(lines[0]["status"], status, f"{path}: the status logged")
    # the redirect's own refusal is logged as what the client got, not as a 301
    rid = f"own-redirect-{time.time()}"
    out = raw(f"GET /x HTTP/1.1\r\nHost: \r\nConnection: close\r\nX-Request-ID: {rid}\r\n\r\n".encode())
    true(out.startswith(b"HTTP/1.1 400"), f"empty Host: {out[:40]!r}")
    wait_for(lambda: [a for a in access_lines() if a.get("request_id") == rid], 3,
             "the redirect's access line")
    eq([a["status"] for a in access_lines() if a.get("request_id") == rid], [400])


@test
def never_routed_paths(_):
    for p in ["/internal/service-token", "/livez", "/metrics", "/api/../internal/x",
              "//internal//x", "/api/%2e%2e/internal/x", "/nothing-here"]:
        r = req("GET", p)
        eq(r.status, 404, p)
        true(r.h("X-Instance") is None, f"{p} never reached an upstream")
    eq(req("GET", "/api/../../x").status, 400)


# ---- balancing and health ----

def instances(n, path="/api/whoami"):
    counts = {}
    c = http.client.HTTPSConnection("127.0.0.1", HTTPS, context=tls_ctx(), timeout=10)
    try:
        for _ in range(n):
            r = req("GET", path, conn=c)
            k = r.h("X-Instance") or f"status-{r.status}"
            counts[k] = counts.get(k, 0) + 1
    finally:
        c.close()
    return counts


@test
def round_robin_distribution(_):
    counts = instances(90)
    eq(sorted(counts), ["u1", "u2", "u3"])
    true(all(20 <= v <= 40 for v in counts.values()), f"even: {counts}")


def load(stop, results, path="/api/whoami", keepalive=False):
    """GETs in a loop. With keep-alive, a request that finds its idle connection closed by
    the server before any answer is sent again on a new one, as browsers and curl do
    (RFC 9112 9.3.1); every other error counts as a failure."""
    c = None
    while not stop.is_set():
        reused = False
        try:
            if keepalive and c is None:
                c = http.client.HTTPSConnection("127.0.0.1", HTTPS, context=tls_ctx(), timeout=10)
            elif keepalive:
                reused = True
            r = req("GET", path, conn=c)
            results.append(r.status)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                ssl.SSLEOFError) as e:
            if c is not None:
                c.close()
            c = None
            if not reused:
                results.append(repr(e))
        except Exception as e:  # noqa: BLE001 - a failure is what the test counts
            results.append(repr(e))
            if c is not None:
                c.close()
            c = None
    if c is not None:
        c.close()


@contextlib.contextmanager
def api_load(keep_alive, what, join_s):
    """GET /api/whoami in a loop, one thread per keep_alive flag, for a with block; on leaving
    it the load stops: it must have run (over 50 requests), every answer a 200 (what)."""
    stop, results = threading.Event(), []
    threads = [threading.Thread(target=load, args=(stop, results, "/api/whoami", k))
               for k in keep_alive]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join(join_s)
    true(len(results) > 50, f"load ran: {len(results)}")
    eq([r for r in results if r != 200], [], what)


@test
def killed_instance_no_failed_get_then_taken_back(_):
    with api_load((False, True, True), "failed GETs while an instance died", 15):
        time.sleep(0.5)
        S["ups"][API_PORTS[1]].stop(signal.SIGKILL)
        time.sleep(1.5)
    wait_for(lambda: req("GET", "/health").json()["upstreams"]["api"]["healthy"] == 2, 5,
             "health sees the dead instance")
    S["ups"][API_PORTS[1]] = start_upstream(API_PORTS[1], "u2")
    wait_listen("127.0.0.1", API_PORTS[1])
    wait_for(lambda: req("GET", "/health").json()["upstreams"]["api"]["healthy"] == 3, 5,
             "instance back in health")
    # Taken back by both workers' round-robin (fail_timeout 2s passes too).
    wait_for(lambda: instances(30).get("u2", 0) >= 8, 6, "u2 serving again")


@test
def upstream_breaking_midway_is_a_broken_response(_):
    # the upstream sends a chunked head and 1000 bytes, then its connection drops
    out = raw(b"GET /api/cut?n=1000 HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n\r\n",
              tls=True, timeout=10)
    eq(out.split(b"\r\n", 1)[0], b"HTTP/1.1 200 OK", "the head went out")
    true(b"x" * 100 in out, "part of the body arrived")
    true(not out.endswith(b"0\r\n\r\n"), "no terminating chunk: the client sees a truncation")
    true(b"<timeout-or-reset>" not in out, "the gateway closed the connection at once")
    conn = http.client.HTTPSConnection("127.0.0.1", HTTPS, context=tls_ctx(), timeout=10)
    try:
        conn.request("GET", "/api/cut?n=1000", headers={"Accept-Encoding": "identity"})
        r = conn.getresponse()
        try:
            r.read()
            raise AssertionError("http.client read a complete body")
        except http.client.IncompleteRead:
            pass
    finally:
        conn.close()


@test
def health_aggregated_same_on_every_worker(_):
    bodies = set()
    for _ in range(16):
        r = req("GET", "/health")
        eq(r.status, 503, "dead has no instance")
        bodies.add(r.body)
    eq(len(bodies), 1, "identical answers")
    j = json.loads(bodies.pop())
    eq(j["upstreams"]["api"], {"healthy": 3, "total": 3})
    eq(j["upstreams"]["dead"], {"healthy": 0, "total": 1})
    eq(j["status"], "unavailable")
    up = start_upstream(DEAD_PORT, "revived")
    try:
        wait_for(lambda: req("GET", "/health").status == 200, 5, "200 once dead has an instance")
        eq(req("GET", "/health").json()["status"], "ok")
    finally:
        up.stop()


@test
def upstream_down_502_timeout_504_and_retries(_):
    r = req("GET", "/dead/x")
    eq(r.status, 502)
    eq(r.json()["error"]["code"], "bad_gateway")
    t0 = time.time()
    r = req("GET", "/api/slow?ms=5000", timeout=20)
    eq(r.status, 504)
    true(time.time() - t0 < 6, "bounded by proxy_read_timeout and retries")
    time.sleep(2.2)   # the timed-out instances come back after fail_timeout
    # A POST that reached an instance is never retried: one instance dies, not two.
    before = {p: u.p.poll() is None for p, u in S["ups"].items() if p in API_PORTS}
    true(all(before.values()), "all alive before")
    r = req("POST", "/api/crash", body=b"{}", headers={"Content-Type": "application/json"})
    eq(r.status, 502)
    time.sleep(0.3)
    dead = [p for p in API_PORTS if S["ups"][p].p.poll() is not None]
    eq(len(dead), 1, "exactly one instance got the POST")
    S["ups"][dead[0]].stop()
    S["ups"][dead[0]] = start_upstream(dead[0], f"u{API_PORTS.index(dead[0]) + 1}")
    wait_listen("127.0.0.1", dead[0])
    wait_for(lambda: req("GET", "/health").json()["upstreams"]["api"]["healthy"] == 3, 5, "back")


@test
def dns_reresolution_through_etc_hosts(_):
    got = instances(4, "/dns/whoami")
    eq(list(got), ["dns-a"], "127.0.0.2 first")
    hosts_set(["127.0.0.3"])
    wait_for(lambda: list(instances(4, "/dns/whoami")) == ["dns-b"], 8, "follows to 127.0.0.3")
    hosts_set(["127.0.0.2", "127.0.0.3"])
    wait_for(lambda: sorted(instances(10, "/dns/whoami")) == ["dns-a", "dns-b"], 8, "both")
    hosts_set(["127.0.0.2"])


# ---- rate limit ----

@test
def rate_limit_shared_by_workers_over_many_connections(_):
    statuses, lock = [], threading.Lock()
    tag = f"rl-{time.time()}"

    def one(i):
        r = req("GET", "/limited/whoami", headers={"X-Request-ID": f"{tag}-{i}"})
        with lock:
            statuses.append((r.status, r.h("Retry-After")))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    ok = sum(1 for s, _ in statuses if s == 200)
    limited = [ra for s, ra in statuses if s == 429]
    eq(len(statuses), 30)
    true(11 <= ok <= 13, f"1 + burst admitted across workers, got {ok}")
    true(limited and all(ra and int(ra) >= 1 for ra in limited), "429 with Retry-After")
    time.sleep(0.3)
    served_by = {a["worker"] for a in access_lines() if a.get("request_id", "").startswith(tag)}
    eq(len(served_by), 2, "the 30 connections were served by both workers")


# ---- gzip ----

@test
def gzip_round_trip(_):
    r = req("GET", "/api/json?n=20000", headers={"Accept-Encoding": "gzip"})
    eq(r.status, 200)
    eq(r.h("Content-Encoding"), "gzip")
    true("Accept-Encoding" in (r.h("Vary") or ""), "Vary")
    body = json.loads(gzip.decompress(r.body))
    true(len(body["items"]) > 500 and len(r.body) < 20000 / 3, "compressed JSON")
    r = req("GET", "/api/json?n=20000")
    eq(r.h("Content-Encoding"), None)
    true("Accept-Encoding" in (r.h("Vary") or ""), "Vary without gzip too")
    json.loads(r.body)
    eq(req("GET", "/api/json?n=100", headers={"Accept-Encoding": "gzip"}).h("Content-Encoding"),
       None, "small bodies stay plain")
    eq(req("GET", "/api/big?n=100000", headers={"Accept-Encoding": "gzip;q=0"}).h(
        "Content-Encoding"), None, "q=0 refuses")
    eq(req("GET", "/nogzip/json?n=20000", headers={"Accept-Encoding": "gzip"}).h(
        "Content-Encoding"), None, "gzip = off on the route")
    # curl as an independent client decodes it.
    p = subprocess.run(["curl", "-sk", "--compressed", f"https://127.0.0.1:{HTTPS}/api/json?n=5000"],
                       capture_output=True, timeout=10)
    true(len(json.loads(p.stdout)["items"]) > 100, "curl --compressed")


# ---- limits ----

@test
def oversized_headers_and_bodies(_):
    r = req("GET", "/api/whoami", headers={"X-Big": "a" * 9000})
    eq(r.status, 431)
    eq(r.h("X-Content-Type-Options"), "nosniff")
    eq(req("GET", "/api/" + "a" * 9000).status, 414)
    r = req("POST", "/api/sink", body=b"x" * (1024 * 1024 + 1))
    eq(r.status, 413)
    eq(req("POST", "/api/sink", body=b"x" * 1000).json()["bytes"], 1000)

    def chunks():
        for _ in range(40):
            yield b"y" * 65536
    c = http.client.HTTPSConnection("127.0.0.1", HTTPS, context=tls_ctx(), timeout=10)
    try:
        c.request("POST", "/api/sink", body=chunks(), encode_chunked=True,
                  headers={"Transfer-Encoding": "chunked"})
        eq(c.getresponse().status, 413, "chunked over max_body")
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        pass   # the gateway may close before the client finished sending: also a refusal
    finally:
        c.close()


@test
def slow_client_timeouts(_):
    t0 = time.time()
    out = raw(b"GET /api/whoami HTTP/1.1\r\nHost: x\r\n", tls=True, timeout=6)
    true(b" 408 " in out or b"<timeout" not in out, f"header timeout: {out[:80]}")
    true(time.time() - t0 < 4, "closed after header_timeout")
    t0 = time.time()
    out = raw(b"POST /api/sink HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc", tls=True,
              timeout=6)
    true(time.time() - t0 < 4, "closed after body_timeout")
    true(b"<timeout" not in out, "closed by the gateway")


SMUGGLING = [
    b"POST /api/whoami HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\nGET /api/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /api/whoami HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    b"GET /api/whoami HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
    b"POST /api/whoami HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET /api/whoami HTTP/1.1\r\nHost : a\r\n\r\n",
    b"GET /api/whoami HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET /api/whoami HTTP/1.1\r\n\r\n",
    b"POST /api/whoami HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
    b"POST /api/whoami HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked, identity\r\n\r\n",
    b"POST /api/whoami HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
]


@test
def smuggling_rejected_through_gateway(_):
    for i, data in enumerate(SMUGGLING):
        out = raw(data, tls=True)
        true(out.startswith(b"HTTP/1.1 400"), f"case {i}: {out[:60]!r}")
        eq(out.count(b"\r\nX-Request-ID: "), 1, f"case {i}: one response, then closed")
        true(b"X-Instance" not in out, f"case {i}: never reached an upstream")
        true(b"\r\nStrict-Transport-Security: " in out and b"\r\nX-Frame-Options: DENY" in out,
             f"case {i}: security headers on the server's own errors")


@test
def strict_header_syntax_through_gateway(_):
    cases = [
        b"GET /api/whoami HTTP/1.1\r\nHost: a\r\nBad Name: y\r\n\r\n",
        b"GET /api/whoami HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET /api/whoami HTTP/1.1\r\nHost: a@b\r\n\r\n",
        b"GET /api/who\tami HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /api/whoami\x80 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /api/whoami HTTP/1.1\r\nHost: a\r\nX-A: a\x01b\r\n\r\n",
        b"POST /api/sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2;" + b"a" * 20000 + b"\r\nhi\r\n0\r\n\r\n",
    ]
    for i, data in enumerate(cases):
        out = raw(data, tls=True)
        true(out.startswith(b"HTTP/1.1 400"), f"case {i}: {out[:60]!r}")
        true(b'"error":{"code":"bad_request"' in out, f"case {i}: JSON error")
        true(b"X-Instance" not in out, f"case {i}: never reached an upstream")
        true(b"\r\nX-Frame-Options: DENY" in out, f"case {i}: security headers")


@test
def bad_upstream_response_headers_are_502(_):
    r = req("GET", "/raw/ok")
    eq(r.status, 200)
    eq(r.h("Set-Cookie"), "a=1")
    eq(req("GET", "/raw/small-ext").body, b"ok")
    for case in ["space-in-name", "space-before-colon", "bad-name-char", "ctl-in-value"]:
        r = req("GET", "/raw/" + case)
        eq(r.status, 502, case)
        eq(r.json()["error"]["code"], "bad_gateway", case)
        eq(r.h("X-Frame-Options"), "DENY", case)
        true(all(" " not in k for k, _ in r.headers), f"{case}: {r.headers}")
    # a chunk extension over 16 KiB is a protocol error; the head is already out (streaming),
    # so the client sees the response broken off, never a complete one
    try:
        r = req("GET", "/raw/big-ext")
        eq(r.status, 502, "big-ext: a complete response")
    except http.client.IncompleteRead:
        pass


@test
def malformed_upstream_answer_counts_against_the_instance(_):
    # One rule for every caller of an upstream (common/upstream.c): a malformed answer
    # (HC_EPROTO) is the instance's failure, so with max_fails = 1 it leaves the pool for
    # fail_timeout. One keep-alive connection: the same worker sees all three requests.
    time.sleep(1.1)   # earlier raw failures are over
    conn = http.client.HTTPSConnection("127.0.0.1", HTTPS, context=tls_ctx(), timeout=10)
    try:
        eq(req("GET", "/raw/ok", conn=conn).status, 200)
        eq(req("GET", "/raw/ctl-in-value", conn=conn).status, 502)
        r = req("GET", "/raw/ok", conn=conn)
        eq(r.status, 502, "the instance is out after its malformed answer")
        eq(r.json()["error"]["code"], "bad_gateway")
        time.sleep(1.1)
        eq(req("GET", "/raw/ok", conn=conn).status, 200, "back after fail_timeout")
    finally:
        conn.close()


def from_trusted_proxy(path, headers):
    """GET over https from TRUSTED_PEER with headers (a list: a name may repeat)."""
    c = http.client.HTTPSConnection("127.0.0.1", HTTPS, context=tls_ctx(), timeout=10,
                                    source_address=(TRUSTED_PEER, 0))
    try:
        c.putrequest("GET", path)
        for k, v in headers:
            c.putheader(k, v)
        c.endheaders()
        r = c.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        c.close()


@test
def client_ip_from_the_whole_x_forwarded_for(_):
    def seen(*xff):
        r = from_trusted_proxy("/api/whoami", [("X-Forwarded-For", v) for v in xff])
        eq(r.status, 200)
        return r.json()["headers"]
    # no X-Forwarded-For: the trusted peer itself; an untrusted peer's list is ignored
    eq(seen()["x-real-ip"], TRUSTED_PEER)
    eq(req("GET", "/api/whoami", headers={"X-Forwarded-For": "1.2.3.4"})
       .json()["headers"]["x-real-ip"], "127.0.0.1")
    # a long list keeps its rightmost (trusted) end: the client cannot choose its address
    h = seen("x" * 2038 + ", 1.2.3.4, 203.0.113.7")
    eq(h["x-real-ip"], "203.0.113.7")
    h = seen("1.2.3.4, " * 800 + "203.0.113.8, 10.1.2.3")
    eq(h["x-real-ip"], "203.0.113.8", "trusted proxies skipped")
    # several lines are one list, in order; all of it is passed on with the peer
    h = seen("1.2.3.4", "203.0.113.9, 10.9.9.9")
    eq(h["x-real-ip"], "203.0.113.9")
    eq(h["x-forwarded-for"], f"1.2.3.4, 203.0.113.9, 10.9.9.9, {TRUSTED_PEER}")
    eq(seen("203.0.113.10", "10.0.0.1")["x-real-ip"], "203.0.113.10")
    # garbage where the client should be: the peer, not an address the client made up
    eq(seen("1.2.3.4, garbage, 10.0.0.1")["x-real-ip"], TRUSTED_PEER)
    eq(seen("1.2.3.4, " + "1" * 100)["x-real-ip"], TRUSTED_PEER)
    eq(seen("1.2.3.4", "nonsense")["x-real-ip"], TRUSTED_PEER)
    # empty entries are ignored
    eq(seen("203.0.113.11, , 10.0.0.1,")["x-real-ip"], "203.0.113.11")


@test
def header_count_limit_is_the_gateways(_):
    def head(n):
        """A request of n header lines in all (Host and Connection included)."""
        return (b"GET /api/whoami HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" +
                b"".join(b"X-H%d: v\r\n" % i for i in range(n - 2)) + b"\r\n")
    out = raw(head(100), tls=True)
    true(out.startswith(b"HTTP/1.1 200"), f"100 lines: {out[:60]!r}")
    body = json.loads(out.split(b"\r\n\r\n", 1)[1])
    eq(body["headers"]["x-h97"], "v", "the last header reached the service")
    out = raw(head(101), tls=True)
    true(out.startswith(b"HTTP/1.1 431"), f"101 lines: {out[:60]!r}")
    true(b'"error":{"code":"header_fields_too_large"' in out, "the gateway's JSON error")
    true(b"X-Instance" not in out, "answered by the gateway, not the service")
    true(b"\r\nStrict-Transport-Security: " in out and b"\r\nX-Frame-Options: DENY" in out,
         "security headers")


# ---- streaming ----

@test
def one_gib_upload_streams_with_bounded_memory(_):
    if SANITIZED:
        return
    total = 1 << 30
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            for pid in workers():
                try:
                    with open(f"/proc/{pid}/status") as f:
                        for line in f:
                            if line.startswith("VmRSS:"):
                                peak[0] = max(peak[0], int(line.split()[1]))
                except OSError:
                    pass
            time.sleep(0.2)

    th = threading.Thread(target=sample)
    th.start()
    block = b"z" * (1 << 20)

    def body():
        for _ in range(total // len(block)):
            yield block
    try:
        c = http.client.HTTPConnection("127.0.0.1", HTTPS, timeout=60)
        c.sock = tls_ctx().wrap_socket(socket.create_connection(("127.0.0.1", HTTPS)))
        c.request("POST", "/big/sink", body=body(), headers={"Content-Length": str(total)})
        r = c.getresponse()
        eq(r.status, 200)
        eq(json.loads(r.read())["bytes"], total)
        c.close()
    finally:
        stop.set()
        th.join()
    true(peak[0] < 64 * 1024, f"worker RSS peak {peak[0]} KiB")
    # And a big download through the gateway arrives whole.
    r = req("GET", "/big/big?n=50000000", timeout=60)
    eq(len(r.body), 50000000)


# ---- keep-alive: reading stays on between requests; backpressure only when buffers fill ----

def read_responses(s, n, timeout=10):
    """Reads n whole responses (Content-Length framed) from s; returns their heads and bodies."""
    s.settimeout(timeout)
    data, out = b"", []
    while len(out) < n:
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                return out
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        size = int(m.group(1)) if m else 0
        while len(rest) < size:
            chunk = s.recv(65536)
            if not chunk:
                return out
            rest += chunk
        out.append((head, rest[:size]))
        data = rest[size:]
    return out


@test
def pipelined_keepalive_requests_answered_in_order(_):
    for tls in (True,):  # (the plain port redirects to https here)
        s = socket.create_connection(("127.0.0.1", HTTPS if tls else HTTP), timeout=10)
        if tls:
            s = tls_ctx().wrap_socket(s)
        try:
            n = 24  # past the server's 16 parsed ahead: parsing waits, then goes on
            reqs = b"".join(f"GET /api/whoami?i={i} HTTP/1.1\r\nHost: x\r\nX-Request-ID: pipe-{i}\r\n\r\n"
                            .encode() for i in range(n))
            s.sendall(reqs)
            got = read_responses(s, n)
            eq(len(got), n, f"tls={tls}: every pipelined request answered")
            for i, (head, body) in enumerate(got):
                true(head.startswith(b"HTTP/1.1 200"), f"tls={tls} #{i}: {head[:40]!r}")
                true(f"\r\nX-Request-ID: pipe-{i}\r\n".encode() in head, f"tls={tls} #{i} in order")
                eq(json.loads(body)["query"], f"i={i}")
            # then requests in pieces on the same connection, a byte at a time for one of them
            one = b"GET /api/whoami?i=last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            for k in range(0, len(one), 7):
                s.sendall(one[k:k + 7])
                time.sleep(0.005)
            got = read_responses(s, 1)
            eq(len(got), 1)
            true(b"\r\nConnection: close\r\n" in got[0][0] + b"\r\n", "Connection: close on the last")
            eq(json.loads(got[0][1])["query"], "i=last")
            s.settimeout(5)
            eq(s.recv(1), b"", "closed")
        finally:
            s.close()


@test
def client_that_stops_reading_gets_backpressure(_):
    """A client that does not read while the upstream streams a large body: the gateway
    pauses the upstream instead of buffering the body (its RSS stays flat), and the body then
    arrives whole once the client reads."""
    size = 200 * 1000 * 1000

    def rss():
        total = 0
        for pid in workers():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total

    s = socket.create_connection(("127.0.0.1", HTTPS), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s = tls_ctx().wrap_socket(s)
    try:
        before = rss()
        s.sendall(f"GET /big/big?n={size} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        peak = before
        for _ in range(15):  # 3 s without reading
            time.sleep(0.2)
            peak = max(peak, rss())
        if not SANITIZED:
            true(peak - before < 32 * 1024, f"worker RSS grew {peak - before} KiB while the client did not read")
        got, head = 0, b""
        while b"\r\n\r\n" not in head:
            head += s.recv(65536)
        head, _, rest = head.partition(b"\r\n\r\n")
        true(head.startswith(b"HTTP/1.1 200"), head[:40])
        got = len(rest)
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        eq(got, size, "the whole body once read")
    finally:
        s.close()


# ---- docs ----

@test
def docs_served_with_caching(_):
    r = req("GET", "/docs")
    eq(r.status, 301)
    eq(r.h("Location"), "/docs/")
    r = req("GET", "/docs/")
    eq(r.status, 200)
    true(b"swagger-ui-bundle.js" in r.body, "index.html")
    true("script-src 'self'" in r.h("Content-Security-Policy"), "docs CSP")
    r = req("GET", "/docs/swagger-ui-bundle.js", headers={"Accept-Encoding": "gzip"})
    eq(r.h("Content-Encoding"), "gzip")
    true("max-age" in r.h("Cache-Control"), "cached")
    etag = r.h("ETag")
    eq(req("GET", "/docs/swagger-ui-bundle.js", headers={"If-None-Match": etag}).status, 304)
    r = req("GET", "/docs/swagger-initializer.js")
    true(b"/docs/openapi.yaml" in r.body, "our spec")
    r = req("GET", "/docs/openapi.yaml")
    true(r.body.startswith(b"openapi:"), "the spec")


@test
def docs_render_in_headless_chromium_under_csp(_):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    true(browser, "chromium is installed (apt-get install chromium)")
    prof = tempfile.mkdtemp(prefix="gw-chromium-", dir=S["tmp"])
    p = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                        "--ignore-certificate-errors", f"--user-data-dir={prof}",
                        "--virtual-time-budget=8000", "--dump-dom",
                        f"https://127.0.0.1:{HTTPS}/docs/"], capture_output=True, timeout=60)
    dom = p.stdout.decode(errors="replace")
    # Rendered by Swagger UI's scripts (blocked scripts would leave the bare page): the
    # spec's title and the gateway's /health operation.
    true('class="swagger-ui' in dom, "Swagger UI rendered")
    true("Suite API" in dom, "the spec was fetched and shown")
    true("/health" in dom, "the gateway's endpoints listed")


# ---- reload (last: it replaces the workers) ----

@test
def renewed_certificate_files_are_reloaded_without_a_signal(_):
    """certbot in another container renews the files in place and sends no signal: the master
    sees them change. A certificate without its key yet is refused (the old pair stays
    served); once the key follows, the new pair is served within seconds."""
    tmp = S["tmp"]
    subprocess.run(
        f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
        f"-subj /CN=polled.example -keyout {tmp}/polled.key -out {tmp}/polled.crt",
        shell=True, check=True, capture_output=True)
    before = s_client(["-tls1_2"])
    true("polled.example" not in before, "not served yet")
    os.rename(f"{tmp}/polled.crt", f"{tmp}/server.crt")  # the certificate alone
    time.sleep(4)
    out = s_client(["-tls1_2"])
    true("polled.example" not in out, "a certificate without its key is not taken")
    eq(req("GET", "/api/whoami").status, 200, "still serving with the old pair")
    os.rename(f"{tmp}/polled.key", f"{tmp}/server.key")
    wait_for(lambda: "polled.example" in s_client(["-tls1_2"]), 12, "the renewed pair served")
    eq(req("GET", "/api/whoami").status, 200)


@test
def reload_under_load_no_failed_request(_):
    old = workers()
    eq(len(old), 2)
    with api_load((False, False, True, True), "failed requests during reload", 20):
        tmp = S["tmp"]
        # The reload also takes a renewed certificate (another subject), as after certbot.
        subprocess.run(
            f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
            f"-subj /CN=renewed.example -keyout {tmp}/new.key -out {tmp}/new.crt && "
            f"mv {tmp}/new.key {tmp}/server.key && mv {tmp}/new.crt {tmp}/server.crt",
            shell=True, check=True, capture_output=True)
        time.sleep(0.5)
        for _ in range(2):
            os.kill(S["gw"].pid, signal.SIGHUP)
            time.sleep(1.5)
    new = wait_for(lambda: (lambda w: w if len(w) == 2 and not set(w) & set(old) else None)(
        workers()), 12, "old workers gone, 2 new ones")
    eq(len(new), 2)
    eq(req("GET", "/api/whoami").status, 200)
    out = s_client(["-tls1_2"])
    true("CN = renewed.example" in out or "CN=renewed.example" in out, "renewed certificate served")


@test
def sigterm_drains_and_exits_zero(_):
    gw = S["gw"]
    result = {}

    def slow():
        result["r"] = req("GET", "/api/slow?ms=700", timeout=10)

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.2)
    gw.p.send_signal(signal.SIGTERM)
    t.join(10)
    eq(result["r"].status, 200, "in-flight request finished")
    eq(gw.p.wait(15), 0)
    eq(workers(), [])


if __name__ == "__main__":
    main("gateway", setup, teardown)
