"""workers_env: the world of the job-runner tests and benchmark: a Redis of their own (so that
it can be stopped and started), a real svc-auth issuing service tokens (PostgreSQL from
PGHOST/PGPORT), a fake svc-storage (http.server in a thread: it checks X-Service-Token is a
token of service "workers" for audience "storage", records every report, and answers what the
test scripted), and job_driver processes (tests/integration/job_driver.c). Standard library
only."""
import base64
import http.server
import json
import os
import signal
import socket
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import procs  # noqa: E402
from suite_env import SuiteEnv  # noqa: E402

SECRET = "workers-secret-0123456789abcdef"
STREAM = "jobs:test"
TOKEN_TTL_S = 4  # service tokens live 4 s here: the workers renew them while the tests run
PORTS = (int(os.environ.get("WORKERS_PORT_LO", "42500")),
         int(os.environ.get("WORKERS_PORT_HI", "42599")))


def port():
    return procs.free_port(*PORTS)


def wait_for(cond, timeout, what="condition", step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# ---- a minimal RESP2 client ----
class Redis:
    def __init__(self, port, host="127.0.0.1"):
        self.addr = (host, port)
        self.s = None
        self.f = None

    def _connect(self):
        self.s = socket.create_connection(self.addr, timeout=10)
        self.f = self.s.makefile("rb")

    def close(self):
        if self.s:
            self.s.close()
        self.s = self.f = None

    def __call__(self, *args):
        for attempt in range(2):
            try:
                if not self.s:
                    self._connect()
                out = [f"*{len(args)}\r\n".encode()]
                for a in args:
                    b = a if isinstance(a, bytes) else str(a).encode()
                    out.append(f"${len(b)}\r\n".encode() + b + b"\r\n")
                self.s.sendall(b"".join(out))
                return self._read()
            except (OSError, EOFError):
                self.close()
                if attempt:
                    raise

    def pipeline(self, cmds):
        """Sends every command, then reads every reply."""
        if not self.s:
            self._connect()
        out = []
        for args in cmds:
            out.append(f"*{len(args)}\r\n".encode())
            for a in args:
                b = a if isinstance(a, bytes) else str(a).encode()
                out.append(f"${len(b)}\r\n".encode() + b + b"\r\n")
        self.s.sendall(b"".join(out))
        return [self._read() for _ in cmds]

    def _read(self):
        line = self.f.readline()
        if not line:
            raise EOFError("redis closed the connection")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RedisError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data.decode(errors="replace")
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise ValueError(f"bad reply {line!r}")


class RedisError(str):
    pass


# ---- the fake svc-storage ----
class Storage:
    """Records reports as dicts {t, path, doc, kind, body, status}; script[doc] is a list of
    statuses to answer first (then 204); gone docs answer 404."""

    def __init__(self):
        self.reports = []
        self.lost = []
        self.script = {}
        self.gone = set()
        self.bad_tokens = 0
        self.tokens = set()
        self.lock = threading.Lock()
        self.port = port()
        env = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                self._send(200, b'{"status":"ok"}')

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                tok = self.headers.get("X-Service-Token")
                with env.lock:
                    env.tokens.add(tok)
                if not env.token_ok(tok):
                    with env.lock:
                        env.bad_tokens += 1
                    self._send(401, b'{"error":{"code":"unauthorized","message":"no token"}}')
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    self._send(400, b'{"error":{"code":"bad_request","message":"json"}}')
                    return
                parts = self.path.split("/")
                if self.path == "/internal/jobs/lost":
                    with env.lock:
                        env.lost.append(body)
                    self._send(204)
                    return
                if len(parts) != 5 or parts[1] != "internal" or parts[2] != "documents":
                    self._send(404, b'{"error":{"code":"not_found","message":"route"}}')
                    return
                doc, kind = parts[3], parts[4]
                with env.lock:
                    todo = env.script.get(doc) or []
                    status = todo.pop(0) if todo else (404 if doc in env.gone else 204)
                    env.reports.append({"t": time.time(), "path": self.path, "doc": doc,
                                        "kind": kind, "body": body, "status": status})
                self._send(status, b"" if status == 204 else b'{"error":{"code":"x","message":"x"}}')

            def _send(self, status, body=b""):
                self.send_response(status)
                if status != 204:
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if status != 204:
                    self.wfile.write(body)

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.srv.daemon_threads = True
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def token_ok(tok):
        """A service token of "workers" for "storage", not expired (the signature is
        svc-auth's business and is checked by svc-storage's auth_client)."""
        if not tok or tok.count(".") != 2:
            return False
        try:
            p = tok.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
        except ValueError:
            return False
        return (claims.get("sub") == "workers" and claims.get("aud") == "storage" and
                claims.get("exp", 0) > time.time())

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()

    def of(self, doc, status=None):
        with self.lock:
            return [r for r in self.reports if r["doc"] == doc and
                    (status is None or r["body"].get("status") == status)]

    def done(self, doc):
        return [r for r in self.of(doc, "done") if r["status"] == 204]


class Env(SuiteEnv):
    def __init__(self, tag="wktest"):
        self.drivers = []
        self.logs = []
        self.redis_server = None
        self.storage = None
        super().__init__(tag, auth_extra={"AUTH_SERVICE_SECRETS": f"workers={SECRET}",
                                          "AUTH_SERVICE_TOKEN_TTL": f"{TOKEN_TTL_S}s"})

    def _start(self):
        self.redis_port = port()
        self.redis_server = procs.RedisServer(self.redis_port)
        self.r = Redis(self.redis_port)
        self.create_databases()
        self.auth_port = port()
        self.start_auth([self.auth_port])
        self.storage = Storage()

    def driver(self, wait=True, binary="tests/job_driver", **env):
        """Starts a job_driver (or another worker binary); env overrides (WORKER_*...)."""
        p = port()
        e = {"PORT": str(p), "HOST": "127.0.0.1", "REDIS_HOST": "127.0.0.1",
             "REDIS_PORT": str(self.redis_port), "STORAGE_URL": f"127.0.0.1:{self.storage.port}",
             "AUTH_URL": f"127.0.0.1:{self.auth_port}", "SERVICE_SECRET": SECRET,
             "STORAGE_DIR": self.tmp, "WORKER_BLOCK": "1s", "WORKER_RETRY_BASE": "200ms",
             "WORKER_CLAIM_IDLE": "2s", "LOG_LEVEL": "info"}
        e.update({k: str(v) for k, v in env.items()})
        d = procs.Proc([procs.binary(binary)], env=e, port=p if wait else None)
        d.http_port = p
        self.drivers.append(d)
        self.logs.append(d)
        return d

    def sanitizer_reports(self):
        """Lines of the drivers' logs where a sanitizer reported something."""
        bad = []
        for d in self.logs:
            with open(d.log_path, "rb") as f:
                text = f.read().decode(errors="replace")
            for line in text.splitlines():
                if "AddressSanitizer" in line or "runtime error:" in line or "LeakSanitizer" in line:
                    bad.append(line)
        return bad

    def stop_drivers(self):
        for d in self.drivers:
            if d.p.poll() is None:
                d.stop(signal.SIGKILL)
        self.drivers = []

    def file_path(self, doc):
        """Where a document's file lives under STORAGE_DIR (the contract's layout)."""
        path = os.path.join(self.tmp, "files", doc[:2], doc)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def enqueue(self, mode="ok", doc=None, stream=STREAM, ctype="image/png", size=10):
        doc = doc or str(uuid.uuid4())
        entry = self.r("XADD", stream, "*", "doc", doc, "org", "org-1", "file",
                       f"files/{doc[:2]}/{doc}", "type", ctype, "size", str(size), "sha256",
                       "ab" * 32, "name", "scan.png", "mode", mode)
        if isinstance(entry, RedisError):
            raise RuntimeError(entry)
        return doc, entry

    def pending(self, stream=STREAM):
        s = self.r("XPENDING", stream, "workers")
        return 0 if isinstance(s, RedisError) else s[0]

    def dead(self, stream=STREAM):
        """The dead letters as dicts."""
        out = []
        for eid, fields in self.r("XRANGE", stream + ":dead", "-", "+") or []:
            d = dict(zip(fields[::2], fields[1::2]))
            d["_id"] = eid
            out.append(d)
        return out

    def reset_streams(self):
        self.r("DEL", STREAM, STREAM + ":dead", "jobs:ocr", "jobs:ocr:dead", "jobs:archive",
               "jobs:archive:dead")
        with self.storage.lock:
            self.storage.reports.clear()
            self.storage.lost.clear()
            self.storage.script.clear()
            self.storage.gone.clear()

    def close(self):
        self.stop_drivers()
        super().close()
        if self.storage:
            self.storage.close()
        if self.redis_server:
            self.redis_server.remove()
