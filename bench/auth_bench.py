"""auth_bench: drives bench/auth.sh (see there). Starts its own redis-server and one svc-auth
instance on a scratch database, runs wrk phases and prints the figures of issue 3."""
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import auth_util as U  # noqa: E402

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
PORT = 24990
REDIS_PORT = 24991
EMAIL = "bench@example.com"
PASSWORD = "bench password"


def metric(port, name):
    body = U.request(port, "GET", "/metrics").body.decode()
    m = re.search(r"^" + re.escape(name) + r"(?:\{[^}]*\})? ([0-9.e+-]+)$", body, re.M)
    return float(m.group(1)) if m else 0.0


def wrk(args, env):
    e = dict(os.environ)
    e.update(env)
    return subprocess.run(["wrk"] + args, capture_output=True, text=True, env=e,
                          timeout=SECONDS * 3 + 30).stdout


def non2xx(out):
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return int(m.group(1)) if m else 0


def parse_rps(out):
    m = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    return float(m.group(1)) if m else 0.0


def main():
    tmp = tempfile.mkdtemp(prefix="auth-bench-")
    key = os.path.join(tmp, "k.pem")
    U.openssl_genkey(key)
    db = f"auth_bench_{os.getpid()}"
    U.psql(f'CREATE DATABASE "{db}"')
    redis = U.RedisServer(REDIS_PORT)
    inst = None
    try:
        inst = U.AuthInstance(PORT, {
            "PGHOST": U.PGHOST, "PGPORT": str(U.PGPORT), "PGUSER": U.PGUSER, "PGDATABASE": db,
            "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(REDIS_PORT),
            "AUTH_SIGNING_KEYS": key, "AUTH_HASH_QUEUE": "256", "LOG_LEVEL": "error",
            "AUTH_THROTTLE_PER_IP": "1000000", "AUTH_THROTTLE_PER_ACCOUNT": "1000000"})
        time.sleep(1.0)
        idle_rss = U.procs.rss_kib(inst.proc.pid)
        r = U.request(PORT, "POST", "/auth/register", {"email": EMAIL, "password": PASSWORD})
        assert r.status == 201, r.body
        token = U.request(PORT, "POST", "/auth/login",
                          {"email": EMAIL, "password": PASSWORD}).json()["access_token"]
        env = {"BENCH_EMAIL": EMAIL, "BENCH_PASSWORD": PASSWORD, "BENCH_TOKEN": token}
        url = f"http://127.0.0.1:{PORT}"
        cores = os.cpu_count() or 1
        conc = max(1, cores - 1)

        # 1. /auth/me alone (cached token)
        out = wrk(["-t1", "-c32", f"-d{SECONDS}s", "-s", os.path.join(HERE, "auth_me.lua"),
                   url + "/auth/me"], env)
        me_alone = re.search(r"^ME .*$", out, re.M).group(0) + f" non2xx={non2xx(out)}"

        # 2. login storm alone: throughput vs the argon2 limit measured in the same run
        c0, s0 = metric(PORT, "auth_password_hash_seconds_count"), \
            metric(PORT, "auth_password_hash_seconds_sum")
        out = wrk(["-t1", f"-c{conc * 4}", f"-d{SECONDS}s", "-s",
                   os.path.join(HERE, "auth_login.lua"), url + "/auth/login"], env)
        login_rps = parse_rps(out)
        login_bad = non2xx(out)
        c1, s1 = metric(PORT, "auth_password_hash_seconds_count"), \
            metric(PORT, "auth_password_hash_seconds_sum")
        hash_s = (s1 - s0) / (c1 - c0) if c1 > c0 else float("nan")
        limit = conc / hash_s

        # 3. /auth/me during a login storm
        storm = subprocess.Popen(
            ["wrk", "-t1", f"-c{conc * 4}", f"-d{SECONDS + 2}s", "-s",
             os.path.join(HERE, "auth_login.lua"), url + "/auth/login"],
            env=dict(os.environ, **env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)
            out = wrk(["-t1", "-c16", f"-d{SECONDS}s", "-s", os.path.join(HERE, "auth_me.lua"),
                       url + "/auth/me"], env)
        finally:
            storm.wait(timeout=SECONDS + 30)
        me_storm = re.search(r"^ME .*$", out, re.M).group(0) + f" non2xx={non2xx(out)}"
        busy_rss = U.procs.rss_kib(inst.proc.pid)

        print(f"cores={cores} hash_concurrency={conc}")
        print(f"argon2id mean hash time (same run): {hash_s * 1000:.1f} ms -> limit "
              f"{limit:.1f} logins/s")
        print(f"login throughput: {login_rps:.1f} logins/s = {100 * login_rps / limit:.0f}% of the "
              f"limit (non-2xx answers: {login_bad})")
        print(f"/auth/me alone, 32 connections: {me_alone}")
        print(f"/auth/me during the login storm, 16 connections: {me_storm}")
        print(f"idle RSS: {idle_rss / 1024:.1f} MiB; after the storm: {busy_rss / 1024:.1f} MiB")
    finally:
        if inst:
            inst.stop()
        redis.remove()
        U.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        os.unlink(key)
        os.rmdir(tmp)


if __name__ == "__main__":
    main()
