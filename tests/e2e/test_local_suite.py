"""The whole suite as a user runs it: deploy/local/run -d, then curl and openssl against
https://localhost through the gateway, then deploy/local/run stop. Uses the build in
SUITE_BUILD and a state directory of its own."""
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import procs  # noqa: E402
from check import eq, main, test, true  # noqa: E402

VAR = os.path.join(procs.ROOT, "var", "test", "e2e-" + os.path.basename(procs.BUILD))
RUN = os.path.join(procs.ROOT, "deploy", "local", "run")
# ports of its own, so that a suite a developer runs on the default ones is left alone
HTTPS, HTTP = 18443, 18080
ENV = dict(os.environ, LOCAL_VAR=VAR, LOCAL_BUILD=procs.BUILD, LOG_LEVEL="warn",
           LOCAL_HTTPS_PORT=str(HTTPS), LOCAL_HTTP_PORT=str(HTTP), LOCAL_PORT_BASE="13000",
           LOCAL_PG_PORT="15532", LOCAL_REDIS_PORT="16479")
BASE = f"https://localhost:{HTTPS}"


def curl(*args, data=None, headers=(), method=None):
    """curl with the suite's dev certificate as the only trusted CA; returns (status,
    headers dict (lowercased), body bytes)."""
    cmd = ["curl", "-sS", "--cacert", os.path.join(VAR, "certs", "server.crt"),
           "-D", "-", "-o", "-", "--max-time", "20"]
    for h in headers:
        cmd += ["-H", h]
    if method:
        cmd += ["-X", method]
    if data is not None:
        if not isinstance(data, (bytes, str)):
            data = json.dumps(data)
            cmd += ["-H", "Content-Type: application/json"]
        cmd += ["--data-binary", "@-"]
    cmd += list(args)
    r = subprocess.run(cmd, input=data.encode() if isinstance(data, str) else data,
                       capture_output=True)
    if r.returncode != 0:
        raise AssertionError(f"curl failed ({r.returncode}): {r.stderr.decode()}")
    out = r.stdout
    # the last header block (after any 100 Continue), then the body
    head, _, body = out.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 100"):
        head, _, body = body.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, body


def setup():
    subprocess.run([RUN, "stop"], env=ENV, capture_output=True)
    r = subprocess.run([RUN, "-d"], env=ENV, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"deploy/local/run -d failed: {r.stderr[-3000:]}")
    # ready once the gateway sees every upstream healthy
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            s, _, _ = curl(BASE + "/health")
            if s == 200:
                break
        except AssertionError:
            pass
        time.sleep(0.5)
    return {}


def teardown(ctx):
    r = subprocess.run([RUN, "stop"], env=ENV, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        print("stop failed:", r.stderr)


@test
def health_lists_every_upstream(ctx):
    s, h, body = curl(BASE + "/health")
    eq(s, 200, "gateway /health")
    doc = json.loads(body)
    eq(doc["status"], "ok")
    for name in ("auth", "payments"):
        eq(doc["upstreams"][name], {"healthy": 2, "total": 2}, name)


@test
def http_redirects_to_https(ctx):
    s, h, _ = curl(f"http://localhost:{HTTP}/payments?x=1")
    eq(s, 301)
    eq(h.get("location"), f"https://localhost:{HTTPS}/payments?x=1")


@test
def security_headers_on_every_https_response(ctx):
    for path in ("/health", "/nope", "/auth/me"):
        s, h, _ = curl(BASE + path)
        for name in ("strict-transport-security", "x-content-type-options", "x-frame-options",
                     "content-security-policy", "referrer-policy", "x-request-id"):
            true(name in h, f"{name} on {path} ({s})")
        eq(h["x-content-type-options"], "nosniff")
        eq(h["x-frame-options"], "DENY")
    rid = "e2e-" + uuid.uuid4().hex
    s, h, _ = curl(BASE + "/health", headers=[f"X-Request-ID: {rid}"])
    eq(h.get("x-request-id"), rid, "a client's request id is kept")


@test
def internal_paths_are_never_routed(ctx):
    for path in ("/internal/service-token", "/livez", "/metrics", "/auth/../internal/x"):
        s, _, _ = curl(BASE + path, "--path-as-is")
        eq(s, 404, path)


@test
def tls_is_1_2_with_aead_and_alpn(ctx):
    r = subprocess.run(["openssl", "s_client", "-connect", f"localhost:{HTTPS}", "-servername",
                        "localhost", "-alpn", "http/1.1"],
                       input=b"", capture_output=True, timeout=20)
    out = (r.stdout + r.stderr).decode()
    true("Protocol  : TLSv1.2" in out, f"protocol: {out[-1500:]}")
    true("ECDHE-" in out and ("GCM" in out or "CHACHA20" in out), f"cipher: {out[-1500:]}")
    true("ALPN protocol: http/1.1" in out, "ALPN http/1.1")
    r = subprocess.run(["openssl", "s_client", "-connect", f"localhost:{HTTPS}", "-tls1_2",
                        "-cipher", "AES128-SHA"], input=b"", capture_output=True, timeout=20)
    true(r.returncode != 0, "a non-AEAD, non-ECDHE cipher is refused")


@test
def register_login_me_pay_through_the_gateway(ctx):
    email = f"e2e-{uuid.uuid4().hex[:10]}@example.com"
    s, _, body = curl(BASE + "/auth/register", data={"email": email, "password": "correct horse",
                                                     "organization": "E2E Corp"})
    eq(s, 201, f"register: {body[:200]}")
    user = json.loads(body)
    eq(user["email"], email)
    true("org_admin" in user["roles"], "creator is org_admin")
    s, h, body = curl(BASE + "/auth/login", data={"email": email, "password": "correct horse"})
    eq(s, 200, f"login: {body[:200]}")
    tok = json.loads(body)
    eq(tok["token_type"], "Bearer")
    auth = f"Authorization: Bearer {tok['access_token']}"
    s, _, body = curl(BASE + "/auth/me", headers=[auth])
    eq(s, 200, "me")
    eq(json.loads(body)["email"], email)
    s, _, body = curl(BASE + "/.well-known/jwks.json")
    eq(s, 200)
    true(json.loads(body)["keys"][0]["crv"] == "P-256", "JWKS has the P-256 key")

    key = "e2e-" + uuid.uuid4().hex
    pay = {"amount": 1250, "currency": "eur", "description": "e2e"}
    s, _, body = curl(BASE + "/payments", data=pay, headers=[auth, f"Idempotency-Key: {key}"])
    eq(s, 201, f"create payment: {body[:200]}")
    p = json.loads(body)
    eq((p["status"], p["amount"], p["currency"]), ("pending", 1250, "EUR"))
    s, h, body = curl(BASE + "/payments", data=pay, headers=[auth, f"Idempotency-Key: {key}"])
    eq(s, 201, "replay")
    eq(h.get("idempotent-replayed"), "true")
    eq(json.loads(body)["reference"], p["reference"])

    # the provider's webhook, signed with the secret the runner generated
    with open(os.path.join(VAR, "secrets", "PAYMENTS_WEBHOOK_SECRET")) as f:
        secret = f.read().strip()
    event = json.dumps({"id": "evt_" + uuid.uuid4().hex, "type": "payment.processing",
                        "data": {"reference": p["reference"]}}).encode()
    t = str(int(time.time()))
    sig = hmac.new(secret.encode(), t.encode() + b"." + event, hashlib.sha256).hexdigest()
    s, _, body = curl(BASE + "/payments/webhook", data=event,
                      headers=["Content-Type: application/json", f"X-Signature: t={t},v1={sig}"])
    eq(s, 200, f"webhook: {body[:200]}")
    eq(json.loads(body)["applied"], True)
    s, _, body = curl(BASE + "/payments/" + p["reference"], headers=[auth])
    eq(s, 200)
    doc = json.loads(body)
    eq(doc["status"], "processing")
    eq([e["source"] for e in doc["events"]], ["webhook"])

    s, _, _ = curl(BASE + "/auth/logout", headers=[auth], method="POST")
    eq(s, 204, "logout")
    time.sleep(1.2)
    s, _, _ = curl(BASE + "/payments", headers=[auth])
    eq(s, 401, "payments refuse the logged-out token within a second")


@test
def stop_ends_every_process(ctx):
    with open(os.path.join(VAR, "procs")) as f:
        pids = [int(line.split()[2]) for line in f if " pid " in line]
    true(len(pids) >= 5, f"processes: {pids}")
    r = subprocess.run([RUN, "stop"], env=ENV, capture_output=True, text=True, timeout=120)
    eq(r.returncode, 0, r.stderr)
    for pid in pids:
        true(not os.path.exists(f"/proc/{pid}") or
             open(f"/proc/{pid}/stat").read().split()[2] == "Z", f"pid {pid} still runs")


if __name__ == "__main__":
    main("e2e", setup, teardown)
