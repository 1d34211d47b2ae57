"""storage_env: the world of the svc-storage tests: databases of their own on the test
PostgreSQL, two real svc-auth instances (with the service "workers" allowed to get service
tokens), two svc-storage instances sharing one STORAGE_DIR, and users registered through auth
(alice and carol of one organization, bob of another). Clients: Python's http.client and curl.
Standard library only."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import procs  # noqa: E402
from suite_env import SuiteEnv  # noqa: E402

WORKERS_SECRET = "w" * 40
MAX_UPLOAD = 2 * 1024 * 1024  # a small STORAGE_MAX_UPLOAD so 413 is cheap to reach
SWEEP = "500ms"
GRACE = "2s"


def base_port():
    """Six consecutive ports for this process (STORAGE_TEST_PORT, else in 41500-41599 when
    the storage helper's ports are given, else in 30000-30999)."""
    base = int(os.environ.get("STORAGE_TEST_PORT", "0"))
    if base:
        return base
    return 30000 + (os.getpid() % 120) * 8


class Env(SuiteEnv):
    def __init__(self, tag="sttest", log_level="warn"):
        port = base_port()
        self.ports, self.storage = self.service_instances(port + 2)
        super().__init__(tag, ["storage"], log_level,
                         auth_extra={"AUTH_SERVICE_SECRETS": "workers=" + WORKERS_SECRET})

    # ---- processes ----
    def _start(self):
        self.db = self.dbs[1]
        self.dir = os.path.join(self.tmp, "volume")
        self.create_databases()
        port = base_port()
        self.start_auth([port, port + 1])
        for i in range(2):
            self.start_storage(i)
        self.redis_cli("DEL", "jobs:ocr", "jobs:archive")

    def storage_env(self, port, **extra):
        env = {"PORT": str(port), "HOST": "127.0.0.1", "PGDATABASE": self.db,
               "AUTH_URL": ",".join(f"127.0.0.1:{p}" for p in self.auth_ports),
               "STORAGE_DIR": self.dir, "STORAGE_MAX_UPLOAD": str(MAX_UPLOAD),
               "STORAGE_SWEEP_INTERVAL": SWEEP, "STORAGE_JOB_GRACE": GRACE,
               "LOG_LEVEL": self.log_level}
        env.update(extra)
        return env

    def start_storage(self, i, **extra):
        return self.start_service(i, "svc-storage/svc-storage",
                                  self.storage_env(self.ports[i], **extra))

    # ---- clients ----
    def call(self, method, path, body=None, token=None, headers=None, inst=None, timeout=15,
             apikey=None):
        """A request to a storage instance (round-robin unless inst is given)."""
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        if apikey:
            h["Authorization"] = f"ApiKey {apikey}"
        return self.call_service(method, path, body, h, inst, timeout)

    def curl(self, *args, inst=0, token=None):
        """curl against a storage instance: returns (status, headers text, body bytes)."""
        hdr = os.path.join(self.tmp, "curl-headers")
        body = os.path.join(self.tmp, "curl-body")
        cmd = ["curl", "-sS", "-o", body, "-D", hdr, "-w", "%{http_code}"]
        if token:
            cmd += ["-H", f"Authorization: Bearer {token}"]
        cmd += list(args)
        cmd = [a.replace("{base}", f"http://127.0.0.1:{self.ports[inst]}") for a in cmd]
        out = subprocess.run(cmd, capture_output=True, timeout=60)
        status = int(out.stdout.decode() or 0)
        with open(hdr, "rb") as f:
            headers = f.read().decode(errors="replace")
        with open(body, "rb") as f:
            data = f.read()
        return status, headers, data

    def sql(self, query):
        return procs.psql(query, db=self.db)

    def redis_cli(self, *args):
        out = subprocess.run(["redis-cli", "-h", os.environ["REDIS_HOST"], "-p",
                              os.environ["REDIS_PORT"], "--no-raw"] + list(args),
                             capture_output=True, timeout=15)
        return out.stdout.decode()

    def service_token(self, service="workers", secret=WORKERS_SECRET, audience="storage"):
        r = procs.request(self.auth_ports[0], "POST", "/internal/service-token",
                          {"service": service, "secret": secret, "audience": audience})
        if r.status != 200:
            raise RuntimeError(f"service-token: {r.status} {r.body[:300]!r}")
        return r.json()["access_token"]

    # ---- users ----
    def make_users(self):
        """{name: token}: alice (creator of Acme), carol (invited to Acme), bob (elsewhere)."""
        t = self.tag
        self.register(f"alice-{t}@example.com", organization=f"Acme {t}")
        alice = self.login(f"alice-{t}@example.com")
        self.register(f"carol-{t}@example.com", invite=self.invite(alice))
        self.register(f"bob-{t}@example.com")
        return {"alice": alice, "carol": self.login(f"carol-{t}@example.com"),
                "bob": self.login(f"bob-{t}@example.com")}


# ---- documents to upload ----

def png(seed=b""):
    """A small PNG-looking file (the magic bytes decide), distinct per seed."""
    return b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + seed + os.urandom(64)


def pdf(text="hello"):
    return (b"%PDF-1.4\n% " + text.encode() + b"\n" + os.urandom(32) + b"\n%%EOF\n")


def multipart(fields, boundary="----suiteBoundary7MA4YWxkTrZu0gW"):
    """fields: list of (name, value bytes, filename or None). Returns (content type, body)."""
    out = []
    for name, value, filename in fields:
        out.append(f"--{boundary}\r\n".encode())
        disp = f'Content-Disposition: form-data; name="{name}"'
        if filename is not None:
            disp += f'; filename="{filename}"'
        out.append(disp.encode("utf-8", "surrogateescape") + b"\r\n")
        if filename is not None:
            out.append(b"Content-Type: application/octet-stream\r\n")
        out.append(b"\r\n" + value + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(out)


def wait_for(fn, timeout=15.0, step=0.1):
    """Polls fn until it returns a true value; returns it (or the last value at timeout)."""
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v or time.time() > deadline:
            return v
        time.sleep(step)
