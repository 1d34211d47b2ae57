#!/usr/bin/env python3
"""test_http_client: the HTTP client and the upstream pool against real HTTP servers.

Starts three instances (a, b, c) of a small HTTP/1.1 server (http.server, threads), two more
on 127.0.0.2 and 127.0.0.3 for the DNS test, and a control server. Each test runs one scenario
of the C driver (tests/integration/upstream_driver.c, built as SUITE_BUILD/tests/upstream_driver);
the driver makes the requests, asks the control server for what the instances saw (connections,
requests), kills/restarts instances, flips their health and edits /etc/hosts through it, and
prints PASS/FAIL lines that this file turns into its own. Ports: 23000-23999."""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from check import main, test  # noqa: E402
import procs  # noqa: E402
from procs import BUILD, free_port  # noqa: E402

SUITE = "http_client"
DRIVER = os.path.join(BUILD, "tests", "upstream_driver")
HOSTS = "/etc/hosts"
DNS_NAME = "suite-client-test-%d-%d.invalid" % (os.getpid(), random.randrange(1 << 20))
DRIVER_TIMEOUT = 180


class Instance:
    """One upstream instance: a threaded HTTP/1.1 server that remembers what it saw."""

    def __init__(self, name, host, port):
        self.name, self.host, self.port = name, host, port
        self.lock = threading.Lock()
        self.health = 200
        self.server = None
        self.thread = None
        self.socks = set()
        self.reset()

    def reset(self):
        with self.lock:
            self.conns = 0
            self.paths = {}

    def note(self, key):
        with self.lock:
            self.paths[key] = self.paths.get(key, 0) + 1

    def stats(self):
        with self.lock:
            return {"conns": self.conns, "paths": dict(self.paths), "up": self.server is not None}

    def start(self):
        if self.server:
            return
        inst = self

        class Handler(InstanceHandler):
            instance = inst

        srv = ThreadingHTTPServer((self.host, self.port), Handler)
        srv.daemon_threads = True
        self.server = srv
        self.thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def kill(self):
        """Like a crashed process: the port refuses connections and open ones are cut."""
        srv, self.server = self.server, None
        if not srv:
            return
        srv.shutdown()
        srv.server_close()
        self.drop_conns()
        self.thread.join(5)

    def drop_conns(self):
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class InstanceHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    instance = None

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        self.served = 0
        with self.instance.lock:
            self.instance.conns += 1
            self.instance.socks.add(self.connection)

    def finish(self):
        with self.instance.lock:
            self.instance.socks.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (ConnectionError, BrokenPipeError, OSError):
            self.close_connection = True
        self.served += 1

    def read_body(self, sink=None):
        """The request body (Content-Length or chunked); sink(bytes) streams it instead."""
        out = []
        put = sink or out.append
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                while size > 0:
                    piece = self.rfile.read(min(size, 1 << 20))
                    if not piece:
                        raise ConnectionError("eof in chunk")
                    put(piece)
                    size -= len(piece)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left > 0:
                piece = self.rfile.read(min(left, 1 << 20))
                if not piece:
                    raise ConnectionError("eof in body")
                put(piece)
                left -= len(piece)
        return b"".join(out)

    def reply(self, status, body=b"", headers=None, head_only=False):
        self.send_response(status)
        self.send_header("X-Instance", self.instance.name)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and not head_only and status not in (204, 304):
            self.wfile.write(body)

    def cut(self):
        """Closes the connection without an answer."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def route(self, method):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        path = url.path
        self.instance.note("%s %s" % (method, path))
        name = self.instance.name.encode()
        if path == "/whoami":
            self.read_body()
            self.reply(200, name, head_only=method == "HEAD")
        elif path == "/echo":
            body = self.read_body()
            self.reply(200, body, {"X-Body-Len": str(len(body))})
        elif path == "/chunked":
            self.read_body()
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(int(q.get("n", "10"))):
                piece = b"chunk-%d\n" % i
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")
        elif path == "/big":
            self.read_body()
            size = int(q.get("size", "1048576"))
            block = bytes(i % 251 for i in range(65536))
            crc, left = 0, size
            while left > 0:
                crc = zlib.crc32(block[:min(left, len(block))], crc)
                left -= min(left, len(block))
            self.send_response(200)
            self.send_header("X-CRC32", "%u" % crc)
            if q.get("chunked"):
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(size))
            self.end_headers()
            left = size
            while left > 0:
                piece = block[:min(left, len(block))]
                if q.get("chunked"):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                else:
                    self.wfile.write(piece)
                left -= len(piece)
            if q.get("chunked"):
                self.wfile.write(b"0\r\n\r\n")
        elif path == "/slow":
            self.read_body()
            time.sleep(int(q.get("ms", "1000")) / 1000.0)
            self.reply(200, b"slow")
        elif path == "/status":
            self.read_body()
            self.reply(int(q.get("code", "200")))
        elif path == "/readclose":
            self.read_body()
            self.cut()
        elif path == "/drop-reused":
            body = self.read_body()
            if self.served > 0:
                self.cut()
            else:
                self.reply(200, b"fresh:" + body)
        elif path == "/health":
            self.read_body()
            self.reply(self.instance.health, b"health")
        elif path == "/count":
            time.sleep(int(q.get("stall_ms", "0")) / 1000.0)
            state = {"n": 0, "crc": 0}

            def sink(piece):
                state["n"] += len(piece)
                state["crc"] = zlib.crc32(piece, state["crc"])

            self.read_body(sink)
            self.reply(200, json.dumps({"bytes": state["n"], "crc": state["crc"]}).encode())
        else:
            self.read_body()
            self.reply(404, b"not found")

    def do_GET(self):
        self.route("GET")

    def do_HEAD(self):
        self.route("HEAD")

    def do_POST(self):
        self.route("POST")

    def do_PUT(self):
        self.route("PUT")

    def do_DELETE(self):
        self.route("DELETE")

    def do_TRACE(self):
        self.route("TRACE")


class Suite:
    def __init__(self):
        self.instances = {}
        self.hosts_orig = None
        self.ctl = None

    def set_hosts(self, ips):
        """Our lines of /etc/hosts: DNS_NAME -> each of ips (none: the name is gone)."""
        procs.hosts_set(DNS_NAME, ips, HOSTS)

    def restore_hosts(self):
        if self.hosts_orig is not None:
            self.set_hosts([])


def make_ctl_handler(suite):
    class Ctl(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            q = dict(urllib.parse.parse_qsl(url.query))
            inst = suite.instances.get(q.get("name", ""))
            status, out = 200, {"ok": True}
            try:
                if url.path == "/stats":
                    out = {n: i.stats() for n, i in suite.instances.items()}
                elif url.path == "/reset":
                    for i in suite.instances.values():
                        i.reset()
                elif url.path == "/kill" and inst:
                    inst.kill()
                elif url.path == "/start" and inst:
                    inst.start()
                elif url.path == "/dropconns" and inst:
                    inst.drop_conns()
                elif url.path == "/health" and inst:
                    inst.health = int(q.get("status", "200"))
                elif url.path == "/hosts" and suite.hosts_orig is not None:
                    suite.set_hosts([ip for ip in q.get("ip", "").split(",") if ip])
                else:
                    status, out = 404, {"ok": False}
            except Exception as e:  # noqa: BLE001 - reported to the driver
                status, out = 500, {"ok": False, "error": str(e)}
            body = json.dumps(out).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Ctl


def setup():
    suite = Suite()
    used = set()
    for name in ("a", "b", "c"):
        port = free_port(23000, 23999, hosts=["127.0.0.1"], avoid=used)
        used.add(port)
        suite.instances[name] = Instance(name, "127.0.0.1", port)
    suite.dead_port = free_port(23000, 23999, hosts=["127.0.0.1"], avoid=used)
    used.add(suite.dead_port)
    suite.dns_ok = os.access(HOSTS, os.W_OK)
    if suite.dns_ok:
        try:
            suite.dns_port = free_port(23000, 23999, hosts=["127.0.0.2", "127.0.0.3"], avoid=used)
            used.add(suite.dns_port)
            suite.instances["dns2"] = Instance("dns2", "127.0.0.2", suite.dns_port)
            suite.instances["dns3"] = Instance("dns3", "127.0.0.3", suite.dns_port)
            with open(HOSTS) as f:
                suite.hosts_orig = f.read()
        except (OSError, RuntimeError):
            suite.dns_ok = False
    for inst in suite.instances.values():
        inst.start()
    ctl_port = free_port(23000, 23999, hosts=["127.0.0.1"], avoid=used)
    suite.ctl = ThreadingHTTPServer(("127.0.0.1", ctl_port), make_ctl_handler(suite))
    suite.ctl.daemon_threads = True
    threading.Thread(target=suite.ctl.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    suite.ctl_port = ctl_port
    return suite


def teardown(suite):
    suite.restore_hosts()
    if suite.ctl:
        suite.ctl.shutdown()
        suite.ctl.server_close()
    for inst in suite.instances.values():
        inst.kill()


def run(suite, scenario):
    """Runs one driver scenario on fresh instances; raises with the driver's complaints."""
    for inst in suite.instances.values():
        inst.health = 200
        inst.start()
        inst.reset()
    if suite.hosts_orig is not None:
        suite.restore_hosts()
    if not os.access(DRIVER, os.X_OK):
        raise AssertionError("driver not built: %s" % DRIVER)
    env = dict(os.environ)
    env.update({
        "TU_CTL": str(suite.ctl_port),
        "TU_PORTS": ",".join(str(suite.instances[n].port) for n in ("a", "b", "c")),
        "TU_DEAD": str(suite.dead_port),
    })
    if suite.dns_ok:
        env.update({"TU_DNS_NAME": DNS_NAME, "TU_DNS_PORT": str(suite.dns_port)})
    try:
        p = subprocess.run([DRIVER, scenario], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=DRIVER_TIMEOUT)
        out = p.stdout.decode(errors="replace")
        rc = p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
        rc = "timeout"
    finally:
        if suite.hosts_orig is not None:
            suite.restore_hosts()
    lines = out.splitlines()
    if rc != 0 or ("PASS client/%s" % scenario) not in lines:
        detail = [ln for ln in lines if ln.startswith(("  ", "FAIL", "=="))
                  or "ERROR" in ln or "runtime error" in ln][:12]
        detail = [ln.replace("FAIL ", "driver: ", 1) for ln in detail]
        raise AssertionError("driver %s exit %s: %s" % (scenario, rc, " | ".join(detail)))


def scenario(name):
    def fn(suite):
        run(suite, name)
    fn.__name__ = name
    return test(fn)


for _name in ["fetch_get", "fetch_post", "keepalive", "chunked", "head", "no_body_status",
              "too_big", "connect_refused", "read_timeout", "stale_retry", "idle_close",
              "max_idle", "bad_request", "exchange_length", "exchange_abort", "free_inflight",
              "stream_upload", "stream_download", "parse", "round_robin", "failover",
              "passive_comeback", "active_health", "post_not_retried", "localhost"]:
    scenario(_name)


@test
def dns(suite):
    """The peer set follows /etc/hosts within resolve_every_ms (needs a writable /etc/hosts)."""
    if not suite.dns_ok:
        raise AssertionError("/etc/hosts is not writable or 127.0.0.2/.3 cannot be bound: "
                             "run the tests as root")
    run(suite, "dns")


if __name__ == "__main__":
    # SIGTERM/SIGINT still run the teardown (restores /etc/hosts, stops the servers).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main(SUITE, setup, teardown)
