"""The whole suite as a user runs it: deploy/local/run -d, then curl and openssl against
https://localhost through the gateway, the runner's status and restarts, then
deploy/local/run stop. Uses the build in SUITE_BUILD and a state directory of its own."""
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import procs  # noqa: E402
import samples  # noqa: E402
import suite_client  # noqa: E402
from suite_client import wait_for  # noqa: E402
from check import eq, main, test, true  # noqa: E402

VAR = os.path.join(procs.ROOT, "var", "test", "e2e-" + os.path.basename(procs.BUILD))
RUN = os.path.join(procs.ROOT, "deploy", "local", "run")
# ports of its own, so that a suite a developer runs on the default ones is left alone
# (E2E_HTTPS_PORT, E2E_HTTP_PORT, E2E_PORT_BASE, E2E_PG_PORT, E2E_REDIS_PORT move them)
HTTPS, HTTP, PORT_BASE, PG, REDIS = (int(os.environ.get("E2E_" + name, default)) for name, default in (
    ("HTTPS_PORT", 18443), ("HTTP_PORT", 18080), ("PORT_BASE", 13000), ("PG_PORT", 15532),
    ("REDIS_PORT", 16479)))
ENV = {k: v for k, v in os.environ.items() if not k.startswith("AUTH_ADMIN_")}  # the defaults
ENV.update(LOCAL_VAR=VAR, LOCAL_BUILD=procs.BUILD, LOG_LEVEL="warn", WORKER_CLAIM_IDLE="4s",
           STORAGE_SWEEP_INTERVAL="2s",
           LOCAL_HTTPS_PORT=str(HTTPS), LOCAL_HTTP_PORT=str(HTTP), LOCAL_PORT_BASE=str(PORT_BASE),
           LOCAL_PG_PORT=str(PG), LOCAL_REDIS_PORT=str(REDIS))
BASE = f"https://localhost:{HTTPS}"
# every process the runner starts, and the port it answers on
PORTS = {"postgres": PG, "redis": REDIS, "auth-1": PORT_BASE + 1, "auth-2": PORT_BASE + 2,
         "payments-1": PORT_BASE + 101, "payments-2": PORT_BASE + 102,
         "storage-1": PORT_BASE + 201, "storage-2": PORT_BASE + 202, "ocr-1": PORT_BASE + 301,
         "ocr-2": PORT_BASE + 302, "archive-1": PORT_BASE + 311, "gateway": HTTPS}
EXE = {"postgres": "postgres", "redis": "redis-server", "auth-1": "svc-auth", "auth-2": "svc-auth",
       "payments-1": "svc-payments", "payments-2": "svc-payments", "storage-1": "svc-storage",
       "storage-2": "svc-storage", "ocr-1": "worker-ocr", "ocr-2": "worker-ocr",
       "archive-1": "worker-archive", "gateway": "gateway"}
UPSTREAMS = ("auth", "payments", "storage")
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD_FILE = os.path.join(VAR, "secrets", "AUTH_ADMIN_PASSWORD")


CLIENT = suite_client.Client(BASE, os.path.join(VAR, "certs", "server.crt"))
curl, pcurl = CLIENT.curl, CLIENT.pcurl


def status():
    """`deploy/local/run status` as {name: {"pid", "uptime", "restarts", "health"}}."""
    r = subprocess.run([RUN, "status"], env=ENV, capture_output=True, text=True, timeout=60)
    eq(r.returncode, 0, f"status: {r.stderr}")
    lines = r.stdout.splitlines()
    eq(lines[0].split(), ["NAME", "PID", "UPTIME", "RESTARTS", "HEALTH"], "status header")
    rows = {}
    for line in lines[1:]:
        name, pid, uptime, restarts, health = line.split()
        rows[name] = {"pid": pid, "uptime": uptime, "restarts": restarts, "health": health}
    return rows


def all_healthy():
    u = CLIENT.upstreams()
    return all(u.get(n) == {"healthy": 2, "total": 2} for n in UPSTREAMS) or u


def exe(pid):
    """The program's name of a process (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def children(pid):
    """pids whose parent is pid."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, ValueError):
                pass
    return out


def run_log():
    with open(os.path.join(VAR, "logs", "run.log")) as f:
        return f.read()


RESTART = re.compile(r"^local: (\S+) \(pid (\d+)\) (.+) after [\d.]+s; restart (\d+) in ([\d.]+)s$", re.M)


def restarts_logged(name, since):
    """[(old pid, how it ended, restart number, delay)] the runner logged for name after
    offset since of its log."""
    return [(int(pid), how, int(n), float(d)) for who, pid, how, n, d in RESTART.findall(run_log()[since:])
            if who == name]


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
    return {"started": r.stderr}


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
    for name in UPSTREAMS:
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
def admin_password_is_generated_once_and_announced(ctx):
    st = os.stat(ADMIN_PASSWORD_FILE)
    eq(st.st_mode & 0o777, 0o600, "mode of the admin password file")
    with open(ADMIN_PASSWORD_FILE) as f:
        true(len(f.read().strip()) >= 16, "a generated password of 16+ characters")
    true(f"admin: {ADMIN_EMAIL}, password in {ADMIN_PASSWORD_FILE}" in ctx["started"],
         f"the runner says where the password is: {ctx['started'][-500:]}")


# Needs svc-auth's admin bootstrap (AUTH_ADMIN_EMAIL + AUTH_ADMIN_PASSWORD_FILE at start-up).
@test
def admin_logs_in_with_the_generated_password(ctx):
    with open(ADMIN_PASSWORD_FILE) as f:
        password = f.read().strip()
    s, _, body = curl(BASE + "/auth/login", data={"email": ADMIN_EMAIL, "password": password})
    eq(s, 200, f"admin login: {body[:200]}")
    tok = json.loads(body)["access_token"]
    s, _, body = curl(BASE + "/auth/me", headers=[f"Authorization: Bearer {tok}"])
    eq(s, 200, "me")
    true("admin" in json.loads(body)["roles"], f"admin role: {body[:200]}")


@test
def status_lists_every_process_with_its_health(ctx):
    rows = status()
    eq(sorted(rows), sorted(PORTS), "processes")
    for name, row in rows.items():
        eq(row["health"], "ok", f"{name} health")
        eq(exe(row["pid"]), EXE[name], f"{name} pid {row['pid']} is the process")
        true(re.fullmatch(r"\d+[smhd](\d+[smh])?", row["uptime"]), f"{name} uptime {row['uptime']}")
        eq(row["restarts"], "-" if name in ("postgres", "redis") else "0", f"{name} restarts")


# ---- documents: storage, OCR and archive workers, the scanner ----
def new_user(org):
    email = f"docs-{uuid.uuid4().hex[:10]}@example.com"
    s, _, body = pcurl(BASE + "/auth/register", data={"email": email, "password": "correct horse",
                                                     "organization": org})
    eq(s, 201, f"register: {body[:200]}")
    s, _, body = pcurl(BASE + "/auth/login", data={"email": email, "password": "correct horse"})
    eq(s, 200, f"login: {body[:200]}")
    return "Authorization: Bearer " + json.loads(body)["access_token"]


def document(auth, doc_id):
    """The document; None while the gateway's rate limit (100/min, burst 20) says wait."""
    s, _, body = curl(f"{BASE}/documents/{doc_id}", headers=[auth])
    if s == 429:
        return None
    eq(s, 200, f"get {doc_id}: {body[:200]}")
    return json.loads(body)


def processed(auth, doc_id, timeout=180):
    """The document once both jobs have ended (done or failed), asked once a second as a
    client under the gateway's rate limit would."""
    def ended():
        d = document(auth, doc_id)
        return d and d["ocr"]["status"] in ("done", "failed") and d["archive"]["status"] in ("done", "failed") and d
    return wait_for(f"document {doc_id} processed", ended, timeout, every=1.0)


def search(auth, q):
    s, _, body = pcurl(f"{BASE}/documents?q={q}", headers=[auth])
    eq(s, 200, f"search {q}: {body[:200]}")
    return [d["id"] for d in json.loads(body)["data"]]


def scratch(name):
    d = os.path.join(VAR, "scratch", name)
    os.makedirs(d, exist_ok=True)
    return d


@test
def documents_upload_ocr_search_download_delete_through_the_gateway(ctx):
    auth, other = new_user("Docs Corp"), new_user("Other Corp")
    d = scratch("docs")
    png = samples.image(os.path.join(d, "harbour.png"), "harbour invoice 4217")
    pdf = samples.pdf(os.path.join(d, "two.pdf"), ["first page apple", "second page orchard 881"])
    with open(png, "rb") as f:
        png_bytes = f.read()
    s, _, body = pcurl(BASE + "/documents", "-F", f"file=@{png};filename=../../etc/scan one.png",
                      "-F", "title=Quarterly report", "-F", "tags=invoice", headers=[auth])
    eq(s, 201, f"multipart upload: {body[:300]}")
    doc = json.loads(body)
    eq((doc["size"], doc["sha256"], doc["content_type"]),
       (len(png_bytes), hashlib.sha256(png_bytes).hexdigest(), "image/png"))
    true("/" not in doc["filename"] and ".." not in doc["filename"], f"sanitized {doc['filename']!r}")
    eq(doc["ocr"]["status"], "queued")
    s, _, body = pcurl(BASE + "/documents?filename=report.pdf", "--data-binary", "@" + pdf,
                      headers=[auth, "Content-Type: application/pdf"])
    eq(s, 201, f"raw upload: {body[:300]}")
    pdf_id = json.loads(body)["id"]
    s, _, body = pcurl(BASE + "/documents", "-F", f"file=@{png}", headers=[auth])
    eq(s, 200, "the same bytes again")
    eq((json.loads(body)["id"], json.loads(body).get("duplicate")), (doc["id"], True))

    done = processed(auth, doc["id"])
    eq(done["ocr"]["status"], "done", f"ocr {done['ocr']}")
    true("harbour" in done["ocr"]["text"].lower(), f"text {done['ocr']['text']!r}")
    eq(done["archive"]["status"], "done", f"archive {done['archive']}")
    location = done["archive"]["location"]
    true(location.startswith("file://" + VAR), f"archived under var: {location}")
    with open(location[len("file://"):], "rb") as f:
        eq(f.read(), png_bytes, "the archived copy")
    both = processed(auth, pdf_id)
    eq(both["ocr"]["status"], "done", f"pdf ocr {both['ocr']}")
    text = both["ocr"]["text"].lower()
    true(0 <= text.find("apple") < text.find("orchard"), f"both pages in order: {text!r}")
    true(doc["id"] in search(auth, "harbour"), "search finds the PNG's words")
    eq(search(auth, "orchard"), [pdf_id], "search finds the second PDF page's words")
    eq(search(other, "harbour"), [], "another organization finds nothing")
    for path in (f"/documents/{doc['id']}", f"/documents/{doc['id']}/content"):
        eq(pcurl(BASE + path, headers=[other])[0], 404, f"{path} for another organization")

    s, h, body = pcurl(f"{BASE}/documents/{doc['id']}/content", headers=[auth])
    eq((s, body), (200, png_bytes), "download")
    eq(h.get("etag"), f'"{doc["sha256"]}"')
    true(h.get("content-disposition", "").startswith("attachment"), f"disposition {h}")
    s, h, body = pcurl(f"{BASE}/documents/{doc['id']}/content", headers=[auth, "Range: bytes=0-9"])
    eq((s, body, h.get("content-range")), (206, png_bytes[:10], f"bytes 0-9/{len(png_bytes)}"))
    eq(pcurl(f"{BASE}/documents/{doc['id']}/content", headers=[auth, f"Range: bytes={len(png_bytes)}-"])[0], 416)

    eq(pcurl(f"{BASE}/documents/{doc['id']}", headers=[other], method="DELETE")[0], 404, "delete by another org")
    eq(pcurl(f"{BASE}/documents/{doc['id']}", headers=[auth], method="DELETE")[0], 204, "delete")
    eq(pcurl(f"{BASE}/documents/{doc['id']}", headers=[auth])[0], 404, "gone")
    wait_for("the archived copy deleted", lambda: not os.path.exists(location[len("file://"):]), 10)
    eq(search(auth, "harbour"), [], "no longer found")


@test
def documents_refused_with_clear_errors(ctx):
    auth = new_user("Refusals Corp")
    d = scratch("refused")
    txt = os.path.join(d, "notes.pdf")
    with open(txt, "w") as f:
        f.write("just text, named like a PDF\n")
    s, _, body = pcurl(BASE + "/documents", "-F", f"file=@{txt}", headers=[auth])
    eq(s, 415, f"text named .pdf: {body[:200]}")
    eq(json.loads(body)["error"]["code"] != "", True)
    big = os.path.join(d, "big.png")
    with open(big, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + b"\0" * (51 * 1024 * 1024))
    s, _, _ = pcurl(BASE + "/documents?filename=big.png", "--data-binary", "@" + big,
                   headers=[auth, "Content-Type: image/png"])
    eq(s, 413, "over 50 MiB")
    eq(pcurl(BASE + "/documents")[0], 401, "no credential")
    eq(pcurl(BASE + "/documents", headers=["Authorization: Bearer not.a.token"])[0], 401, "a forged token")


@test
def scanner_pushes_a_folder_with_an_api_key_twice(ctx):
    auth = new_user("Scanner Corp")
    s, _, body = pcurl(BASE + "/auth/api-keys", data={"name": "scanner"}, headers=[auth])
    eq(s, 201, f"api key: {body[:200]}")
    key = json.loads(body)["key"]
    d = scratch("scan-" + uuid.uuid4().hex[:6])
    os.makedirs(os.path.join(d, "sub"))
    samples.image(os.path.join(d, "a.png"), "scanner alpha")
    samples.image(os.path.join(d, "sub", "b.jpg"), "scanner beta")
    samples.tiff(os.path.join(d, "sub", "c.tif"), ["scanner gamma", "scanner delta"])
    scanner = [os.path.join(procs.BUILD, "svc-storage", "scanner"), "--url", BASE,
               "--cacert", os.path.join(VAR, "certs", "server.crt"), d]
    env = dict(os.environ, SCANNER_API_KEY=key)
    first = subprocess.run(scanner, env=env, capture_output=True, text=True, timeout=300)
    eq(first.returncode, 0, f"first run: {first.stdout[-800:]} {first.stderr[-800:]}")
    s, _, body = pcurl(BASE + "/documents", headers=[f"Authorization: ApiKey {key}"])
    eq(s, 200)
    eq(len(json.loads(body)["data"]), 3, "three documents")
    second = subprocess.run(scanner, env=env, capture_output=True, text=True, timeout=300)
    eq(second.returncode, 0, f"second run: {second.stdout[-800:]}")
    s, _, body = pcurl(BASE + "/documents", headers=[f"Authorization: ApiKey {key}"])
    eq(len(json.loads(body)["data"]), 3, "the second run uploaded nothing")
    true(re.search(r"^summary: uploaded 0, skipped 3 ", second.stdout, re.M), f"summary: {second.stdout[-400:]}")


@test
def a_worker_killed_mid_job_and_redis_restarted_lose_no_document(ctx):
    """kill -9 the OCR worker holding a job, and stop Redis while documents are uploaded: every
    document still ends processed (reclaimed after WORKER_CLAIM_IDLE; the sweeper re-enqueues
    what Redis lost)."""
    auth = new_user("Faults Corp")
    d = scratch("faults")
    words = ("harbour", "bravo", "charlie", "delta", "echo", "foxtrot")
    pages = [f"fault page {w} lantern" for w in words]
    pdf = samples.pdf(os.path.join(d, "long.pdf"), pages)
    s, _, body = pcurl(BASE + "/documents?filename=long.pdf", "--data-binary", "@" + pdf,
                      headers=[auth, "Content-Type: application/pdf"])
    eq(s, 201, body[:200])
    long_id = json.loads(body)["id"]
    wait_for("the OCR job in hand", lambda: (document(auth, long_id) or {"ocr": {}})["ocr"].get("status") == "processing",
             60, every=0.5)
    holder = wait_for("the job pending with a consumer", lambda: re.search(
        rb"local-ocr-(\d)", subprocess.run(["redis-cli", "-p", str(REDIS), "XPENDING", "jobs:ocr", "workers",
                                            "-", "+", "10"], capture_output=True).stdout), 10)
    victim = "ocr-" + holder.group(1).decode()
    os.kill(int(status()[victim]["pid"]), signal.SIGKILL)

    redis_dir = os.path.join(VAR, "redis")
    subprocess.run([os.path.join(procs.ROOT, "tests", "fixtures", "redis"), "stop", redis_dir], check=True)
    ids = []
    try:
        for i in range(3):
            p = samples.image(os.path.join(d, f"r{i}.png"), f"redisless upload {i} meadow")
            s, _, body = pcurl(BASE + "/documents", "-F", f"file=@{p}", headers=[auth])
            eq(s, 201, f"upload while Redis is down: {body[:200]}")
            ids.append(json.loads(body)["id"])
    finally:
        subprocess.run([os.path.join(procs.ROOT, "tests", "fixtures", "redis"), "start", redis_dir,
                        str(REDIS)], check=True)
    for doc_id in [long_id] + ids:
        doc = processed(auth, doc_id, timeout=240)
        eq((doc["ocr"]["status"], doc["archive"]["status"]), ("done", "done"), f"{doc_id}: {doc['ocr']}")
    text = document(auth, long_id)["ocr"]["text"].lower()
    true(all(f"page {w}" in text for w in words), f"every page: {text!r}")
    wait_for("every process healthy again", lambda: all(r["health"] == "ok" for r in status().values()), 30)


@test
def killed_instances_are_restarted(ctx):
    before = status()
    since = len(run_log())
    old = {name: int(before[name]["pid"]) for name in ("auth-1", "payments-1")}
    for pid in old.values():
        os.kill(pid, signal.SIGKILL)
    t0 = time.time()

    def restarted():
        rows = status()
        return all(rows[n]["pid"] not in ("-", str(old[n])) and rows[n]["health"] == "ok"
                   for n in old) and rows
    rows = wait_for("both restarted and healthy", restarted, 10)
    true(time.time() - t0 < 5, f"restarted within 5 s: {time.time() - t0:.1f} s")
    for name, pid in old.items():
        eq(int(rows[name]["restarts"]), int(before[name]["restarts"]) + 1, f"{name} restarts")
        eq(exe(rows[name]["pid"]), EXE[name], f"{name} new pid")
        eq(restarts_logged(name, since), [(pid, "killed by signal KILL", int(rows[name]["restarts"]), 0.5)],
           f"{name} in the log")
    wait_for("the gateway sees 2/2 again", all_healthy, 15)


@test
def a_crashing_instance_is_restarted_with_growing_delays(ctx):
    """payments-2 killed, then its port taken: each restart exits at once (cannot listen)."""
    before = status()["payments-2"]
    since = len(run_log())
    os.kill(int(before["pid"]), signal.SIGKILL)
    t0 = time.time()
    hold = wait_for("the port taken", lambda: take_port(PORTS["payments-2"]), 0.4)
    try:
        logged = wait_for("three restarts logged",
                          lambda: len(restarts_logged("payments-2", since)) >= 3 and
                          restarts_logged("payments-2", since), 15)
        took = time.time() - t0
    finally:
        hold.close()
    r0 = int(before["restarts"])
    eq([(how, n, d) for _, how, n, d in logged[:3]],
       [("killed by signal KILL", r0 + 1, 0.5), ("exited with status 1", r0 + 2, 1.0),
        ("exited with status 1", r0 + 3, 2.0)], "restarts and delays")
    true(took >= 1.5, f"the delays are waited: third death after {took:.1f} s")
    row = wait_for("back once its port is free",
                   lambda: (lambda r: r["health"] == "ok" and r)(status()["payments-2"]), 10)
    eq(int(row["restarts"]), r0 + 3, "restarts")
    wait_for("the gateway sees 2/2 again", all_healthy, 15)


def take_port(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        s.listen()
        return s
    except OSError:
        s.close()
        return None


@test
def a_killed_gateway_worker_is_replaced_by_the_gateway(ctx):
    before = status()["gateway"]
    master = int(before["pid"])
    workers = children(master)
    eq(len(workers), 2, f"gateway workers {workers}")
    os.kill(workers[0], signal.SIGKILL)
    now = wait_for("a new worker", lambda: (lambda c: len(c) == 2 and workers[0] not in c and c)(
        children(master)), 10)
    true(workers[1] in now, "the other worker kept")
    after = status()["gateway"]
    eq((after["pid"], after["restarts"]), (before["pid"], before["restarts"]),
       "the master stays: not a restart for the runner")
    wait_for("gateway health ok", lambda: status()["gateway"]["health"] == "ok", 10)


@test
def stop_ends_every_process(ctx):
    rows = status()
    eq([n for n, r in rows.items() if r["pid"] == "-"], [], "processes without a pid")
    pids = [int(r["pid"]) for r in rows.values()] + children(int(rows["gateway"]["pid"]))
    true(len(pids) >= 9, f"processes: {pids}")
    # stop while an instance waits to be restarted: it must not come back; a second stop
    # (or Ctrl-C) while stopping must not cut the first one short
    os.kill(int(rows["auth-2"]["pid"]), signal.SIGKILL)
    first = subprocess.Popen([RUN, "stop"], env=ENV, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    r = subprocess.run([RUN, "stop"], env=ENV, capture_output=True, text=True, timeout=120)
    eq(r.returncode, 0, r.stderr)
    eq(first.wait(120), 0, first.stderr.read())
    for pid in pids:
        true(not alive(pid), f"pid {pid} still runs")
    for wait in (0, 1.5):  # 1.5 s: past the restart delay
        time.sleep(wait)
        busy = [f"{name}:{port}" for name, port in dict(PORTS, http=HTTP).items() if listening(port)]
        eq(busy, [], f"ports in use {wait} s after stop")
    r = subprocess.run([RUN, "status"], env=ENV, capture_output=True, text=True, timeout=60)
    eq(r.returncode, 1, "status after stop")


if __name__ == "__main__":
    main("e2e", setup, teardown)
