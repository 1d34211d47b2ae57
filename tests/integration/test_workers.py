"""test_workers: the workers' job runner (worker-ocr/runner.c) through tests/job_driver against
a real Redis, a real svc-auth and a fake svc-storage that records the reports: acknowledgement
only after storage took the result, retries with growing gaps, dead letters, take-over of a
killed worker's job (and no take-over of a live one's), Redis restarts, MINID trimming that
keeps pending entries, XAUTOCLAIM's deleted ids reported as lost, a graceful SIGTERM, and two
workers racing without doing a job twice."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(__file__))
import procs  # noqa: E402
from check import eq, main, test, true  # noqa: E402
from workers_env import STREAM, TOKEN_TTL_S, Env, RedisError, wait_for  # noqa: E402


def fresh(ctx):
    ctx.stop_drivers()
    ctx.reset_streams()


def job_in_hand(ctx, seconds, what="started", **env):
    """A fresh world and a job of seconds that a new worker (env: its settings) has started:
    returns (worker, doc)."""
    fresh(ctx)
    d = ctx.driver(JOB_DRIVER_PROCESSING=1, **env)
    doc, _ = ctx.enqueue(f"sleep:{seconds}")
    wait_for(lambda: ctx.storage.of(doc, "processing"), 10, what)
    return d, doc


def http_get(d, path):
    return procs.request(d.http_port, "GET", path)


@test
def job_done_is_acked_only_after_storage_took_the_report(ctx):
    fresh(ctx)
    doc, eid = ctx.enqueue("ok", doc="0a000000-0000-4000-8000-000000000001")
    ctx.storage.script[doc] = [503]  # the first report is refused
    d = ctx.driver()
    wait_for(lambda: ctx.storage.of(doc), 10, "the first report")
    eq(ctx.storage.of(doc)[0]["status"], 503)
    eq(ctx.pending(), 1, "refused by storage: still pending")
    done = wait_for(lambda: ctx.storage.done(doc), 10, "the report taken on a later delivery")
    eq(len(ctx.storage.of(doc, "done")), 2, "run again")
    eq(done[0]["body"]["delivery"], 1, "storage's failure did not count as a delivery")
    wait_for(lambda: ctx.pending() == 0, 5, "the entry acknowledged")
    eq(len(ctx.storage.done(doc)), 1, "done exactly once")
    eq(ctx.dead(), [])
    # /health and /metrics of the worker
    r = http_get(d, "/health")
    eq(r.status, 200, r.body)
    eq(r.json()["dependencies"], {"redis": "up", "storage": "up"})
    m = http_get(d, "/metrics").body.decode()
    true('worker_jobs_done_total{stream="jobs:test"} 1' in m, m[:2000])
    true('worker_jobs_retried_total{stream="jobs:test"} 1' in m, "the refused report counted")
    eq(ctx.storage.bad_tokens, 0, "every report carried a service token from auth")


@test
def storage_outage_never_makes_dead_letters(ctx):
    fresh(ctx)
    doc, _ = ctx.enqueue("ok")
    ctx.storage.script[doc] = [503, 503, 503, 503]
    ctx.driver(JOB_DRIVER_PROCESSING=1, WORKER_MAX_DELIVERIES=2)
    done = wait_for(lambda: ctx.storage.done(doc), 40, "done once storage is back")
    eq(ctx.storage.of(doc, "failed"), [], "never marked failed")
    eq(ctx.dead(), [])
    eq(done[0]["body"]["delivery"], 1)
    t = [r["t"] for r in ctx.storage.of(doc)]
    true(t[-1] - t[0] >= 1 + 2 + 4 - 1, f"waited longer each time storage failed: {t}")
    wait_for(lambda: ctx.pending() == 0, 5, "acknowledged")


@test
def service_token_cached_and_renewed_before_expiry(ctx):
    fresh(ctx)
    ctx.driver(WORKER_CONCURRENCY=2)
    with ctx.storage.lock:
        ctx.storage.tokens.clear()
        bad = ctx.storage.bad_tokens
    t_end = time.time() + 2.5 * TOKEN_TTL_S
    docs = []
    while time.time() < t_end:
        docs.append(ctx.enqueue("empty")[0])
        time.sleep(0.1)
    wait_for(lambda: all(ctx.storage.done(x) for x in docs), 20, "every job done")
    eq(ctx.storage.bad_tokens, bad, "no report with an expired or missing token")
    n = len(ctx.storage.tokens)
    true(2 <= n <= 7, f"{len(docs)} reports over {2.5 * TOKEN_TTL_S}s used {n} tokens: cached, "
         "then renewed before expiry")


@test
def document_gone_acks_and_drops(ctx):
    fresh(ctx)
    doc, _ = ctx.enqueue("ok")
    ctx.storage.gone.add(doc)
    ctx.driver()
    wait_for(lambda: ctx.storage.of(doc), 10, "the report")
    wait_for(lambda: ctx.pending() == 0, 5, "acknowledged after 404")
    time.sleep(1.5)
    eq(len(ctx.storage.of(doc)), 1, "not retried")
    eq(ctx.dead(), [], "not a dead letter")


@test
def transient_failures_back_off_then_dead_letter(ctx):
    fresh(ctx)
    doc, eid = ctx.enqueue("transient:99")
    ctx.driver(JOB_DRIVER_PROCESSING=1, WORKER_RETRY_BASE="500ms", WORKER_MAX_DELIVERIES=5,
               WORKER_CLAIM_IDLE="10s")
    failed = wait_for(lambda: ctx.storage.of(doc, "failed"), 30, "the failed report")
    runs = [r["t"] for r in ctx.storage.of(doc, "processing")]
    eq(len(runs), 5, "five deliveries")
    gaps = [b - a for a, b in zip(runs, runs[1:])]
    for i, g in enumerate(gaps):
        want = 0.5 * 2 ** i  # backoff after delivery i+1
        true(want * 0.7 <= g <= want + 1.5, f"gap {i + 1} {g:.2f}s, expected about {want}s: {gaps}")
    true(gaps[3] > gaps[0] * 2, f"gaps grow: {gaps}")
    body = failed[0]["body"]
    eq(body["dead"], True)
    true("transient failure 5" in body["error"], body["error"])
    wait_for(lambda: ctx.pending() == 0, 5, "acknowledged")
    dead = ctx.dead()
    eq(len(dead), 1)
    eq(dead[0]["id"], eid)
    eq(dead[0]["doc"], doc)
    eq(dead[0]["deliveries"], "5")
    eq(dead[0]["mode"], "transient:99", "the original fields are kept")
    true("transient failure 5" in dead[0]["reason"], dead[0]["reason"])


@test
def transient_failure_then_success(ctx):
    fresh(ctx)
    doc, _ = ctx.enqueue("transient:2")
    ctx.driver()
    done = wait_for(lambda: ctx.storage.done(doc), 15, "done after two failures")
    eq(done[0]["body"]["delivery"], 3)
    wait_for(lambda: ctx.pending() == 0, 5, "acknowledged")
    eq(ctx.dead(), [])


@test
def permanent_failure_is_dead_at_once(ctx):
    fresh(ctx)
    doc, eid = ctx.enqueue("permanent")
    ctx.driver(JOB_DRIVER_PROCESSING=1)
    failed = wait_for(lambda: ctx.storage.of(doc, "failed"), 10, "the failed report")
    eq(failed[0]["body"], {"status": "failed", "error": "corrupt file", "dead": True})
    wait_for(lambda: ctx.pending() == 0, 5, "acknowledged")
    dead = ctx.dead()
    eq([(d["id"], d["reason"], d["deliveries"]) for d in dead], [(eid, "corrupt file", "1")])
    time.sleep(1.5)
    eq(len(ctx.storage.of(doc, "processing")), 1, "never retried")


@test
def killed_worker_job_is_taken_over_once(ctx):
    a, doc = job_in_hand(ctx, 2, "A started the job", WORKER_CLAIM_IDLE="1500ms")
    a.stop(signal.SIGKILL)
    t0 = time.time()
    b = ctx.driver(JOB_DRIVER_PROCESSING=1, WORKER_CLAIM_IDLE="1500ms")
    done = wait_for(lambda: ctx.storage.done(doc), 20, "B finished it")
    true(time.time() - t0 >= 1.0, "not before the claim idle time")
    eq(done[0]["body"]["pid"], b.pid)
    eq(done[0]["body"]["delivery"], 2)
    wait_for(lambda: ctx.pending() == 0, 5, "acknowledged")
    time.sleep(2)
    eq(len(ctx.storage.done(doc)), 1, "done exactly once more")


@test
def live_worker_long_job_is_not_taken_over(ctx):
    fresh(ctx)
    # The job runs three times longer than the claim idle time; the other worker must not
    # take it (its lease is renewed).
    for _ in range(2):
        ctx.driver(JOB_DRIVER_PROCESSING=1, WORKER_CLAIM_IDLE="1s")
    doc, _ = ctx.enqueue("sleep:3.5")
    wait_for(lambda: ctx.storage.done(doc), 15, "the job done")
    time.sleep(1.5)
    eq(len(ctx.storage.of(doc, "processing")), 1, "started once")
    eq(len(ctx.storage.done(doc)), 1, "done once")
    eq(ctx.storage.done(doc)[0]["body"]["delivery"], 1)


@test
def job_timeout_abandons_then_dead(ctx):
    fresh(ctx)
    doc, eid = ctx.enqueue("sleep:60")
    ctx.driver(JOB_DRIVER_PROCESSING=1, WORKER_JOB_TIMEOUT="1s", WORKER_MAX_DELIVERIES=2)
    failed = wait_for(lambda: ctx.storage.of(doc, "failed"), 20, "given up")
    true("without finishing" in failed[0]["body"]["error"], failed[0]["body"])
    eq(len(ctx.storage.of(doc, "processing")), 2, "two deliveries ran, each abandoned")
    eq(ctx.storage.done(doc), [])
    wait_for(lambda: ctx.pending() == 0, 5, "acknowledged")
    eq(ctx.dead()[0]["id"], eid)


@test
def redis_restart_workers_reconnect(ctx):
    fresh(ctx)
    d = ctx.driver()
    doc, _ = ctx.enqueue("ok")
    wait_for(lambda: ctx.storage.done(doc), 10, "a job before the restart")
    ctx.redis_server.stop()
    ctx.r.close()
    time.sleep(1.5)
    eq(http_get(d, "/health").status, 503, "redis down shows in /health")
    ctx.redis_server.start()  # no persistence: the stream and its group are gone
    doc2, _ = ctx.enqueue("ok")
    wait_for(lambda: ctx.storage.done(doc2), 20, "a job after the restart (group re-created)")
    wait_for(lambda: ctx.pending() == 0, 5, "acknowledged")
    eq(d.p.poll(), None, "the worker kept running")


@test
def redis_restart_with_data_kept_job_in_hand_completes(ctx):
    d, doc = job_in_hand(ctx, 4)
    eq(ctx.r("SAVE"), "OK")  # the fixture loads dump.rdb at start: stream and group kept
    ctx.redis_server.stop()
    ctx.r.close()
    time.sleep(0.5)
    ctx.redis_server.start()
    eq(ctx.pending(), 1, "the pending entry survived the restart")
    wait_for(lambda: ctx.storage.done(doc), 15, "the job finished")
    wait_for(lambda: ctx.pending() == 0, 10, "acknowledged on the new connection")
    doc2, _ = ctx.enqueue("ok")
    wait_for(lambda: ctx.storage.done(doc2), 15, "a new job read after the restart")
    time.sleep(1)
    eq(len(ctx.storage.done(doc)), 1, "done once")
    eq(d.p.poll(), None, "the worker kept running")


@test
def idle_consumers_without_pending_jobs_are_removed(ctx):
    fresh(ctx)
    ctx.r("XGROUP", "CREATE", STREAM, "workers", "0", "MKSTREAM")
    ctx.r("XGROUP", "CREATECONSUMER", STREAM, "workers", "gone-1234")
    # take-over after 300ms: consumers unseen for 3s without pending entries are removed
    ctx.driver(WORKER_CLAIM_IDLE="300ms", WORKER_RETRY_BASE="10ms")

    def names():
        return {dict(zip(c[::2], c[1::2]))["name"]
                for c in ctx.r("XINFO", "CONSUMERS", STREAM, "workers")}
    wait_for(lambda: "gone-1234" not in names(), 20, "the idle consumer removed")
    doc, _ = ctx.enqueue("ok")
    wait_for(lambda: ctx.storage.done(doc), 10, "the worker goes on")


@test
def trim_by_minid_keeps_pending_entries(ctx):
    fresh(ctx)
    ctx.r("XGROUP", "CREATE", STREAM, "workers", "0", "MKSTREAM")
    d = ctx.driver(WORKER_CLAIM_IDLE="60s", WORKER_CONCURRENCY=4)
    docs = [ctx.enqueue("empty")[0] for _ in range(50)]
    wait_for(lambda: all(ctx.storage.done(x) for x in docs), 20, "the first jobs done")
    # One entry read by a consumer that never acknowledges it.
    ctx.r("XGROUP", "CREATECONSUMER", STREAM, "workers", "ghost")
    d.stop(signal.SIGTERM)
    _, ghost_id = ctx.enqueue("ok")
    got = ctx.r("XREADGROUP", "GROUP", "workers", "ghost", "COUNT", "1", "STREAMS", STREAM, ">")
    eq(got[0][1][0][0], ghost_id)
    ctx.driver(WORKER_CLAIM_IDLE="60s", WORKER_CONCURRENCY=4)
    docs = [ctx.enqueue("empty")[0] for _ in range(100)]
    wait_for(lambda: all(ctx.storage.done(x) for x in docs), 30, "the later jobs done")
    wait_for(lambda: ctx.r("XLEN", STREAM) == 101, 15, "trimmed down to the pending entry")
    eq(ctx.r("XRANGE", STREAM, ghost_id, ghost_id)[0][0], ghost_id, "the pending entry is kept")
    eq(ctx.pending(), 1)
    ctx.r("XACK", STREAM, "workers", ghost_id)
    wait_for(lambda: ctx.r("XLEN", STREAM) == 0, 15, "everything delivered and acked: trimmed")
    true(not isinstance(ctx.r("XINFO", "GROUPS", STREAM), RedisError), "the group is kept")


@test
def autoclaim_deleted_entry_is_reported_lost(ctx):
    fresh(ctx)
    ctx.r("XGROUP", "CREATE", STREAM, "workers", "0", "MKSTREAM")
    _, eid = ctx.enqueue("ok")
    ctx.r("XREADGROUP", "GROUP", "workers", "ghost", "COUNT", "1", "STREAMS", STREAM, ">")
    eq(ctx.r("XDEL", STREAM, eid), 1)
    ctx.driver(WORKER_CLAIM_IDLE="1s")
    lost = wait_for(lambda: ctx.storage.lost, 10, "the lost report")
    eq(lost[0], {"stream": STREAM, "ids": [eid]})
    wait_for(lambda: ctx.pending() == 0, 5, "gone from the pending list")


@test
def sigterm_finishes_the_job_in_hand(ctx):
    d, doc = job_in_hand(ctx, 2)
    d.p.send_signal(signal.SIGTERM)
    eq(d.p.wait(15), 0, "exit status")
    eq(len(ctx.storage.done(doc)), 1, "finished and reported before exiting")
    eq(ctx.pending(), 0, "acknowledged before exiting")


@test
def sigterm_past_drain_timeout_hands_the_job_back(ctx):
    d, doc = job_in_hand(ctx, 4, WORKER_DRAIN_TIMEOUT="1s", WORKER_CLAIM_IDLE="1s")
    t0 = time.time()
    d.p.send_signal(signal.SIGTERM)
    eq(d.p.wait(15), 0, "exit status")
    true(time.time() - t0 < 4, "left at the drain bound, before the job ended")
    eq(ctx.storage.done(doc), [])
    eq(ctx.pending(), 1, "left pending")
    b = ctx.driver(JOB_DRIVER_PROCESSING=1, WORKER_CLAIM_IDLE="1s")
    done = wait_for(lambda: ctx.storage.done(doc), 20, "another worker finished it")
    eq(done[0]["body"]["pid"], b.pid)
    wait_for(lambda: ctx.pending() == 0, 5, "acknowledged")


@test
def two_workers_race_every_job_done_once(ctx):
    fresh(ctx)
    ctx.r("XGROUP", "CREATE", STREAM, "workers", "0", "MKSTREAM")
    a = ctx.driver(WORKER_CONCURRENCY=2)
    b = ctx.driver(WORKER_CONCURRENCY=2)
    # jobs that take a moment (300 x 20 ms: 3 s for one worker alone): instant ones could all
    # be drained by the first worker up before the second one asks (seen under load)
    docs = [ctx.enqueue("sleep:0.02")[0] for _ in range(300)]
    wait_for(lambda: all(ctx.storage.done(x) for x in docs), 60, "every job done")
    wait_for(lambda: ctx.pending() == 0, 10, "all acknowledged")
    time.sleep(1)
    counts = {x: len(ctx.storage.done(x)) for x in docs}
    eq(sorted(set(counts.values())), [1], "each job done exactly once")
    pids = {ctx.storage.done(x)[0]["body"]["pid"] for x in docs}
    eq(pids, {a.pid, b.pid}, "both workers took jobs")


@test
def worker_ocr_reads_the_stored_file(ctx):
    fresh(ctx)
    doc, _ = ctx.enqueue(stream="jobs:ocr")
    subprocess.run(["convert", "-size", "1400x400", "xc:white", "-fill", "black", "-font",
                    "DejaVu-Sans", "-pointsize", "48", "-annotate", "+80+150",
                    "harbour 4217 granite", "-colorspace", "Gray", "-depth", "8",
                    "PNG:" + ctx.file_path(doc)], check=True, capture_output=True)
    bad, bad_id = ctx.enqueue(stream="jobs:ocr")
    with open(ctx.file_path(bad), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + b"\0" * 200)  # a PNG signature, then garbage
    ctx.driver(binary="worker-ocr/worker-ocr", WORKER_CONCURRENCY=2)
    done = wait_for(lambda: ctx.storage.done(doc), 60, "the text reported")
    body = done[0]["body"]
    true(ctx.storage.of(doc, "processing")[0]["t"] <= done[0]["t"], "processing came first")
    eq(done[0]["kind"], "ocr")
    true("harbour 4217 granite" in body["text"], body["text"])
    eq(body["pages"], 1)
    true(50 <= body["confidence"] <= 100, body)
    failed = wait_for(lambda: ctx.storage.of(bad, "failed"), 30, "the corrupt file failed")
    eq(failed[0]["body"]["dead"], True)
    wait_for(lambda: ctx.pending("jobs:ocr") == 0, 5, "both acknowledged")
    dead = ctx.dead("jobs:ocr")
    eq([(d["id"], d["deliveries"]) for d in dead], [(bad_id, "1")])


@test
def worker_archive_uploads_the_stored_file(ctx):
    fresh(ctx)
    doc, _ = ctx.enqueue(stream="jobs:archive")
    data = os.urandom(300000)
    with open(ctx.file_path(doc), "wb") as f:
        f.write(data)
    gone, gone_id = ctx.enqueue(stream="jobs:archive")  # no file
    archive = os.path.join(ctx.tmp, "archive")
    ctx.driver(binary="worker-ocr/worker-archive", ARCHIVE_URL="file://" + archive)
    done = wait_for(lambda: ctx.storage.done(doc), 30, "the archive location reported")
    eq(done[0]["kind"], "archive")
    where = os.path.join(archive, "org-1", doc)
    eq(done[0]["body"], {"status": "done", "location": "file://" + where})
    with open(where, "rb") as f:
        true(f.read() == data, "the archived bytes are the stored bytes")
    eq(ctx.storage.of(doc, "processing"), [], "no processing report for archives")
    failed = wait_for(lambda: ctx.storage.of(gone, "failed"), 30, "the missing file failed")
    true("missing" in failed[0]["body"]["error"], failed[0]["body"])
    wait_for(lambda: ctx.pending("jobs:archive") == 0, 5, "both acknowledged")
    eq([d["id"] for d in ctx.dead("jobs:archive")], [gone_id])


@test
def no_sanitizer_reports(ctx):
    ctx.stop_drivers()
    eq(ctx.sanitizer_reports(), [], "the drivers' logs")


if __name__ == "__main__":
    main("workers", Env, Env.close)
