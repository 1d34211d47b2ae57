"""jobs_bench: the job runner's own cost (bench/jobs.sh). With job_driver's trivial handlers,
against a real Redis, a real svc-auth and the fake svc-storage of workers_env:
  - queue overhead: one job at a time, the time from just before XADD to the handler's start
    (both on this machine's wall clock), median and p99;
  - throughput: N jobs enqueued at once (pipelined), jobs done per second from the first XADD
    to the last report, with 1 and 2 driver processes.
Each job's path includes the report to the fake storage (Python http.server, threaded) and
the XACK, so the throughput is that of the whole loop on this machine. Standard library only.
Environment: BENCH_JOBS (2000), BENCH_LATENCY_JOBS (300), BENCH_CONCURRENCY (per driver, 4)."""
import os
import statistics
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from workers_env import STREAM, Env, wait_for  # noqa: E402


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def overhead(env, n):
    env.reset_streams()
    env.driver(WORKER_CONCURRENCY=1, LOG_LEVEL="warn")
    env.enqueue("ok")  # the first job fetches the service token
    wait_for(lambda: len(env.storage.reports) == 1, 15, "warm-up job")
    lat = []
    for _ in range(n):
        doc = str(uuid.uuid4())
        t0 = time.time_ns() // 1000
        env.enqueue("ok", doc=doc)
        rep = wait_for(lambda: env.storage.done(doc), 10, "job done", step=0.001)
        lat.append((rep[0]["body"]["started_us"] - t0) / 1000.0)
        time.sleep(0.005)
    env.stop_drivers()
    return statistics.median(lat), pct(lat, 99)


def throughput(env, drivers, n, conc):
    env.reset_streams()
    env.r("XGROUP", "CREATE", STREAM, "workers", "0", "MKSTREAM")
    for _ in range(drivers):
        env.driver(WORKER_CONCURRENCY=conc, LOG_LEVEL="warn")
    env.enqueue("empty")
    wait_for(lambda: len(env.storage.reports) >= 1, 15, "warm-up job")
    base = len(env.storage.reports)
    cmds = [("XADD", STREAM, "*", "doc", str(uuid.uuid4()), "org", "o", "file", "f", "mode",
             "empty") for _ in range(n)]
    t0 = time.time()
    for i in range(0, n, 500):
        env.r.pipeline(cmds[i:i + 500])
    wait_for(lambda: len(env.storage.reports) >= base + n, 300, "all jobs done", step=0.01)
    with env.storage.lock:
        last = max(r["t"] for r in env.storage.reports)
    env.stop_drivers()
    return n / (last - t0)


def main():
    n = int(os.environ.get("BENCH_JOBS", "2000"))
    nl = int(os.environ.get("BENCH_LATENCY_JOBS", "300"))
    conc = int(os.environ.get("BENCH_CONCURRENCY", "4"))
    env = Env("wkbench")
    try:
        med, p99 = overhead(env, nl)
        print(f"queue overhead (XADD to handler start, {nl} jobs one at a time): "
              f"median {med:.2f} ms, p99 {p99:.2f} ms")
        for d in (1, 2):
            rate = throughput(env, d, n, conc)
            print(f"throughput, empty handler, {d} driver(s) x concurrency {conc}, {n} jobs: "
                  f"{rate:.0f} jobs/s")
    finally:
        env.close()


if __name__ == "__main__":
    main()
