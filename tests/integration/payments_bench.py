"""payments_bench: the measurement behind bench/payments.sh (see there). Standard library only;
wrk and pgbench run as subprocesses."""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import payments_env as pe  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
CONNS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
POOL = int(os.environ.get("PG_POOL_SIZE", "4"))
PGB_CLIENTS = int(os.environ.get("BENCH_PGBENCH_CLIENTS", str(2 * POOL)))

# The INSERT svc-payments runs for POST /payments (without Idempotency-Key), same columns.
PGBENCH_SQL = """\
INSERT INTO payments (reference, user_id, org_id, amount, currency, description, metadata) \
VALUES ('pay_' || substr(md5(random()::text), 1, 24), 'bench-user', 'bench-org', 1999, 'EUR', \
'bench', '{"order":"1"}'::jsonb) \
RETURNING id, reference, status, amount, currency, description, metadata::text, created_at, updated_at;
"""

WRK_LUA = """\
wrk.method = "POST"
wrk.body = '{"amount":1999,"currency":"eur","description":"bench","metadata":{"order":"1"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
local ports = {%s}
local i = 0
setup = function(thread)
  i = i + 1
end
done = function(summary, latency, requests)
  io.write(string.format("WRKJSON {\\"requests\\":%%d,\\"errors_status\\":%%d,\\"errors_connect\\":%%d,"
    .. "\\"errors_timeout\\":%%d,\\"seconds\\":%%f,\\"p50_ms\\":%%f,\\"p90_ms\\":%%f,\\"p99_ms\\":%%f,\\"max_ms\\":%%f}\\n",
    summary.requests, summary.errors.status, summary.errors.connect, summary.errors.timeout,
    summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
"""


def run_pgbench(env, tmp):
    script = os.path.join(tmp, "insert.sql")
    with open(script, "w") as f:
        f.write(PGBENCH_SQL)
    out = subprocess.run(
        ["pgbench", "-h", os.environ["PGHOST"], "-p", os.environ["PGPORT"], "-U",
         os.environ["PGUSER"], "-n", "-M", "prepared", "-c", str(PGB_CLIENTS), "-j", "2",
         "-T", str(SECONDS), "-f", script, env.pay_db],
        capture_output=True, text=True, check=True).stdout
    tps = float(re.search(r"tps = ([0-9.]+)", out).group(1))
    lat = re.search(r"latency average = ([0-9.]+) ms", out)
    return tps, float(lat.group(1)) if lat else None


def run_wrk(env, token, port, tmp, seconds):
    script = os.path.join(tmp, f"post-{port}.lua")
    with open(script, "w") as f:
        f.write(WRK_LUA % (token, port))
    p = subprocess.Popen(["wrk", "-t", str(max(1, THREADS // 2)), "-c", str(max(1, CONNS // 2)),
                          "-d", f"{seconds}s", "--latency", "-s", script,
                          f"http://127.0.0.1:{port}/payments"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return p


def main():
    env = pe.Env(tag="paybench", log_level="error")
    tmp = tempfile.mkdtemp(prefix="suite-paybench-")
    try:
        env.register(f"bench-{env.tag}@example.com")
        token = env.login(f"bench-{env.tag}@example.com")
        # warm up both instances (connections, auth cache)
        for i in range(2):
            for _ in range(20):
                env.call("POST", "/payments", {"amount": 1, "currency": "usd"}, token=token, inst=i)
        tps, pg_lat = run_pgbench(env, tmp)
        # wrk drives both instances at once (half the connections each), as the gateway would
        runs = [run_wrk(env, token, port, tmp, SECONDS) for port in env.pay_ports]
        results = []
        for p in runs:
            out, _ = p.communicate(timeout=SECONDS + 60)
            m = re.search(r"WRKJSON (\{.*\})", out)
            if not m:
                raise RuntimeError("wrk: " + out[-2000:])
            results.append(json.loads(m.group(1)))
        reqs = sum(r["requests"] for r in results)
        errors = sum(r["errors_status"] + r["errors_connect"] + r["errors_timeout"] for r in results)
        secs = max(r["seconds"] for r in results)
        rate = (reqs - errors) / secs
        created = int(env.sql("SELECT count(*) FROM payments WHERE user_id <> 'bench-user'"))
        p99 = max(r["p99_ms"] for r in results)
        p50 = max(r["p50_ms"] for r in results)
        print(f"pgbench: {tps:.0f} INSERTs/s ({PGB_CLIENTS} clients, {SECONDS}s"
              + (f", avg latency {pg_lat:.2f} ms)" if pg_lat else ")"))
        print(f"svc-payments (2 instances, pool {POOL} each, wrk {CONNS} connections): "
              f"{rate:.0f} payments/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
              f"{errors} errors, {created} payments stored by the API")
        print(f"ratio: {100 * rate / tps:.1f} % of pgbench (aim >= 50 %)")
        print("BENCHJSON " + json.dumps({"pgbench_tps": tps, "payments_per_s": rate,
                                         "ratio": rate / tps, "p50_ms": p50, "p99_ms": p99,
                                         "errors": errors}))
        return 0 if errors == 0 else 1
    finally:
        env.close()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    sys.exit(main())
