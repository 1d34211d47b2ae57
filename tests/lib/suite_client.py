"""suite_client: the suite as a client sees it through the gateway, with curl (a client nobody
here wrote): one request with its status, headers and body; a patient one that waits out the
gateway's rate limit; and wait_for, which polls until something is true. Used by the suites
that run the whole suite (e2e on deploy/local/run, containers on docker compose and Swarm)."""
import json
import subprocess
import time


class Client:
    def __init__(self, base, cacert):
        self.base, self.cacert = base, cacert

    def curl(self, *args, data=None, headers=(), method=None, timeout=20):
        """curl with cacert as the only trusted CA; a path argument is taken relative to the
        base URL. Returns (status, headers dict (lowercased), body bytes)."""
        cmd = ["curl", "-sS", "--cacert", self.cacert, "-D", "-", "-o", "-",
               "--max-time", str(timeout)]
        for h in headers:
            cmd += ["-H", h]
        if method:
            cmd += ["-X", method]
        if data is not None:
            if not isinstance(data, (bytes, str)):
                data = json.dumps(data)
                cmd += ["-H", "Content-Type: application/json"]
            cmd += ["--data-binary", "@-"]
        cmd += [self.base + a if a.startswith("/") else a for a in args]
        r = subprocess.run(cmd, input=data.encode() if isinstance(data, str) else data,
                           capture_output=True)
        if r.returncode != 0:
            raise AssertionError(f"curl failed ({r.returncode}): {r.stderr.decode()}")
        # the last header block (after any 100 Continue), then the body
        head, _, body = r.stdout.partition(b"\r\n\r\n")
        while head.startswith(b"HTTP/1.1 100"):
            head, _, body = body.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        return int(lines[0].split()[1]), hdrs, body

    def pcurl(self, *args, **kw):
        """curl as a patient client: a 429 (the gateway's rate limit: tests all come from one
        address) is waited out for its Retry-After, for up to a minute."""
        deadline = time.time() + 60
        while True:
            s, h, body = self.curl(*args, **kw)
            if s != 429 or time.time() > deadline:
                return s, h, body
            time.sleep(float(h.get("retry-after", "1")))

    def upstreams(self):
        """The gateway's /health per upstream: {"auth": {"healthy": n, "total": m}, ...}."""
        try:
            s, _, body = self.curl("/health")
        except AssertionError:
            return {}
        return json.loads(body)["upstreams"] if s in (200, 503) else {}


def wait_for(what, probe, timeout, every=0.1):
    """probe() until it returns something true; its last value in the error otherwise."""
    deadline = time.time() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"{what}: not after {timeout} s (last: {value!r})")
        time.sleep(every)
