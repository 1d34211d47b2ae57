"""test_scanner: the `scanner` command against real svc-storage instances (and svc-auth for
an API key, PostgreSQL, Redis; tests/integration/storage_env.py). A folder tree of PNG and PDF
files, a text file, a file over the upload limit, a copy of one image, a dotfile and a symlink
loop: the first run uploads every image once, reports the text file (415) and the big one
(413) as failed and exits 1; the second run uploads nothing (all skipped as already there);
the organization's document list matches the tree. Also: another organization does not skip,
--dry-run uploads nothing, a wrong API key fails every file, a service that comes up late is
reached by the retries, 503 and 429 answers are retried after their Retry-After, the real
gateway is reached over TLS with --cacert (or --insecure), a dead service fails after 3 tries,
usage errors exit 2, and on a terminal a progress line is drawn."""
import hashlib
import os
import pty
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(__file__))
import procs  # noqa: E402
import storage_env as se  # noqa: E402
from check import eq, main, test, true  # noqa: E402

SCANNER = procs.binary("svc-storage/scanner")
IMAGES = ["top.png", "a/scan1.png", "a/b/scan2.pdf", "a/b/c/scan3.png", "a/b/c/big.png",
          "caf\u00e9 & co/re\u00e7u #1.pdf"]


def write(root, rel, data):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def make_tree(root):
    """The scanned folder; returns {rel: bytes} of the images that must be uploaded."""
    images = {}
    for rel in IMAGES:
        if rel.endswith(".png"):
            data = se.png(rel.encode())
        else:
            data = se.pdf(rel)
        if rel.endswith("big.png"):
            data += os.urandom(1536 * 1024)  # streamed in many pieces, under the 2 MiB limit
        write(root, rel, data)
        images[rel] = data
    write(root, "a/notes.txt", b"just some text, not a scan\n")
    write(root, "a/b/too-big.png", se.png(b"big") + os.urandom(se.MAX_UPLOAD + 1024))
    write(root, "copies/scan1-copy.png", images["a/scan1.png"])  # same bytes: a duplicate
    write(root, ".hidden/secret.png", se.png(b"hidden"))
    os.symlink("..", os.path.join(root, "a", "b", "loop"))  # a folder loop
    return images


class Ctx:
    pass


def setup():
    c = Ctx()
    c.env = se.Env(tag="scantest")
    c.users = c.env.make_users()
    c.keys = {}
    for who in ("alice", "bob"):
        r = c.env.auth("POST", "/auth/api-keys", {"name": "scanner"}, token=c.users[who])
        if r.status != 201:
            raise RuntimeError(f"api key: {r.status} {r.body[:200]!r}")
        c.keys[who] = r.json()["key"]
    c.root = os.path.join(c.env.tmp, "scans")
    c.images = make_tree(c.root)
    c.url = f"http://127.0.0.1:{c.env.ports[0]}"
    return c


def teardown(c):
    c.env.close()


def scan(args, key=None, url=None, timeout=120, env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCANNER_")}
    if key:
        env["SCANNER_API_KEY"] = key
    if url:
        env["SCANNER_URL"] = url
    env.update(env_extra or {})
    t0 = time.time()
    p = subprocess.run([SCANNER, *args], env=env, capture_output=True, text=True,
                       timeout=timeout)
    no_sanitizer_report(p.stderr)
    return p.returncode, p.stdout, p.stderr, time.time() - t0


def no_sanitizer_report(err):
    true("Sanitizer" not in err and "runtime error:" not in err, f"sanitizer report: {err}")


def lines_of(out, word):
    """The relative paths the plain output reports with this word."""
    found = []
    for line in out.splitlines():
        m = re.match(r"^(uploaded|skipped|duplicate|would upload|failed)\s+(.*)$", line)
        if m and m.group(1) == word:
            rest = m.group(2)
            found.append(rest.split(": ", 1)[0] if word == "failed" else rest.rsplit(" (", 1)[0])
    return sorted(found)


def documents(c, who="alice"):
    r = c.env.call("GET", "/documents?limit=100", token=c.users[who])
    eq(r.status, 200, f"list: {r.body[:200]!r}")
    return r.json()["data"]


@test
def first_run_uploads_images(c):
    rc, out, err, _ = scan(["--jobs", "3", c.root], key=c.keys["alice"], url=c.url)
    eq(rc, 1, f"a file failed, so exit 1: {out} {err}")
    eq(lines_of(out, "uploaded"), sorted(IMAGES), f"every image uploaded once: {out}")
    eq(lines_of(out, "duplicate"), ["copies/scan1-copy.png"], out)
    eq(lines_of(out, "failed"), ["a/b/too-big.png", "a/notes.txt"], out)
    true(re.search(r"failed\s+a/notes.txt: HTTP 415 unsupported_media_type", out), out)
    true(re.search(r"failed\s+a/b/too-big.png: HTTP 413 too_large", out), out)
    true("secret.png" not in out and "loop" not in out, "dotfiles and the loop left out")
    true("summary: uploaded 6, skipped 0 (already there), duplicates 1, failed 2" in out, out)
    docs = documents(c)
    want = sorted((os.path.basename(rel), hashlib.sha256(d).hexdigest(), len(d))
                  for rel, d in c.images.items())
    got = sorted((d["filename"], d["sha256"], d["size"]) for d in docs)
    eq(got, want, "the organization's documents are the tree's images")
    for d in docs:
        if d["filename"] == "big.png":
            s, _, body = c.env.curl("{base}/documents/" + d["id"] + "/content",
                                    token=c.users["alice"])
            eq(s, 200, "content")
            eq(body, c.images["a/b/c/big.png"], "the streamed upload is byte-identical")


@test
def second_run_skips_everything(c):
    before = documents(c)
    rc, out, err, _ = scan([c.root], key=c.keys["alice"], url=c.url)
    eq(rc, 1, f"the text file fails again: {out} {err}")
    eq(lines_of(out, "uploaded"), [], f"nothing uploaded: {out}")
    eq(lines_of(out, "skipped"), sorted(IMAGES), out)
    true("summary: uploaded 0, skipped 6 (already there), duplicates 1, failed 2" in out, out)
    eq(sorted(d["id"] for d in documents(c)), sorted(d["id"] for d in before), "list unchanged")


@test
def other_organization_does_not_skip(c):
    rc, out, err, _ = scan(["--dry-run", c.root], key=c.keys["bob"], url=c.url)
    eq(rc, 0, f"a dry run fails nothing: {out} {err}")
    eq(lines_of(out, "would upload"), sorted(IMAGES + ["a/b/too-big.png", "a/notes.txt"]), out)
    true("summary: would upload 8, skipped 0 (already there), duplicates 1, failed 0" in out, out)
    eq(documents(c, "bob"), [], "a dry run uploads nothing")


@test
def wrong_api_key_fails_each_file(c):
    rc, out, err, _ = scan([c.root], key="sk_not_a_real_key_0123456789", url=c.url)
    eq(rc, 1, f"{out} {err}")
    true(re.search(r"failed\s+top.png: HTTP 401", out), out)
    true("summary: uploaded 0," in out and "failed 8" in out, out)
    true("sk_not_a_real_key" not in out + err, "the key is not printed")


@test
def retries_reach_a_late_service(c):
    root = os.path.join(c.env.tmp, "late")
    write(root, "late.png", se.png(b"late"))
    port = procs.free_port()
    p = subprocess.Popen([SCANNER, "--url", f"http://127.0.0.1:{port}", root],
                         env=dict(os.environ, SCANNER_API_KEY=c.keys["alice"]),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)  # the first try finds nothing listening; the next comes 1 s after it
    inst = procs.Proc([procs.binary("svc-storage/svc-storage")], port=port,
                      env=c.env.storage_env(port))
    try:
        out, err = p.communicate(timeout=60)
    finally:
        inst.stop()
    no_sanitizer_report(err)
    eq(p.returncode, 0, f"{out} {err}")
    eq(lines_of(out, "uploaded"), ["late.png"], out)


@test
def retry_after_is_honoured(c):
    # A storage instance whose svc-auth is down answers 503 with Retry-After: 1: the scanner
    # tries 3 times, 1 s apart (its own backoff would wait 1 s then 2 s), then fails the file.
    root = os.path.join(c.env.tmp, "auth-down")
    write(root, "auth-down.png", se.png(b"auth-down"))
    auth_port, port = procs.free_port(), procs.free_port()
    inst = procs.Proc([procs.binary("svc-storage/svc-storage")], port=port,
                      env=c.env.storage_env(port, AUTH_URL=f"127.0.0.1:{auth_port}"))
    try:
        rc, out, err, took = scan([root], key=c.keys["alice"], url=f"http://127.0.0.1:{port}")
    finally:
        inst.stop()
    eq(rc, 1, f"{out} {err}")
    for n in (2, 3):
        true(re.search(r"^retry\s+auth-down.png: GET /documents: HTTP 503 unavailable.* "
                       rf"\(try {n} of 3 in 1.0 s\)", out, re.M), f"503 retried after 1 s: {out}")
    true(re.search(r"^failed\s+auth-down.png: HTTP 503", out, re.M), out)
    true(1.8 < took < 10, f"two waits of 1 s: {took:.1f} s")


def start_gateway(c, root):
    """The real gateway on TLS (a certificate of the test's own) in front of the two storage
    instances, /documents limited to 1 request a second with a burst of 1 per client."""
    cert, key = os.path.join(root, "gw.crt"), os.path.join(root, "gw.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    port = procs.free_port()
    cfg = os.path.join(root, "gateway.ini")
    with open(cfg, "w") as f:
        f.write(f"""[gateway]
workers = 1
http = off
https = 127.0.0.1:{port}
cert = {cert}
key = {key}
docs_dir = {procs.ROOT}/var/swagger-ui
openapi = {procs.ROOT}/docs/openapi.yaml
access_log = off

[upstream storage]
servers = {",".join(f"127.0.0.1:{p}" for p in c.env.ports)}
health_interval = 300ms
rise = 1

[route /documents]
upstream = storage
rate = 60r/m
burst = 1
max_body = 50m
""")
    gw = procs.Proc([procs.binary("gateway/gateway"), "--config", cfg], port=port)
    deadline = time.time() + 15
    while time.time() < deadline:
        h = subprocess.run(["curl", "-s", "--cacert", cert, f"https://127.0.0.1:{port}/health"],
                           capture_output=True, text=True, timeout=10).stdout
        if '"healthy":2' in h.replace(" ", ""):
            break
        time.sleep(0.2)
    return gw, f"https://127.0.0.1:{port}", cert


@test
def through_the_gateway_over_tls(c):
    root = os.path.join(c.env.tmp, "gw")
    write(root, "scans/gw-1.png", se.png(b"gw-1"))
    write(root, "scans/gw-2.pdf", se.pdf("gw-2"))
    gw, url, cert = start_gateway(c, root)
    scans = os.path.join(root, "scans")
    try:
        # A certificate nobody vouches for: every file fails at once, no retry.
        rc, out, err, _ = scan([scans], key=c.keys["alice"], url=url)
        eq(rc, 1, f"{out} {err}")
        true(re.search(r"^failed\s+gw-1.png: GET /documents: .*certificate", out, re.M), out)
        true("retry" not in out, f"a certificate error is not retried: {out}")
        # --cacert: one transfer at a time under the gateway's limit of 1 request a second,
        # each 429 waited out for its Retry-After.
        time.sleep(1.2)
        rc, out, err, _ = scan(["--cacert", cert, "--jobs", "1", scans], key=c.keys["alice"],
                               url=url)
        eq(rc, 0, f"{out} {err}")
        eq(lines_of(out, "uploaded"), ["gw-1.png", "gw-2.pdf"], out)
        true(re.search(r"^retry\s+gw-\d\.\w+: (GET|POST) /documents: HTTP 429 rate_limited.*"
                       r"\(again in 1.0 s\)", out, re.M), f"429 waited out: {out}")
        time.sleep(1.2)
        rc, out, err, _ = scan(["--insecure", "--jobs", "1", scans], key=c.keys["alice"],
                               url=url + "/")
        eq(rc, 0, f"{out} {err}")
        eq(lines_of(out, "skipped"), ["gw-1.png", "gw-2.pdf"], out)
    finally:
        gw.stop()


@test
def dead_service_fails_after_three_tries(c):
    root = os.path.join(c.env.tmp, "dead")
    write(root, "dead.png", se.png(b"dead"))
    port = procs.free_port()
    rc, out, err, took = scan([root], key=c.keys["alice"], url=f"http://127.0.0.1:{port}")
    eq(rc, 1, f"{out} {err}")
    true(re.search(r"failed\s+dead.png: GET /documents: .*[Cc]onnect", out), out)
    eq(len(re.findall(r"^retry\s+dead.png: ", out, re.M)), 2, f"two retries: {out}")
    true(2.5 < took < 30, f"3 tries with 1 s and 2 s between them, took {took:.1f} s")


@test
def usage_errors(c):
    cases = [[], [c.root, c.root], ["--jobs", "0", c.root], ["--jobs", "x", c.root],
             ["--bogus", c.root], ["--insecure", "--cacert", "/etc/hostname", c.root],
             [os.path.join(c.root, "top.png")], [os.path.join(c.root, "missing")]]
    for args in cases:
        rc, out, err, _ = scan(args, key=c.keys["alice"], url=c.url)
        eq(rc, 2, f"{args}: {out} {err}")
        true(err.strip(), f"{args}: a message on stderr")
    rc, _, err, _ = scan([c.root], url=c.url)
    eq(rc, 2, "no key")
    true("API key" in err, err)
    rc, _, err, _ = scan([c.root], key=c.keys["alice"])
    eq(rc, 2, "no URL")
    rc, _, err, _ = scan([c.root], key=c.keys["alice"], url="ftp://x")
    eq(rc, 2, "not http")
    keyfile = os.path.join(c.env.tmp, "scanner-key")
    with open(keyfile, "w") as f:
        f.write(c.keys["alice"] + "\n")
    rc, out, err, _ = scan(["--dry-run", os.path.join(c.root, "a", "b", "c")], url=c.url,
                           env_extra={"SCANNER_API_KEY_FILE": keyfile})
    eq(rc, 0, f"SCANNER_API_KEY_FILE: {out} {err}")
    eq(lines_of(out, "skipped"), ["big.png", "scan3.png"], out)


@test
def progress_on_a_terminal(c):
    root = os.path.join(c.env.tmp, "tty")
    write(root, "one.png", se.png(b"tty-one"))
    write(root, "two.pdf", se.pdf("tty-two"))
    write(root, "bad.txt", b"text\n")
    master, slave = pty.openpty()
    p = subprocess.Popen([SCANNER, "--url", c.url, root], stdout=slave, stderr=slave,
                         env=dict(os.environ, SCANNER_API_KEY=c.keys["alice"]))
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    p.wait(timeout=60)
    os.close(master)
    text = b"".join(chunks).decode(errors="replace")
    no_sanitizer_report(text)
    eq(p.returncode, 1, text)
    true(re.search(r"\[[#-]+\] \d+/3 files", text), f"a progress line: {text!r}")
    true("/s" in text and "left" in text, f"rate and time left: {text!r}")
    true("failed bad.txt: HTTP 415" in text, text)
    true("summary: uploaded 2, skipped 0 (already there), duplicates 0, failed 1" in text, text)
    true(not re.search(r"^uploaded\s+one.png", text, re.M), "no per-file lines on a terminal")


if __name__ == "__main__":
    main("scanner", setup, teardown)
