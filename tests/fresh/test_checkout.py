"""A newcomer's checkout: both README commands (deploy/local/run and tests/run) from a copy of
this tree under a mode-700 directory, as a project cloned into root's home on a new Debian is,
where the user PostgreSQL runs as cannot reach the checkout. Run once, not per build: the copy
builds itself."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import procs  # noqa: E402
from check import eq, main, test, true  # noqa: E402

# ports of its own: apart from tests/run's servers, the e2e suite and a developer's suite
HTTPS, HTTP = 19443, 19080
LOCAL = {"LOCAL_HTTPS_PORT": str(HTTPS), "LOCAL_HTTP_PORT": str(HTTP), "LOCAL_PORT_BASE": "19500",
         "LOCAL_PG_PORT": "19432", "LOCAL_REDIS_PORT": "19379", "LOG_LEVEL": "warn"}
# what tests/run exported for this run must not leak into the copy's own runs
SCRUB = ("SUITE_BUILD", "SUITE_SANITIZED", "PGHOST", "PGPORT", "PGUSER", "PGDATABASE",
         "REDIS_HOST", "REDIS_PORT", "LOCAL_VAR", "LOCAL_BUILD")


def env(**extra):
    e = {k: v for k, v in os.environ.items() if k not in SCRUB}
    e.update(extra)
    return e


def setup():
    home = tempfile.mkdtemp(prefix="suite-home-")     # mode 700, as /root
    os.chmod(home, 0o700)
    tree = os.path.join(home, "project")
    os.mkdir(tree)
    # the tree as it is (tracked and new files), not the build or state of this checkout
    files = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=procs.ROOT,
                           capture_output=True, check=True).stdout
    tar = subprocess.run(["tar", "-C", procs.ROOT, "--null", "--ignore-failed-read", "-T", "-",
                          "-cf", "-"], input=files, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-C", tree, "-xf", "-"], input=tar, check=True)
    return {"home": home, "tree": tree}


def teardown(ctx):
    subprocess.run([os.path.join(ctx["tree"], "deploy/local/run"), "stop"], env=env(**LOCAL),
                   capture_output=True, timeout=120)
    for pg in ("var/local/pg", "var/test/pg"):     # clusters that may live outside the copy
        subprocess.run([os.path.join(procs.ROOT, "tests/fixtures/pg"), "remove",
                        os.path.join(ctx["tree"], pg)], capture_output=True, timeout=120)
    shutil.rmtree(ctx["home"], ignore_errors=True)


def curl(ctx, path, *args):
    crt = os.path.join(ctx["tree"], "var/local/certs/server.crt")
    r = subprocess.run(["curl", "-sS", "--cacert", crt, "--max-time", "20", "-w", "\n%{http_code}",
                        *args, f"https://localhost:{HTTPS}{path}"], capture_output=True, text=True)
    true(r.returncode == 0, f"curl {path}: {r.stderr}")
    body, _, status = r.stdout.rpartition("\n")
    return int(status), body


@test
def local_run_from_private_home(ctx):
    run = os.path.join(ctx["tree"], "deploy/local/run")
    r = subprocess.run([run, "-d"], env=env(**LOCAL), capture_output=True, text=True, timeout=900)
    eq(r.returncode, 0, f"deploy/local/run -d: {r.stderr[-2000:]}")
    try:
        deadline = time.time() + 30
        while True:
            status, body = curl(ctx, "/health")
            if status == 200 or time.time() > deadline:
                break
            time.sleep(0.5)
        eq(status, 200, f"/health: {body}")
        ups = json.loads(body)["upstreams"]
        eq(ups["auth"], {"healthy": 2, "total": 2}, "auth instances")
        # the database works: register and log in through the gateway
        email = f"fresh{os.getpid()}@example.com"
        creds = json.dumps({"email": email, "password": "correct horse battery"})
        status, body = curl(ctx, "/auth/register", "-H", "Content-Type: application/json",
                            "--data", creds)
        eq(status, 201, f"register: {body}")
        status, body = curl(ctx, "/auth/login", "-H", "Content-Type: application/json",
                            "--data", creds)
        eq(status, 200, f"login: {body}")
        true(json.loads(body)["access_token"], "an access token")
    finally:
        r = subprocess.run([run, "stop"], env=env(**LOCAL), capture_output=True, text=True,
                           timeout=120)
        eq(r.returncode, 0, f"deploy/local/run stop: {r.stderr[-2000:]}")


@test
def tests_run_from_private_home(ctx):
    r = subprocess.run([os.path.join(ctx["tree"], "tests/run"), "unit"],
                       env=env(TEST_BUILDS="plain", TEST_PG_PORT="19532", TEST_REDIS_PORT="19479"),
                       capture_output=True, text=True, timeout=1200)
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    m = re.fullmatch(r"(\d+) passed, (\d+) failed", last)
    true(m is not None, f"tests/run ended with {last!r}: {r.stdout[-2000:]}{r.stderr[-1000:]}")
    eq(m.group(2), "0", f"failures: {r.stdout[-3000:]}")
    true(int(m.group(1)) > 50, f"only {m.group(1)} passed")
    eq(r.returncode, 0, "exit status")


if __name__ == "__main__":
    main("fresh", setup, teardown)
