"""The suite as containers, as a user runs it on this machine's Docker Engine:
deploy/build-images, then deploy/docker-compose.yml from a copy of deploy/ prepared with only
`cp .env.example .env`, on moved ports; curl and openssl through the published HTTPS port (a
user's walk, scaling by instance, containers killed under load, backup and restore); then
deploy/stack.yml on a one-node Swarm scaled with `docker service scale`. Every container,
network, volume, secret and swarm it made is removed at the end, also on failure."""
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import procs  # noqa: E402
import samples  # noqa: E402
import suite_client  # noqa: E402
from check import eq, main, test, true  # noqa: E402
from suite_client import wait_for  # noqa: E402

VAR = os.path.join(procs.ROOT, "var", "test", "containers")
DEPLOY = os.path.join(procs.ROOT, "deploy")
PROJECT = os.environ.get("CONTAINERS_PROJECT", "suitetest")
STACK = PROJECT + "swarm"
# ports and subnets of its own (CONTAINERS_* move them), so that a stack a user runs is left alone
HTTP, HTTPS, SW_HTTP, SW_HTTPS = (int(os.environ.get("CONTAINERS_" + n, d)) for n, d in (
    ("HTTP_PORT", 28080), ("HTTPS_PORT", 28443), ("SWARM_HTTP_PORT", 29080), ("SWARM_HTTPS_PORT", 29443)))
ENV = dict(os.environ, COMPOSE_PROJECT_NAME=PROJECT, HTTP_PORT=str(HTTP), HTTPS_PORT=str(HTTPS),
           INTERNAL_SUBNET=os.environ.get("CONTAINERS_SUBNET", "10.231.7.0/24"))
SW_ENV = dict(os.environ, HTTP_PORT=str(SW_HTTP), HTTPS_PORT=str(SW_HTTPS), SECRETS_PREFIX=STACK + "_",
              INTERNAL_SUBNET=os.environ.get("CONTAINERS_SWARM_SUBNET", "10.231.8.0/24"))
COMPOSE = ["docker-compose", "-f", os.path.join(VAR, "deploy", "docker-compose.yml")]
CLIENT = suite_client.Client(f"https://localhost:{HTTPS}", os.path.join(VAR, "server.crt"))
curl, pcurl = CLIENT.curl, CLIENT.pcurl


def run(*cmd, env=ENV, timeout=300, check=True, **kw):
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[:4])}... exited {r.returncode}: {(r.stderr or r.stdout)[-2000:]}")
    return r.stdout


def compose(*args, timeout=300):
    return run(*COMPOSE, *args, timeout=timeout)


def containers(service):
    """The ids of a compose service's containers, running or not."""
    return run("docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}",
               "--filter", f"label=com.docker.compose.service={service}").split()


def inspect(cid, fmt):
    return run("docker", "inspect", "-f", fmt, cid).strip()


def stack_down():
    """Removes this suite's compose project and Swarm stack with their volumes and secrets."""
    if os.path.exists(COMPOSE[2]):
        run(*COMPOSE, "down", "-v", "--remove-orphans", "--timeout", "10", check=False, timeout=180)
    run("docker", "stack", "rm", STACK, check=False, timeout=60)
    # a stack's volumes and secrets can go only once its containers have
    deadline = time.time() + 60
    while time.time() < deadline and run("docker", "ps", "-aq", "--filter",
                                         f"label=com.docker.stack.namespace={STACK}", check=False):
        time.sleep(1)
    for kind, flt in (("volume", f"label=com.docker.stack.namespace={STACK}"),
                      ("secret", f"name={STACK}_")):
        ids = run("docker", kind, "ls", "-q", "--filter", flt, check=False).split()
        if ids:
            run("docker", kind, "rm", *ids, check=False)


def setup():
    run("docker", "info", timeout=30)  # a machine without a Docker Engine fails here, loudly
    shutil.rmtree(VAR, ignore_errors=True)
    os.makedirs(VAR)
    stack_down()
    t0 = time.time()
    run(os.path.join(DEPLOY, "build-images"), timeout=1800)
    built = time.time() - t0
    # what a user does: a copy of deploy/ with .env made from the example, nothing else
    shutil.copytree(DEPLOY, os.path.join(VAR, "deploy"), ignore=shutil.ignore_patterns(".env", "k8s"))
    shutil.copy(os.path.join(DEPLOY, ".env.example"), os.path.join(VAR, "deploy", ".env"))
    t0 = time.time()
    compose("up", "-d", timeout=600)
    gw = containers("gateway")[0]
    wait_for("the gateway container healthy",
             lambda: inspect(gw, "{{.State.Health.Status}}") == "healthy", 180, every=1)
    run("docker", "cp", f"{gw}:/etc/suite/certs/server.crt", CLIENT.cacert)
    wait_for("/health 200", lambda: curl("/health")[0] == 200, 60, every=0.5)
    print(f"# images built in {built:.0f} s; stack healthy {time.time() - t0:.0f} s after up",
          flush=True)
    return {}


def teardown(ctx):
    for name in ("gateway", "svc-auth", "worker-ocr"):  # the logs, to read when a test failed
        with open(os.path.join(VAR, name + ".log"), "w") as f:
            subprocess.run(COMPOSE + ["logs", "--no-color", "--tail", "300", name], env=ENV,
                           stdout=f, stderr=subprocess.STDOUT)
    stack_down()
    if ctx and ctx.get("swarm_made"):
        run("docker", "swarm", "leave", "--force", check=False)
        if ctx.get("gwbridge_made"):  # swarm init's bridge outlives the swarm
            run("docker", "network", "rm", "docker_gwbridge", check=False)


def new_user(client, org):
    email = f"c-{uuid.uuid4().hex[:10]}@example.com"
    s, _, body = client.pcurl("/auth/register", data={"email": email, "password": "correct horse",
                                                      "organization": org})
    eq(s, 201, f"register: {body[:200]}")
    s, _, body = client.pcurl("/auth/login", data={"email": email, "password": "correct horse"})
    eq(s, 200, f"login: {body[:200]}")
    return email, "Authorization: Bearer " + json.loads(body)["access_token"]


@test
def tls_certificate_and_redirect_on_the_published_ports(ctx):
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{HTTPS}", "-servername",
                        "localhost", "-CAfile", CLIENT.cacert, "-verify_return_error", "-brief"],
                       input="", capture_output=True, text=True, timeout=20)
    eq(r.returncode, 0, f"openssl s_client: {r.stderr[-500:]}")
    true("Verification: OK" in r.stderr, f"the init step's certificate verifies: {r.stderr[-500:]}")
    true("TLSv1.3" in r.stderr or "TLSv1.2" in r.stderr, r.stderr)
    s, h, _ = curl(f"http://localhost:{HTTP}/auth/me")
    true(s in (301, 308), f"plain HTTP redirects: {s}")
    true(h["location"].startswith("https://"), h["location"])


@test
def a_user_walks_register_pay_upload_ocr_search_logout(ctx):
    _, auth = new_user(CLIENT, "Compose Corp")
    s, _, body = pcurl("/auth/me", headers=[auth])
    eq(s, 200, "me")
    s, _, body = pcurl("/payments", data={"amount": 990, "currency": "eur", "description": "c"},
                       headers=[auth, "Idempotency-Key: " + uuid.uuid4().hex])
    eq(s, 201, f"payment: {body[:200]}")
    eq(json.loads(body)["status"], "pending")
    png = samples.image(os.path.join(VAR, "lighthouse.png"), "lighthouse receipt 5521")
    s, _, body = pcurl("/documents", "-F", f"file=@{png}", "-F", "tags=receipt", headers=[auth])
    eq(s, 201, f"upload: {body[:200]}")
    doc_id = json.loads(body)["id"]

    def ocr_done():
        s, _, body = curl(f"/documents/{doc_id}", headers=[auth])
        d = json.loads(body) if s == 200 else {}
        return d.get("ocr", {}).get("status") in ("done", "failed") and d.get("archive", {}).get("status") == "done" and d
    d = wait_for("OCR and archive done", ocr_done, 180, every=1)
    eq(d["ocr"]["status"], "done", f"ocr {d['ocr']}")
    true("lighthouse" in d["ocr"]["text"].lower(), f"OCR text {d['ocr']['text']!r}")
    s, _, body = pcurl("/documents?q=lighthouse", headers=[auth])
    eq([x["id"] for x in json.loads(body)["data"]], [doc_id], "search finds the document")
    eq(pcurl("/auth/logout", headers=[auth], method="POST")[0], 204, "logout")
    time.sleep(1.2)
    eq(pcurl("/payments", headers=[auth])[0], 401, "the logged-out token is refused")


def scale(n):
    t0 = time.time()
    compose("up", "-d", "--no-recreate", "--scale", f"svc-auth={n}", "--scale", f"svc-payments={n}")
    want = {"healthy": n, "total": n}
    wait_for(f"/health counts {n} of each", lambda: all(
        CLIENT.upstreams().get(u) == want for u in ("auth", "payments")), 90, every=0.5)
    return time.time() - t0


@test
def scaling_by_instance_needs_no_config_change(ctx):
    took = scale(3)
    print(f"# scaled auth and payments to 3: /health counted them {took:.1f} s after the command",
          flush=True)
    eq(len(containers("svc-auth")), 3)


class Load:
    """GET /.well-known/jwks.json (served by svc-auth through the gateway) from four threads
    at about 8 requests a second in all, under its route's rate limit; counts every answer."""

    def __init__(self):
        self.codes, self.errors, self.stop = {}, [], threading.Event()
        self.threads = [threading.Thread(target=self.loop) for _ in range(4)]
        for t in self.threads:
            t.start()

    def loop(self):
        while not self.stop.is_set():
            try:
                s = curl("/.well-known/jwks.json", timeout=10)[0]
                self.codes[s] = self.codes.get(s, 0) + 1
            except AssertionError as e:
                self.errors.append(str(e))
            time.sleep(0.5)

    def end(self):
        self.stop.set()
        for t in self.threads:
            t.join()
        return self.codes, self.errors


@test
def auth_containers_killed_under_load_fail_no_request(ctx):
    ids = containers("svc-auth")
    true(len(ids) >= 3, f"three auth containers: {ids}")
    crashed, stopped = ids[0], ids[1]
    restarts = int(inspect(crashed, "{{.RestartCount}}"))
    load = Load()
    try:
        time.sleep(3)
        # a crash (what an OOM kill or a fault looks like): Docker restarts the container
        subprocess.run(["kill", "-KILL", inspect(crashed, "{{.State.Pid}}")], check=True)
        time.sleep(4)
        # docker kill: Docker takes it as an operator's stop and does not restart it
        run("docker", "kill", stopped)
        time.sleep(6)
    finally:
        codes, errors = load.end()
    print(f"# GETs during the two kills: {codes}, transport errors {len(errors)}", flush=True)
    eq(errors, [], "no request failed at the transport")
    eq(set(codes), {200}, f"every GET answered 200: {codes}")
    true(sum(codes.values()) >= 60, f"the load ran: {codes}")
    wait_for("the crashed container restarted and healthy", lambda: int(inspect(
        crashed, "{{.RestartCount}}")) > restarts and inspect(crashed, "{{.State.Health.Status}}") == "healthy", 60, every=1)
    scale(3)  # compose brings the stopped one back


@test
def backup_wipe_restore_and_the_user_still_logs_in(ctx):
    email, _ = new_user(CLIENT, "Backup Corp")
    out = compose("exec", "-T", "backup", "suite-backup", "/backups")
    dumps = [line.split(" -> ")[1].split()[0] for line in out.splitlines() if " -> " in line]
    eq(len(dumps), 3, f"a dump per database: {out}")
    auth_dump = next(d for d in dumps if os.path.basename(d).startswith("auth-"))
    compose("exec", "-T", "postgres", "sh", "-c", 'PGPASSWORD=$(cat "$POSTGRES_PASSWORD_FILE") '
            'psql -qU postgres -h 127.0.0.1 -c "DROP DATABASE auth WITH (FORCE)"')
    s, _, _ = pcurl("/auth/login", data={"email": email, "password": "correct horse"})
    true(s >= 500, f"login fails with the database gone: {s}")
    compose("exec", "-T", "backup", "suite-restore", auth_dump)

    def logs_in():
        s, _, body = pcurl("/auth/login", data={"email": email, "password": "correct horse"})
        return s == 200 or (s, body[:200])
    wait_for("login after the restore", logs_in, 60, every=1)
    t0 = time.time()
    wait_for("every instance healthy again", lambda: curl("/health")[0] == 200 or curl("/health"), 90, every=1)
    print(f"# after the restore, /health was 200 again {time.time() - t0:.1f} s after the first login",
          flush=True)


def served_subject():
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{HTTPS}", "-servername", "localhost"],
                       input="", capture_output=True, text=True, timeout=20)
    r = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=r.stdout, capture_output=True,
                       text=True, timeout=20)
    return r.stdout.strip()


@test
def a_renewed_certificate_is_served_without_a_restart(ctx):
    # what the certbot profile's deploy hook does (deploy/compose/certbot.sh install), with a
    # certificate made here in place of Let's Encrypt's
    make = ("set -e; d=/etc/letsencrypt/live/renewed.test; mkdir -p $d; "
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
            "-subj /CN=renewed.test -addext subjectAltName=DNS:localhost "
            "-keyout $d/privkey.pem -out $d/fullchain.pem 2>/dev/null; "
            "SERVER_NAME=renewed.test sh /usr/local/bin/suite-certbot install; cat $d/fullchain.pem")
    started = inspect(containers("gateway")[0], "{{.State.StartedAt}}")
    true("renewed.test" not in served_subject(), "the init step's certificate before")
    pem = run("docker", "run", "--rm", "--network", "none", "--entrypoint", "sh",
              "-v", f"{PROJECT}_letsencrypt:/etc/letsencrypt", "-v", f"{PROJECT}_certs:/etc/suite/certs",
              "-v", os.path.join(DEPLOY, "compose", "certbot.sh") + ":/usr/local/bin/suite-certbot:ro",
              "suite-init:latest", "-c", make)
    t0 = time.time()
    wait_for("the new certificate served", lambda: "renewed.test" in served_subject(), 30, every=0.5)
    print(f"# the renewed certificate was served {time.time() - t0:.1f} s after it was installed",
          flush=True)
    CLIENT.cacert = os.path.join(VAR, "renewed.crt")
    with open(CLIENT.cacert, "w") as f:
        f.write(pem[pem.index("-----BEGIN"):])
    eq(curl("/health")[0], 200, "clients that trust the new certificate")
    eq(inspect(containers("gateway")[0], "{{.State.StartedAt}}"), started, "the gateway was not restarted")


@test
def the_same_suite_on_a_one_node_swarm(ctx):
    state = run("docker", "info", "-f", "{{.Swarm.LocalNodeState}}").strip()
    if state == "inactive":
        ctx["gwbridge_made"] = not run("docker", "network", "ls", "-q", "--filter", "name=^docker_gwbridge$")
        run("docker", "swarm", "init")
        ctx["swarm_made"] = True
    compose("down", "--timeout", "10")  # the compose stack's ports and CPU for the swarm one
    run(os.path.join(DEPLOY, "swarm-secrets"), env=SW_ENV)
    t0 = time.time()
    run("docker", "stack", "deploy", "-c", os.path.join(DEPLOY, "stack.yml"), STACK, env=SW_ENV)
    secret = run("docker", "secret", "inspect", "-f", "{{.ID}}", f"{STACK}_server.crt").strip()
    true(secret, "the certificate secret")
    # the certificate is a secret: read it inside the gateway's own task
    gw = wait_for("the gateway task running", lambda: run(
        "docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={STACK}_gateway",
        check=False).split(), 120, every=1)[0]
    client = suite_client.Client(f"https://localhost:{SW_HTTPS}", os.path.join(VAR, "swarm.crt"))
    with open(client.cacert, "w") as f:  # (docker cp sees no secret: they are mounts)
        f.write(run("docker", "exec", gw, "cat", "/etc/suite/certs/server.crt"))
    wait_for("every upstream healthy on the swarm", lambda: all(
        client.upstreams().get(u, {}).get("healthy") == 1 for u in ("auth", "payments", "storage")),
        240, every=1)
    print(f"# swarm stack healthy {time.time() - t0:.0f} s after deploy", flush=True)
    _, auth = new_user(client, "Swarm Corp")
    eq(client.pcurl("/auth/me", headers=[auth])[0], 200, "me on the swarm")
    t0 = time.time()
    run("docker", "service", "scale", "-d", f"{STACK}_svc-auth=3", f"{STACK}_svc-payments=2")
    wait_for("/health counts the new replicas", lambda: client.upstreams().get("auth") == {"healthy": 3, "total": 3}
             and client.upstreams().get("payments") == {"healthy": 2, "total": 2}, 120, every=0.5)
    print(f"# swarm: scaled to 3 auth, 2 payments; /health counted them {time.time() - t0:.1f} s later",
          flush=True)


if __name__ == "__main__":
    main("containers/test_compose", setup, teardown)
