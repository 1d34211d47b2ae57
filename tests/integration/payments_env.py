"""payments_env: the world of the svc-payments tests and benchmark: databases of their own on
the test PostgreSQL, two real svc-auth instances, two svc-payments instances, and users
registered through auth (an org_admin, two users of the same organization, a user of another
organization) and the platform admin svc-auth bootstraps from AUTH_ADMIN_EMAIL and
AUTH_ADMIN_PASSWORD_FILE. Standard library only."""
import hashlib
import hmac
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import procs  # noqa: E402
from suite_env import SuiteEnv  # noqa: E402

WEBHOOK_SECRETS = ["whsec_current_0123456789", "whsec_previous_9876543210"]
LOCK_TIMEOUT_S = 3
ADMIN_PASSWORD = "platform admin password"


def base_port():
    """Four consecutive ports in 26000-26999 for this process."""
    return 26000 + (os.getpid() % 240) * 4


class Env(SuiteEnv):
    def __init__(self, tag="paytest", log_level="warn"):
        port = base_port()
        self.pay_ports, self.payments = self.service_instances(port + 2)
        super().__init__(tag, ["payments"], log_level,
                         auth_extra={"AUTH_SERVICE_SECRETS": "payments=" + "s" * 32})

    # ---- processes ----
    def _start(self):
        self.pay_db = self.dbs[1]
        self.create_databases()
        self.admin_email = f"admin-{self.tag}@example.com"
        self.admin_password_file = os.path.join(self.tmp, "admin-password")
        with open(self.admin_password_file, "w") as f:
            f.write(ADMIN_PASSWORD + "\n")
        self.auth_extra.update(AUTH_ADMIN_EMAIL=self.admin_email,
                               AUTH_ADMIN_PASSWORD_FILE=self.admin_password_file)
        port = base_port()
        self.start_auth([port, port + 1])
        for i in range(2):
            self.start_payments(i)

    def payments_env(self, port):
        return {"PORT": str(port), "HOST": "127.0.0.1", "PGDATABASE": self.pay_db,
                "AUTH_URL": ",".join(f"127.0.0.1:{p}" for p in self.auth_ports),
                "PAYMENTS_WEBHOOK_SECRETS": ",".join(WEBHOOK_SECRETS),
                "PAYMENTS_WEBHOOK_TOLERANCE": "300s",
                "PAYMENTS_IDEMPOTENCY_TTL": "24h",
                "PAYMENTS_IDEMPOTENCY_LOCK_TIMEOUT": f"{LOCK_TIMEOUT_S}s",
                "LOG_LEVEL": self.log_level}

    def start_payments(self, i):
        return self.start_service(i, "svc-payments/svc-payments",
                                  self.payments_env(self.pay_ports[i]))

    # ---- HTTP ----
    def call(self, method, path, body=None, token=None, headers=None, inst=None, timeout=10):
        """A request to a payments instance (round-robin unless inst is given)."""
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        if isinstance(body, bytes) and "Content-Type" not in h:
            h["Content-Type"] = "application/json"
        return self.call_service(method, path, body, h, inst, timeout)

    def sql(self, query):
        return procs.psql(query, db=self.pay_db)

    # ---- users ----
    def make_users(self):
        """Returns {name: token}: orgadmin (creator of Acme), alice and carol (users of Acme),
        bob (another organization), admin (platform admin)."""
        t = self.tag
        self.register(f"boss-{t}@example.com", organization=f"Acme {t}")
        boss = self.login(f"boss-{t}@example.com")
        for name in ("alice", "carol"):
            self.register(f"{name}-{t}@example.com", invite=self.invite(boss))
        self.register(f"bob-{t}@example.com")
        return {"orgadmin": boss, "alice": self.login(f"alice-{t}@example.com"),
                "carol": self.login(f"carol-{t}@example.com"),
                "bob": self.login(f"bob-{t}@example.com"),
                "admin": self.login(self.admin_email, ADMIN_PASSWORD)}


def sign(body, t=None, secrets=None):
    """X-Signature for body (bytes) at unix time t with each secret (one v1 per secret)."""
    t = int(time.time()) if t is None else t
    parts = [f"t={t}"]
    for s in secrets or WEBHOOK_SECRETS[:1]:
        mac = hmac.new(s.encode(), str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
        parts.append(f"v1={mac}")
    return ",".join(parts)


def webhook_body(event_id, typ, reference):
    """An event with unusual whitespace and key order, as raw bytes."""
    return (f'{{\n  "data" :{{ "reference":"{reference}"  }},\t"type":  "{typ}" ,'
            f'"id":"{event_id}"\r\n}}').encode()

