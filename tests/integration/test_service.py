"""The I/O of a service is real: PostgreSQL and Redis calls never block the loop, an outage
gets a prompt 503 with Retry-After and the same process recovers, SIGTERM drains. Runs
tests/demo_svc against PostgreSQL and Redis servers of its own."""
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import procs  # noqa: E402
from check import eq, main, test, true  # noqa: E402

PG_PORT = 21100 + (os.getpid() % 50)
REDIS_PORT = 22100 + (os.getpid() % 50)


def setup():
    ctx = {"pg": procs.PgCluster(PG_PORT), "redis": procs.RedisServer(REDIS_PORT)}
    ctx["port"] = procs.free_port()
    ctx["svc"] = procs.Proc([procs.binary("tests/demo_svc")], port=ctx["port"], env={
        "PORT": str(ctx["port"]), "HOST": "127.0.0.1",
        "PGHOST": "127.0.0.1", "PGPORT": str(PG_PORT), "PGDATABASE": "postgres",
        "PGUSER": "postgres", "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(REDIS_PORT),
        "DEMO_MIGRATIONS": os.path.join(procs.ROOT, "tests/fixtures/demo_migrations"),
        "PG_POOL_SIZE": "2", "LOG_LEVEL": "warn"})
    return ctx


def teardown(ctx):
    ctx["svc"].stop(signal.SIGKILL)
    ctx["pg"].remove()
    ctx["redis"].remove()


def get(ctx, path, timeout=10):
    return procs.request(ctx["port"], "GET", path, timeout=timeout)


def wait_ok(ctx, path, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if get(ctx, path).status == 200:
            return True
        time.sleep(0.2)
    return False


@test
def health_answers_while_a_query_sleeps(ctx):
    true(wait_ok(ctx, "/db/now", 10), "database reachable")
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", get(ctx, "/db/sleep?s=2")))
    t.start()
    time.sleep(0.3)  # the sleep is running on one connection
    worst = 0.0
    for _ in range(10):
        t0 = time.monotonic()
        r = get(ctx, "/health")
        worst = max(worst, time.monotonic() - t0)
        eq(r.status, 200, "/health during pg_sleep")
        eq(get(ctx, "/livez").status, 200, "/livez")
    t.join()
    eq(result["r"].status, 200, "the sleeping request completes")
    true(worst < 0.1, f"/health took {worst * 1000:.1f} ms during pg_sleep(2)")


@test
def bound_parameters_store_text_verbatim(ctx):
    text = "Robert'); DROP TABLE demo_echo;-- \u00e9\u20ac"
    r = procs.request(ctx["port"], "POST", "/db/echo", {"text": text})
    eq(r.status, 201)
    eq(r.json()["text"], text)
    eq(procs.request(ctx["port"], "POST", "/db/echo", {"text": 5}).status, 400, "wrong type")
    eq(procs.request(ctx["port"], "POST", "/db/echo", "{bad",
                     {"Content-Type": "application/json"}).status, 400, "bad json")


def answers_503_for_10s(ctx, path, what, code=None):
    """GETs path for 10 s: every answer a 503 with Retry-After (and the error code, when given);
    checks the slowest answered within 0.5 s."""
    end = time.time() + 10
    worst = 0.0
    while time.time() < end:
        t0 = time.monotonic()
        r = get(ctx, path, timeout=5)
        worst = max(worst, time.monotonic() - t0)
        eq(r.status, 503, what)
        true(r.header("Retry-After") is not None, "Retry-After on 503")
        if code:
            eq(r.json()["error"]["code"], code)
        time.sleep(0.2)
    true(worst < 0.5, f"503 took {worst * 1000:.0f} ms")


@test
def postgres_outage_gets_prompt_503_then_recovers(ctx):
    true(wait_ok(ctx, "/db/now", 10), "database reachable")
    pid = ctx["svc"].pid
    ctx["pg"].stop()
    try:
        answers_503_for_10s(ctx, "/db/now", "query while PostgreSQL is down", "unavailable")
        eq(get(ctx, "/health").status, 503, "/health reports the outage")
    finally:
        ctx["pg"].start()
    true(wait_ok(ctx, "/db/now", 15), "queries succeed again after the restart")
    eq(get(ctx, "/health").status, 200)
    eq(ctx["svc"].pid, pid, "same process")
    true(ctx["svc"].p.poll() is None, "still running")


@test
def redis_outage_gets_prompt_503_then_recovers(ctx):
    true(wait_ok(ctx, "/cache/incr", 10), "redis reachable")
    ctx["redis"].stop()
    try:
        answers_503_for_10s(ctx, "/cache/incr", "INCR while Redis is down")
    finally:
        ctx["redis"].start()
    true(wait_ok(ctx, "/cache/incr", 15), "INCR succeeds again after the restart")
    true(ctx["svc"].p.poll() is None, "still running")


@test
def metrics_and_unknown_routes(ctx):
    r = get(ctx, "/metrics")
    eq(r.status, 200)
    true(b"http_requests_total" in r.body, "request counter exported")
    r = get(ctx, "/nope")
    eq(r.status, 404)
    eq(r.json()["error"]["code"], "not_found")
    r = procs.request(ctx["port"], "DELETE", "/db/now")
    eq(r.status, 405)


def raw_status(ctx, nlines):
    """Status of GET /livez sent with nlines header lines in all."""
    import socket
    head = (b"GET /livez HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" +
            b"".join(b"X-H%d: v\r\n" % i for i in range(nlines - 2)) + b"\r\n")
    with socket.create_connection(("127.0.0.1", ctx["port"]), timeout=10) as s:
        s.sendall(head)
        return int(s.makefile("rb").readline().split()[1])


@test
def takes_the_header_lines_the_gateway_adds(ctx):
    # the gateway accepts 100 lines and adds its forwarding headers: 8 more are allowed here
    eq(raw_status(ctx, 100 + 8), 200)
    eq(raw_status(ctx, 100 + 9), 431)


@test
def sigterm_drains_in_flight_requests(ctx):
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", get(ctx, "/db/sleep?s=1")))
    t.start()
    time.sleep(0.3)
    ctx["svc"].p.send_signal(signal.SIGTERM)
    t.join()
    eq(result["r"].status, 200, "in-flight request finished during drain")
    eq(ctx["svc"].p.wait(10), 0, "exit status after SIGTERM")


if __name__ == "__main__":
    main("service", setup, teardown)
