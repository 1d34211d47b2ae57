"""procs: start and stop the suite's processes and real servers from Python tests, and talk
HTTP to them. Standard library only."""
import fcntl
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("SUITE_BUILD", os.path.join(ROOT, "build"))
SANITIZED = os.environ.get("SUITE_SANITIZED") == "1"


def binary(rel):
    """Path of a built binary, e.g. binary('tests/demo_svc')."""
    return os.path.join(BUILD, rel)


def wait_port(port, host="127.0.0.1", timeout=15.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port}")


def rss_kib(pid):
    """The resident memory of process pid in KiB (0 when /proc does not say)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def children(ppid):
    """The live child processes of ppid, as (pid, argv as a list of bytes), by PID."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if int(st.rsplit(")", 1)[1].split()[1]) == ppid:
            out.append((int(d), cmd))
    return sorted(out)


class Proc:
    """A child process with its output in a log file; stop() ends it (SIGTERM, then SIGKILL)."""

    def __init__(self, cmd, env=None, port=None, log=None):
        self.log_path = log or tempfile.mktemp(prefix="suite-", suffix=".log")
        self.log = open(self.log_path, "wb")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.p = subprocess.Popen(cmd, env=full_env, stdout=self.log, stderr=subprocess.STDOUT)
        self.port = port
        if port:
            try:
                wait_port(port, proc=self.p)
            except Exception:
                self.stop()
                raise RuntimeError(f"{cmd[0]} did not start: {self.output()[-2000:]}")

    @property
    def pid(self):
        return self.p.pid

    def output(self):
        """Everything it wrote so far (also after stop(), which closes our end of the log)."""
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()
        return self.p.returncode

    def rss_kib(self):
        return rss_kib(self.p.pid)


class Response:
    """An HTTP response: status, headers (a list of (name, value) as received), body (bytes).
    The one response type of the Python suites."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        """The first value of header name (any case), or None."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    h = header  # the short form test_gateway.py uses

    def headers_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body) if self.body else None


def request(port, method, path, body=None, headers=None, host="127.0.0.1", timeout=15):
    """One HTTP request on a fresh connection. body: bytes, str, or a JSON-able object; a body
    is sent as application/json unless headers name another Content-Type."""
    hdrs = dict(headers or {})
    if body is not None:
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        if not any(k.lower() == "content-type" for k in hdrs):
            hdrs["Content-Type"] = "application/json"
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=hdrs)
        r = c.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        c.close()


_given_ports = set()


def free_port(lo=27000, hi=29999, hosts=("127.0.0.1",), avoid=()):
    """A port of lo..hi that binds on every address in hosts, not in avoid and not given out
    before by this process. Suites keep ranges of their own (below the ephemeral ports) so
    that suites running side by side rarely meet."""
    for _ in range(500):
        port = random.randint(lo, hi)
        if port in avoid or port in _given_ports:
            continue
        socks = []
        try:
            for h in hosts:
                s = socket.socket(socket.AF_INET6 if ":" in h else socket.AF_INET)
                socks.append(s)
                s.bind((h, port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        _given_ports.add(port)
        return port
    raise RuntimeError(f"no free port in {lo}-{hi}")


class _Fixture:
    """A server of the test's own (for outage tests), via tests/fixtures/NAME start|stop."""

    fixture = ""

    def __init__(self, port):
        self.port = port
        self.dir = tempfile.mkdtemp(prefix=f"suite-{self.fixture}-")
        os.chmod(self.dir, 0o755)
        self.start()

    def _run(self, cmd):
        subprocess.run([os.path.join(ROOT, "tests/fixtures", self.fixture), cmd, self.dir,
                        str(self.port)], check=True, stdout=subprocess.DEVNULL)

    def start(self):
        self._run("start")

    def stop(self):
        self._run("stop")

    def remove(self):
        self._run("stop")
        shutil.rmtree(self.dir, ignore_errors=True)


class PgCluster(_Fixture):
    """A PostgreSQL cluster of the test's own."""
    fixture = "pg"


class RedisServer(_Fixture):
    """A Redis of the test's own."""
    fixture = "redis"


def psql(sql, db="postgres", port=None, host=None, user=None, timeout=30):
    """Runs SQL with the psql CLI (the test server of PGHOST/PGPORT/PGUSER unless given);
    returns its unaligned, tuples-only output."""
    r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                        "-h", host or os.environ.get("PGHOST", "127.0.0.1"),
                        "-p", str(port or os.environ.get("PGPORT", "5432")),
                        "-U", user or os.environ.get("PGUSER", "postgres"), "-d", db, "-c", sql],
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"psql {sql[:200]!r}: {r.stderr.strip()}")
    return r.stdout.strip()


_hosts_lock = threading.Lock()


def hosts_set(name, ips, path="/etc/hosts"):
    """Our lines of /etc/hosts: name -> each of ips (none: the name is gone). Other lines are
    kept as they are (another run may edit the file at the same time: flock), and the file is
    rewritten in place (it may be a bind mount). Use a name of the run's own (its pid)."""
    with _hosts_lock, open(path, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        keep = [ln for ln in f.read().splitlines() if not ln.rstrip().endswith(" " + name)]
        f.seek(0)
        f.write("".join(ln + "\n" for ln in keep + [f"{ip} {name}" for ip in ips]))
        f.truncate()
