"""suite_env: what the integration suites' worlds (payments_env, storage_env, workers_env)
share: databases of their own on the test PostgreSQL (dropped at close), a temporary folder,
real svc-auth instances on a fresh ES256 signing key, the processes started (stopped at close),
and users registered through auth. Standard library only."""
import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile

import procs

os.environ.setdefault("PGHOST", "127.0.0.1")
os.environ.setdefault("PGPORT", "54320")
os.environ.setdefault("PGUSER", "postgres")
os.environ.setdefault("REDIS_HOST", "127.0.0.1")
os.environ.setdefault("REDIS_PORT", "63790")

PASSWORD = "correct horse battery"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")  # API.md's timestamps


class SuiteEnv:
    """A subclass sets what its close() needs, then calls __init__, which runs its _start()
    (and close() when that fails). tag names the databases: TAG_PID_auth for svc-auth and
    TAG_PID_<name> for each of dbs; auth_extra is more of svc-auth's environment."""

    def __init__(self, tag, dbs=(), log_level="warn", auth_extra=None):
        self.tag = f"{tag}_{os.getpid()}"
        self.auth_db = self.tag + "_auth"
        self.dbs = [self.auth_db] + [f"{self.tag}_{name}" for name in dbs]
        self.procs = []
        self.tmp = tempfile.mkdtemp(prefix=f"suite-{tag}-")
        self.log_level = log_level
        self.auth_ports = []
        self.auth_extra = dict(auth_extra or {})
        self.key = None
        try:
            self._start()
        except Exception:
            self.close()
            raise

    @classmethod
    def with_users(cls, *args, **kwargs):
        """An env with env.users = env.make_users(): the setup of a suite's check.main."""
        env = cls(*args, **kwargs)
        try:
            env.users = env.make_users()
        except Exception:
            env.close()
            raise
        return env

    def _start(self):
        raise NotImplementedError

    # ---- processes ----
    def create_databases(self):
        for db in self.dbs:
            procs.psql(f"DROP DATABASE IF EXISTS {db}")
            procs.psql(f"CREATE DATABASE {db}")

    def auth_env(self, port):
        env = {"PORT": str(port), "HOST": "127.0.0.1", "PGDATABASE": self.auth_db,
               "AUTH_SIGNING_KEYS": self.key, "LOG_LEVEL": self.log_level}
        env.update(self.auth_extra)
        return env

    def start_auth(self, ports):
        """svc-auth on each of ports (a signing key of its own made on the first call)."""
        if self.key is None:
            self.key = os.path.join(self.tmp, "jwt.pem")
            subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout",
                            "-out", self.key], check=True)
        self.auth_ports = list(ports)
        for port in self.auth_ports:
            self.procs.append(procs.Proc([procs.binary("svc-auth/svc-auth")], port=port,
                                         env=self.auth_env(port)))

    def service_instances(self, first_port):
        """The suite's own service runs as two instances, on first_port and the next port:
        returns their ports and the {instance: Proc} that start_service fills; call_service
        takes them in turn."""
        self.svc_ports = [first_port, first_port + 1]
        self.svc = {}
        self._rr = itertools.cycle(range(2))
        return self.svc_ports, self.svc

    def start_service(self, i, binary, env):
        p = procs.Proc([procs.binary(binary)], port=self.svc_ports[i], env=env)
        self.svc[i] = p
        self.procs.append(p)
        return p

    def call_service(self, method, path, body, headers, inst, timeout):
        """A request to instance inst of the service (None: the next one in turn)."""
        i = next(self._rr) if inst is None else inst
        return procs.request(self.svc_ports[i], method, path, body, headers, timeout=timeout)

    def close(self):
        for p in reversed(self.procs):
            try:
                p.stop(signal.SIGKILL if p.p.poll() is None else signal.SIGTERM, timeout=5)
            except Exception:  # noqa: BLE001 - keep cleaning up
                pass
        for db in self.dbs:
            try:
                procs.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            except Exception:  # noqa: BLE001
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- users ----
    def auth(self, method, path, body=None, token=None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return procs.request(self.auth_ports[0], method, path, body, headers)

    def register(self, email, **extra):
        body = {"email": email, "password": PASSWORD}
        body.update(extra)
        r = self.auth("POST", "/auth/register", body)
        if r.status != 201:
            raise RuntimeError(f"register {email}: {r.status} {r.body[:300]!r}")
        return r.json()

    def login(self, email, password=PASSWORD):
        r = self.auth("POST", "/auth/login", {"email": email, "password": password})
        if r.status != 200:
            raise RuntimeError(f"login {email}: {r.status} {r.body[:300]!r}")
        return r.json()["access_token"]

    def invite(self, token):
        r = self.auth("POST", "/auth/organizations/invites", {}, token=token)
        if r.status != 201:
            raise RuntimeError(f"invite: {r.status} {r.body[:300]!r}")
        return r.json()["code"]
