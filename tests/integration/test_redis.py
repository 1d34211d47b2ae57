"""test_redis: common/redis.c against real redis-server processes of its own, through
tests/redis_driver (a C program on a libuv loop that runs the commands it reads on stdin and
prints each answer as a JSON line with the time it took). Covers binary-safe commands, error
replies, a closed port, a 10 s outage with recovery in the same process, command timeouts,
a blocking XREADGROUP on a second client, AUTH, the connect timeout and the backoff."""
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import procs  # noqa: E402
from check import eq, main, test, true  # noqa: E402

# Five ports of the range 22000-22099 for this run.
BASE = 22000 + (os.getpid() % 20) * 5
PORT_MAIN, PORT_LATE, PORT_OUTAGE, PORT_AUTH, PORT_SILENT = range(BASE, BASE + 5)
FAST_MS = 100  # "promptly"


class Server:
    """A redis-server of the test's own (DEBUG allowed from loopback), stopped by stop()."""

    def __init__(self, port, password=None):
        self.port = port
        self.password = password
        self.dir = tempfile.mkdtemp(prefix="suite-redis-")
        self.p = None
        self.start()

    def start(self):
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir,
                "--enable-debug-command", "local"]
        if self.password:
            args += ["--requirepass", self.password]
        self.p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            procs.wait_port(self.port, proc=self.p, timeout=10)
        except Exception:
            self.stop()
            raise

    def stop(self):
        if self.p and self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.p = None

    def remove(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def arg_hex(a):
    return (a if isinstance(a, bytes) else str(a).encode()).hex()


def value(reply):
    """A driver reply as Python: bytes (bulk), str (status), ('err', text), int, None, list."""
    if isinstance(reply, dict):
        if "s" in reply:
            return bytes.fromhex(reply["s"])
        if "status" in reply:
            return reply["status"]
        return ("err", reply["err"])
    if isinstance(reply, list):
        return [value(x) for x in reply]
    return reply


class Driver:
    """tests/redis_driver as a child process; every line it prints is kept in self.lines."""

    def __init__(self, env=None):
        full = {k: v for k, v in os.environ.items()
                if k not in ("REDIS_PASSWORD", "REDIS_PASSWORD_FILE")}
        full.update({"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(PORT_MAIN), "LOG_LEVEL": "info"})
        full.update(env or {})
        self.p = subprocess.Popen([procs.binary("tests/redis_driver")], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, env=full)
        self.lines = []
        self.events = []
        self.q = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.p.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and "ev" in obj:
                self.q.put(obj)
        self.q.put(None)

    def send(self, line):
        self.p.stdin.write((line + "\n").encode())
        self.p.stdin.flush()

    def expect(self, pred, timeout=5.0, what="event"):
        for i, e in enumerate(self.events):
            if pred(e):
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout} s; output: {self.lines[-10:]}")
            try:
                e = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if e is None:
                raise AssertionError(f"driver exited waiting for {what}: {self.lines[-10:]}")
            if e.get("ev") == "dup":
                raise AssertionError(f"command {e['id']} answered twice")
            if pred(e):
                return e
            self.events.append(e)

    def new(self, name, **opts):
        self.send(" ".join(["new", name] + [f"{k}={v}" for k, v in opts.items()]))
        e = self.expect(lambda e: e["ev"] == "new" and e["name"] == name, what="new")
        true(e["ok"], f"redis_new {name} {opts}")

    def cmd(self, name, *args, timeout=None):
        self.next_id += 1
        t = "-" if timeout is None else str(timeout)
        self.send(" ".join(["cmd", name, str(self.next_id), t] + [arg_hex(a) for a in args]))
        return self.next_id

    def reply(self, cid, within=5.0):
        return self.expect(lambda e: e["ev"] == "reply" and e["id"] == cid, within,
                           f"reply {cid}")

    def call(self, name, *args, timeout=None, within=5.0):
        return self.reply(self.cmd(name, *args, timeout=timeout), within)

    def ok(self, name, *args, timeout=None):
        """A command that must be answered REDIS_ST_OK; returns the reply as Python."""
        r = self.call(name, *args, timeout=timeout)
        eq(r["status"], "ok", f"status of {args!r}")
        return value(r["reply"])

    def connected(self, name):
        self.send(f"connected {name}")
        return self.expect(lambda e: e["ev"] == "connected" and e["name"] == name)["value"]

    def wait(self, name, ms):
        self.send(f"wait {name} {ms}")
        return self.expect(lambda e: e["ev"] == "wait" and e["name"] == name, ms / 1000 + 5)

    def quit(self):
        """Frees every client, lets the loop end; the driver must exit 0 (no double answer,
        every handle closed, and under ASan no leak)."""
        self.send("quit")
        bye = self.expect(lambda e: e["ev"] == "bye", 10, "bye")
        eq(self.p.wait(10), 0, f"driver exit status ({bye})")
        eq(bye["dups"], 0, "double answers")

    def quit_clean(self, what, *keys):
        """Client a still answers PING (what); the keys are deleted; then quit."""
        eq(self.ok("a", "PING"), "PONG", what)
        self.ok("a", "DEL", *keys)
        self.quit()

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def run_driver(fn, env=None):
    d = Driver(env)
    try:
        fn(d)
    finally:
        d.close()


def assert_down_fast(d, name, n=5, gap=0.05):
    for _ in range(n):
        r = d.call(name, "PING")
        eq(r["status"], "down", "status while disconnected")
        true(r["ms"] < FAST_MS, f"REDIS_ST_DOWN after {r['ms']:.1f} ms")
        true(not r["sync"], "answered before redis_command returned")
        time.sleep(gap)


def closed_by_peer(c):
    """True when the peer closed c (what it sent before is read and dropped)."""
    c.settimeout(1)
    try:
        while c.recv(65536):
            pass
        return True
    except socket.timeout:
        return False
    except OSError:
        return True


def setup():
    if not shutil.which("redis-server"):
        raise RuntimeError("redis-server is not installed")
    return {"main": Server(PORT_MAIN)}


def teardown(ctx):
    ctx["main"].remove()


@test
def set_get_incr_are_binary_safe(ctx):
    def body(d):
        d.new("a")  # REDIS_HOST / REDIS_PORT through redis_opts_default
        true(d.wait("a", 3000)["connected"], "connected")
        key = b"k\x00bin:%d" % os.getpid()
        val = bytes(range(256)) + b"\x00\r\n" + b"\x00" * 1000
        eq(d.ok("a", "SET", key, val), "OK")
        eq(d.ok("a", "GET", key), val, "GET returns every byte")
        eq(d.ok("a", "GET", b"k"), None, "the key is not cut at its NUL")
        big = os.urandom(100 * 1024)
        eq(d.ok("a", "SET", key, big), "OK")
        eq(d.ok("a", "GET", key), big, "100 KiB value")
        ctr = f"ctr:{os.getpid()}"
        d.ok("a", "DEL", ctr)
        eq([d.ok("a", "INCR", ctr) for _ in range(3)], [1, 2, 3], "INCR")
        # The printf-like form: "SET %s %b".
        fkey = f"fmt:{os.getpid()}"
        fval = b"x\x00y"
        d.send(f"setfmt a 999 {fkey} {fval.hex()}")
        eq(value(d.reply(999)["reply"]), "OK")
        eq(d.ok("a", "GET", fkey), fval, "%b value")
        eq(d.ok("a", "DEL", key, ctr, fkey), 3)
        d.quit()
    run_driver(body)


@test
def error_reply_is_ok_with_an_error_reply(ctx):
    def body(d):
        d.new("a")
        true(d.wait("a", 3000)["connected"], "connected")
        err = d.ok("a", "NOSUCHCOMMAND", "x")
        true(isinstance(err, tuple) and err[1].startswith("ERR unknown command"), f"{err}")
        k = f"notint:{os.getpid()}"
        d.ok("a", "SET", k, "abc")
        err = d.ok("a", "INCR", k)
        true(isinstance(err, tuple) and "not an integer" in err[1], f"{err}")
        d.quit_clean("the connection still works", k)
    run_driver(body)


@test
def closed_port_fails_fast_then_connects_when_a_server_appears(ctx):
    def body(d):
        # A 200 ms backoff cap: a refused connect must be noticed at once (the adapter does
        # not report it), not after the 2 s connect timeout.
        d.new("a", port=PORT_LATE, backoff_ms=200)
        assert_down_fast(d, "a", n=5)
        eq(d.connected("a"), False, "redis_connected")
        srv = Server(PORT_LATE)
        try:
            t0 = time.monotonic()
            w = d.wait("a", 5000)
            true(w["connected"], "connected after the server started")
            took = time.monotonic() - t0
            true(took < 1.0, f"connected {took:.2f} s after the server started")
            eq(d.ok("a", "SET", "late", "1"), "OK")
            eq(d.ok("a", "GET", "late"), b"1")
            d.quit()
        finally:
            srv.remove()
        true(any("unavailable" in line for line in d.lines), "the outage is logged")
    run_driver(body)


@test
def outage_of_10s_fails_fast_then_recovers_in_the_same_process(ctx):
    srv = Server(PORT_OUTAGE)

    def body(d):
        d.new("a", port=PORT_OUTAGE)
        true(d.wait("a", 3000)["connected"], "connected")
        eq(d.ok("a", "SET", "before", "1"), "OK")
        pid = d.p.pid
        pending = d.cmd("a", "BLPOP", f"nothing:{os.getpid()}", "30", timeout=20000)
        time.sleep(0.2)
        srv.stop()
        r = d.reply(pending, 2)
        eq(r["status"], "down", "a command pending when the connection broke")
        t_end = time.monotonic() + 10
        n, worst = 0, 0.0
        while time.monotonic() < t_end:
            r = d.call("a", "PING")
            eq(r["status"], "down", "status during the outage")
            true(not r["sync"], "answered before redis_command returned")
            worst = max(worst, r["ms"])
            n += 1
            time.sleep(0.2)
        true(worst < FAST_MS, f"slowest REDIS_ST_DOWN {worst:.1f} ms")
        true(n >= 30, f"{n} commands during the outage")
        eq(d.connected("a"), False, "redis_connected during the outage")
        srv.start()
        t0 = time.monotonic()
        true(d.wait("a", 8000)["connected"], "reconnected after the restart")
        took = time.monotonic() - t0
        true(took < 6.5, f"reconnected {took:.2f} s after the restart (backoff cap 5 s)")
        eq(d.ok("a", "PING"), "PONG", "commands work again")
        eq(d.ok("a", "SET", "after", "1"), "OK")
        eq(d.p.pid, pid, "same process")
        true(d.p.poll() is None, "the driver never exited")
        print(f"  outage: {n} commands, slowest REDIS_ST_DOWN {worst:.2f} ms, "
              f"reconnected {took:.2f} s after the restart", flush=True)
        d.quit()
    try:
        run_driver(body)
    finally:
        srv.remove()


@test
def command_timeout_then_the_connection_still_works(ctx):
    def body(d):
        d.new("a")  # default command timeout 2000 ms
        true(d.wait("a", 3000)["connected"], "connected")
        slow = d.cmd("a", "DEBUG", "SLEEP", "1", timeout=200)
        ping = d.cmd("a", "PING")
        r = d.reply(slow)
        eq(r["status"], "timeout", "DEBUG SLEEP 1 with a 200 ms timeout")
        true(180 <= r["ms"] < 450, f"timed out after {r['ms']:.0f} ms")
        r = d.reply(ping, 3)
        eq(r["status"], "ok", "the next command is answered after the sleep")
        eq(value(r["reply"]), "PONG", "its own reply, not the late one of DEBUG SLEEP")
        r = d.call("a", "PING")
        true(r["status"] == "ok" and r["ms"] < FAST_MS, f"then at once: {r}")
        # The client-wide command_timeout_ms.
        d.new("b", cmd_ms=200)
        true(d.wait("b", 3000)["connected"], "b connected")
        r = d.call("b", "DEBUG", "SLEEP", "0.5")
        eq(r["status"], "timeout", "command_timeout_ms")
        true(180 <= r["ms"] < 450, f"timed out after {r['ms']:.0f} ms")
        time.sleep(0.5)
        eq(d.ok("b", "PING"), "PONG", "b still works")
        d.quit()  # a late reply never reaches the caller twice: no "dup"
    run_driver(body)


@test
def blocking_xreadgroup_on_a_second_client(ctx):
    def body(d):
        stream = f"stream:{os.getpid()}"
        d.new("a")
        d.new("b")
        true(d.wait("a", 3000)["connected"] and d.wait("b", 3000)["connected"], "connected")
        d.ok("a", "DEL", stream)
        eq(d.ok("a", "XGROUP", "CREATE", stream, "g", "$", "MKSTREAM"), "OK")
        read = ["XREADGROUP", "GROUP", "g", "c1", "COUNT", "1", "BLOCK"]
        blocked = d.cmd("b", *read, "3000", "STREAMS", stream, ">", timeout=5000)
        time.sleep(0.1)
        worst = 0.0
        for _ in range(10):
            r = d.call("a", "PING")
            eq(r["status"], "ok")
            worst = max(worst, r["ms"])
            time.sleep(0.05)
        true(worst < 50, f"the first client answered within {worst:.1f} ms while b blocks")
        entry_id = d.ok("a", "XADD", stream, "*", "field", b"v\x00")
        r = d.reply(blocked, 4)
        eq(r["status"], "ok", "XREADGROUP answered")
        true(r["ms"] < 2500, f"woken by XADD after {r['ms']:.0f} ms, not the BLOCK timeout")
        eq(value(r["reply"]), [[stream.encode(), [[entry_id, [b"field", b"v\x00"]]]]], "entry")
        r = d.call("b", *read, "200", "STREAMS", stream, ">", timeout=2000)
        eq(r["status"], "ok", "BLOCK 200 ends with nil")
        eq(r["reply"], None)
        true(150 <= r["ms"] < 1000, f"nil after {r['ms']:.0f} ms")
        r = d.call("b", *read, "0", "STREAMS", stream, ">", timeout=300)
        eq(r["status"], "timeout", "BLOCK 0 bounded by its own timeout")
        true(r["ms"] < 600, f"timed out after {r['ms']:.0f} ms")
        d.quit_clean("a unaffected", stream)
    run_driver(body)


@test
def password_auth_good_and_bad(ctx):
    good, bad = "s3cret-pw-good", "wrong-pw-bad"
    srv = Server(PORT_AUTH, password=good)
    pwfile = os.path.join(srv.dir, "redis_password")
    with open(pwfile, "w") as f:
        f.write(good + "\n")

    def body(d):
        d.new("a")  # REDIS_PASSWORD_FILE through redis_opts_default
        true(d.wait("a", 3000)["connected"], "connected with the password from the file")
        eq(d.ok("a", "SET", "authed", "yes"), "OK")
        eq(d.ok("a", "GET", "authed"), b"yes")
        d.new("b", password=bad)
        eq(d.wait("b", 1000)["connected"], False, "a wrong password never connects")
        assert_down_fast(d, "b", n=3)
        d.new("c", password="")  # no AUTH: the server's refusal surfaces as an error reply
        true(d.wait("c", 3000)["connected"], "c connected")
        err = d.ok("c", "GET", "authed")
        true(isinstance(err, tuple) and err[1].startswith("NOAUTH"), f"{err}")
        d.quit()
        out = "\n".join(d.lines)
        true("AUTH refused" in out, "the refusal is logged")
        true(good not in out and bad not in out, "no password in the output")
    try:
        run_driver(body, {"REDIS_PORT": str(PORT_AUTH), "REDIS_PASSWORD_FILE": pwfile})
    finally:
        srv.remove()


@test
def connect_timeout_and_backoff_against_a_silent_server(ctx):
    """A server that accepts and never answers: AUTH waits, the connect timer (300 ms) drops
    the connection, and the attempts back off (100, 200, 400, 800 ms between them)."""
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", PORT_SILENT))
    lsock.listen(16)
    lsock.settimeout(0.1)
    conns, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                c, _ = lsock.accept()
                conns.append(c)
            except socket.timeout:
                continue
            except OSError:
                return
    th = threading.Thread(target=accept, daemon=True)
    th.start()

    def body(d):
        d.new("a", port=PORT_SILENT, password="x", connect_ms=300)
        t0 = time.monotonic()
        assert_down_fast(d, "a", n=3)
        time.sleep(max(0.0, 2.5 - (time.monotonic() - t0)))
        n = len(conns)
        true(3 <= n <= 5, f"{n} connection attempts in 2.5 s (expected 4)")
        eq(d.connected("a"), False, "never connected")
        # Every abandoned attempt was closed by the client (no descriptor kept).
        closed = sum(1 for c in conns[:-1] if closed_by_peer(c))
        eq(closed, len(conns) - 1, "abandoned connections closed")
        true(any("connect timeout" in line for line in d.lines), "the timeout is logged")
        d.quit()
    try:
        run_driver(body)
    finally:
        stop.set()
        th.join(2)
        lsock.close()
        for c in conns:
            c.close()


@test
def free_answers_pending_commands_once(ctx):
    def body(d):
        d.new("a")
        true(d.wait("a", 3000)["connected"], "connected")
        blpop = d.cmd("a", "BLPOP", f"nothing:{os.getpid()}", "5", timeout=10000)
        ping = d.cmd("a", "PING")
        time.sleep(0.2)
        d.send("free a")
        r = d.reply(blpop, 2)
        eq(r["status"], "down", "a pending command gets REDIS_ST_DOWN at redis_free")
        true(r["ms"] < 1000, f"after {r['ms']:.0f} ms")
        eq(d.reply(ping, 2)["status"], "down", "the command queued behind it too")
        d.quit()
    run_driver(body)


@test
def free_from_inside_a_reply_callback(ctx):
    """redis_free called by a callback that hiredis runs: the commands queued behind it get
    REDIS_ST_DOWN once, nothing is used after being freed (ASan build), the loop ends."""
    def body(d):
        d.new("a")
        true(d.wait("a", 3000)["connected"], "connected")
        d.next_id += 1
        first = d.next_id
        d.send(f"cmdfree a {first} {arg_hex('DEBUG')} {arg_hex('SLEEP')} {arg_hex('0.2')}")
        behind = [d.cmd("a", "PING") for _ in range(3)]
        r = d.reply(first, 3)
        eq((r["status"], value(r["reply"])), ("ok", "OK"), "the command whose callback frees")
        for cid in behind:
            eq(d.reply(cid, 2)["status"], "down", "commands behind it")
        d.expect(lambda e: e["ev"] == "freed" and e["name"] == "a", 2, "freed")
        d.quit()
    run_driver(body)


if __name__ == "__main__":
    main("redis", setup, teardown)
