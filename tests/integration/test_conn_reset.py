#!/usr/bin/env python3
"""test_conn_reset: clients that vanish at the worst moment must not hurt the server nor the
other clients. Each case resets connections (RST: SO_LINGER 0, then close) or half-closes
them at a chosen point: a request body announced and never sent, a large response being
written, a streamed upload midway, a slow asynchronous handler, a pipelined batch,
100-continue. It runs against tests/echo_server (common/http_server.c) and through the gateway
(2 workers, HTTP and HTTPS) to two tests/gw_upstream instances, while other clients' requests
run; it asserts that every process is still the same one (no worker restarted), that no
sanitizer report was written, and that every request of the other clients succeeded."""
import http.client
import os
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from check import eq, main, test, true  # noqa: E402
from procs import SANITIZED, Proc, binary, children, free_port, wait_port  # noqa: E402

SUITE = "conn_reset"
ROUNDS = 60 if SANITIZED else 120   # resets per case and target


def tls_ctx():
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


class Target:
    """Where the resets go: a port, TLS or not, and the paths of its routes."""

    def __init__(self, name, port, tls, prefix, paths, procs_fn):
        self.name, self.port, self.tls, self.prefix = name, port, tls, prefix
        self.paths = paths          # role -> path (after prefix)
        self.procs_fn = procs_fn    # -> {label: pid} of the processes that must survive

    def path(self, role, **q):
        p = self.prefix + self.paths[role]
        if q:
            p += ("&" if "?" in p else "?") + "&".join(f"{k}={v}" for k, v in q.items())
        return p

    def sock(self, timeout=5):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        if self.tls:
            s = tls_ctx().wrap_socket(s)
        return s

    def conn(self, timeout=10):
        if self.tls:
            return http.client.HTTPSConnection("127.0.0.1", self.port, context=tls_ctx(),
                                               timeout=timeout)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)


def rst(s):
    """Closes with a reset (SO_LINGER 0): the server's pending writes fail."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


def quiet(fn):
    """Runs one misbehaving client; what the server does to it does not matter here."""
    try:
        fn()
    except (OSError, ssl.SSLError, ValueError):
        pass


# ---------------------------------------------------------------- other clients

class Load:
    """Well-behaved clients running beside the resets: keep-alive GETs, POSTs with a body
    echoed back, and a large response read whole. Every one of them must succeed."""

    def __init__(self, t):
        self.t = t
        self.stop = threading.Event()
        self.ok = 0
        self.failures = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=fn, daemon=True)
                        for fn in (self.gets, self.gets_fresh, self.posts, self.bigs)]

    def __enter__(self):
        for th in self.threads:
            th.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for th in self.threads:
            th.join(30)

    def record(self, what, fn):
        try:
            fn()
            with self.lock:
                self.ok += 1
        except Exception as e:  # noqa: BLE001 - every failure is reported by the test
            with self.lock:
                self.failures.append(f"{what}: {e!r}")

    def loop(self, what, one, fresh):
        c = None
        while not self.stop.is_set():
            if c is None or fresh:
                c = self.t.conn()

            def run():
                one(c)
            try:
                self.record(what, run)
            finally:
                if fresh or self.failures:
                    c.close()
                    c = None
            time.sleep(0.005)
        if c:
            c.close()

    def get_hello(self, c):
        c.request("GET", self.t.path("hello"))
        r = c.getresponse()
        body = r.read()
        eq(r.status, 200, "status")
        true(body.startswith(b"hello"), f"body {body[:40]!r}")

    def gets(self):
        self.loop("keep-alive GET", self.get_hello, fresh=False)

    def gets_fresh(self):
        self.loop("GET", self.get_hello, fresh=True)

    def posts(self):
        payload = os.urandom(20000)

        def one(c):
            c.request("POST", self.t.path("echo"), body=payload,
                      headers={"Content-Type": "application/octet-stream"})
            r = c.getresponse()
            body = r.read()
            eq(r.status, 200, "status")
            eq(body, payload, "echoed body")
        self.loop("POST echo", one, fresh=False)

    def bigs(self):
        n = 300000

        def one(c):
            c.request("GET", self.t.path("big", **{self.t.paths["big_arg"]: n}))
            r = c.getresponse()
            body = r.read()
            eq(r.status, 200, "status")
            eq(len(body), n, "length of the large response")
        self.loop("GET big", one, fresh=False)


# ---------------------------------------------------------------- the misbehaving clients

def reset_unread_body(t, i):
    """The issue's reproduction: a body announced, never sent; reset at once."""
    s = t.sock()
    path = t.path("nope") if i % 2 else t.path("refuse")
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n".encode())
    if i % 3 == 0:
        time.sleep(0.002)
    rst(s)


def reset_while_response_written(t, i):
    """A large response: the client reads a little (or nothing) and resets."""
    s = t.sock()
    s.sendall(f"GET {t.path('big', **{t.paths['big_arg']: 4 << 20})} HTTP/1.1\r\n"
              f"Host: localhost\r\n\r\n".encode())
    if i % 2:
        s.recv(1000 + 7919 * i % 60000)
    else:
        time.sleep(0.001 * (i % 5))
    rst(s)


def reset_mid_upload(t, i):
    """A streamed upload (Content-Length or chunked) reset midway."""
    s = t.sock()
    path = t.path("sink")
    if i % 2:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000000\r\n\r\n"
                  .encode() + b"x" * (1000 + 3571 * i % 200000))
    else:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                  .encode() + b"4000\r\n" + b"y" * 0x4000 + b"\r\n" + b"40\r\n" + b"z" * 17)
    time.sleep(0.001 * (i % 4))
    rst(s)


def reset_during_slow_handler(t, i):
    """The handler answers later; the client has gone by then (or goes meanwhile)."""
    s = t.sock()
    s.sendall(f"GET {t.path('slow', ms=30 + i % 40)} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    time.sleep(0.001 * (i % 60))
    rst(s)


def reset_pipelined_batch(t, i):
    """Several requests in one write (answers held in order), then a reset."""
    s = t.sock()
    reqs = []
    for k in range(8):
        role = ("hello", "slow", "big", "echo")[(i + k) % 4]
        if role == "slow":
            path = t.path("slow", ms=5 + k)
        elif role == "big":
            path = t.path("big", **{t.paths["big_arg"]: 200000})
        else:
            path = t.path(role)
        if role == "echo":
            reqs.append(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello")
        else:
            reqs.append(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
    s.sendall("".join(reqs).encode())
    if i % 2:
        s.recv(500)
    time.sleep(0.001 * (i % 7))
    rst(s)


def half_close_then_reset(t, i):
    """The client half-closes after its request (slow or large answer), then resets."""
    s = t.sock()
    role = "slow" if i % 2 else "big"
    path = t.path("slow", ms=20) if role == "slow" else t.path("big", **{t.paths["big_arg"]: 2 << 20})
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    s.shutdown(socket.SHUT_WR)
    time.sleep(0.001 * (i % 30))
    rst(s)


def reset_expect_continue(t, i):
    """Expect: 100-continue; reset before, or after, the 100 came."""
    s = t.sock()
    path = t.path("echo") if i % 2 else t.path("sink")
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 70000\r\n"
              f"Expect: 100-continue\r\n\r\n".encode())
    if i % 3:
        s.recv(100)
        s.sendall(b"q" * (i * 997 % 70000))
    rst(s)


CASES = [reset_unread_body, reset_while_response_written, reset_mid_upload,
         reset_during_slow_handler, reset_pipelined_batch, half_close_then_reset,
         reset_expect_continue]


def attack(t, case):
    """Runs case ROUNDS times from 4 threads beside the load; checks the outcome."""
    before = t.procs_fn()
    with Load(t) as load:
        def worker(k):
            for i in range(k, ROUNDS, 4):
                quiet(lambda: case(t, i))
        ths = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(4)]
        for th in ths:
            th.start()
        for th in ths:
            th.join(120)
        time.sleep(0.3)   # the load goes on a little after the last reset
    after = t.procs_fn()
    eq(after, before, f"{t.name}: the processes (a worker that died is replaced)")
    eq(load.failures[:5], [], f"{t.name}: other clients' failed requests")
    true(load.ok > 0, f"{t.name}: other clients' requests ran")


# ---------------------------------------------------------------- the servers

S = {}


def alive(p):
    return p.p.poll() is None


def log_text(p, since=0):
    with open(p.log_path, "rb") as f:
        f.seek(since)
        return f.read().decode(errors="replace")


def log_marks():
    """Where each process's log ends now: a case checks only what it caused."""
    return {p.log_path: os.path.getsize(p.log_path) for p in [S["echo"], S["gw"]] + S["ups"]}


def echo_procs():
    p = S["echo"]
    return {"echo_server": p.pid if alive(p) else None}


def gateway_procs():
    """The master, its workers (children) and the upstreams, by PID."""
    out = {"master": S["gw"].pid if alive(S["gw"]) else None}
    for pid, cmd in children(S["gw"].pid):
        if b"--worker" in cmd:
            out["worker " + cmd[cmd.index(b"--worker") + 1].decode()] = pid
    for k, u in enumerate(S["ups"]):
        out[f"upstream {k}"] = u.pid if alive(u) else None
    return out


def start_echo(port):
    return Proc([binary("tests/echo_server"), str(port), "--max-body=200000"], port=port)


def start_upstream(port, k):
    return Proc([binary("tests/gw_upstream"), str(port), f"u{k}"], port=port)


ECHO_PATHS = {"hello": "/hello", "echo": "/echo", "nope": "/nope", "refuse": "/refuse",
              "big": "/big", "big_arg": "size", "sink": "/stream-sink?rate=2000000",
              "slow": "/slow"}
GW_PATHS = {"hello": "/api/hello", "echo": "/api/echo", "nope": "/nope", "refuse": "/api/nope",
            "big": "/api/big", "big_arg": "n", "sink": "/api/sink", "slow": "/api/slow"}


def setup():
    tmp = tempfile.mkdtemp(prefix="test_conn_reset_")
    S["tmp"] = tmp
    port = free_port()
    S["echo"] = start_echo(port)
    S["echo_port"] = port
    ups = [free_port(), free_port()]
    S["up_ports"] = ups
    S["ups"] = [start_upstream(p, k) for k, p in enumerate(ups)]
    subprocess.run(f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                   f"-days 2 -subj /CN=localhost -keyout {tmp}/k.pem -out {tmp}/c.pem",
                   shell=True, check=True, capture_output=True)
    http_port, https_port = free_port(), free_port()
    with open(f"{tmp}/gw.ini", "w") as f:
        f.write(f"""[gateway]
workers = 2
http = 127.0.0.1:{http_port}
https = 127.0.0.1:{https_port}
http_redirect = off
cert = {tmp}/c.pem
key = {tmp}/k.pem
access_log = off
max_conns_per_ip = 0
header_timeout = 2s
body_timeout = 2s

[upstream api]
servers = {",".join(f"127.0.0.1:{p}" for p in ups)}
health_interval = 500ms

[route /api/]
upstream = api
rate = off
max_body = 10m
""")
    S["gw"] = Proc([binary("gateway/gateway"), "--config", f"{tmp}/gw.ini"], port=https_port)
    wait_port(http_port)
    S["http"], S["https"] = http_port, https_port
    deadline = time.time() + 15
    while time.time() < deadline:   # ready when both workers serve /api/
        try:
            c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=2)
            c.request("GET", "/api/hello")
            if c.getresponse().status == 200 and len(gateway_procs()) == 5:
                break
        except OSError:
            pass
        time.sleep(0.1)
    return S


def teardown(_):
    for k in ("gw", "echo"):
        if k in S:
            S[k].stop()
    for u in S.get("ups", []):
        u.stop()
    subprocess.run(["rm", "-rf", S.get("tmp", "/nonexistent")])


def targets():
    return [Target("echo_server", S["echo_port"], False, "", ECHO_PATHS, echo_procs),
            Target("gateway http", S["http"], False, "", GW_PATHS, gateway_procs),
            Target("gateway https", S["https"], True, "", GW_PATHS, gateway_procs)]


def no_sanitizer_report():
    for p in [S["echo"], S["gw"]] + S["ups"]:
        out = log_text(p, S["marks"].get(p.log_path, 0))
        for what in ("AddressSanitizer", "runtime error", "double free"):
            true(what not in out, f"a crash report: {out[out.find(what) - 200:][:1500]}")


def revive():
    """A process a previous case killed is started again, so each case stands alone."""
    if not alive(S["echo"]):
        S["echo"] = start_echo(S["echo_port"])
    for k, u in enumerate(S["ups"]):
        if not alive(u):
            S["ups"][k] = start_upstream(S["up_ports"][k], k)


def make_case(case):
    def run(_):
        revive()
        S["marks"] = log_marks()
        errors = []
        for t in targets():
            try:
                attack(t, case)
            except AssertionError as e:
                errors.append(str(e))
        eq(errors, [], "targets that failed")
        no_sanitizer_report()
    run.__name__ = case.__name__
    return run


for _case in CASES:
    test(make_case(_case))


@test
def servers_exit_cleanly(_):
    """After all that, SIGTERM still drains and exits 0 (no request left half-owned)."""
    revive()
    S["marks"] = log_marks()
    eq(S["echo"].stop(), 0, "echo_server exit status")
    eq(S["gw"].stop(), 0, "gateway exit status")
    no_sanitizer_report()


if __name__ == "__main__":
    main(SUITE, setup, teardown)
