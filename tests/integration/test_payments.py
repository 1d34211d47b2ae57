"""svc-payments against real PostgreSQL and Redis, two svc-auth instances and two
svc-payments instances (requests alternate between them): the Payments table of API.md,
visibility, idempotency (replay, mismatch, concurrency, expiry, a key left in flight by a
crashed instance), every allowed and forbidden transition (403 vs 409), concurrent double
transitions, signed webhooks, validation, /livez /health /metrics and SIGTERM."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(__file__))
import payments_env as pe  # noqa: E402
import procs  # noqa: E402
from check import eq, main, test, true  # noqa: E402
from pg_tls import PASSWORD as TLS_DB_PASSWORD, TlsCluster  # noqa: E402
from suite_env import TIMESTAMP as TS  # noqa: E402

REF = re.compile(r"^pay_[0-9A-Za-z]{24}$")


def create(env, who, body=None, key=None, inst=None):
    headers = {"Idempotency-Key": key} if key else None
    return env.call("POST", "/payments", body or {"amount": 1000, "currency": "eur"},
                    token=env.users[who], headers=headers, inst=inst)


def created(env, who, **body):
    r = create(env, who, body or None)
    eq(r.status, 201, f"create: {r.body[:200]!r}")
    return r.json()["reference"]


def patch(env, who, ref, status, reason=None, inst=None):
    body = {"status": status}
    if reason is not None:
        body["reason"] = reason
    return env.call("PATCH", f"/payments/{ref}/status", body, token=env.users[who], inst=inst)


def get(env, who, ref, inst=None):
    return env.call("GET", f"/payments/{ref}", token=env.users[who], inst=inst)


def count_payments(env):
    return int(env.sql("SELECT count(*) FROM payments"))


def webhook(env, event_id, typ, ref, t=None, secrets=None, inst=None, raw=None, sig=None):
    body = raw if raw is not None else pe.webhook_body(event_id, typ, ref)
    headers = {"Content-Type": "application/json"}
    headers["X-Signature"] = sig if sig is not None else pe.sign(body, t, secrets)
    return env.call("POST", "/payments/webhook", body, headers=headers, inst=inst)


# ---- the Payments table ----

@test
def create_answers_201_with_the_payment(env):
    body = {"amount": 1999, "currency": "eur", "description": "Order #42 — café",
            "metadata": {"order_id": "42", "channel": "web"}}
    r = create(env, "alice", body)
    eq(r.status, 201, r.body)
    p = r.json()
    true(REF.match(p["reference"]), p["reference"])
    eq(p["status"], "pending")
    eq(p["amount"], 1999)
    eq(p["currency"], "EUR", "currency is uppercased")
    eq(p["description"], body["description"])
    eq(p["metadata"], body["metadata"])
    true(TS.match(p["created_at"]) and TS.match(p["updated_at"]), p["created_at"])
    eq(r.header("Idempotent-Replayed"), None)
    # read back from the other instance, with its (empty) events
    for inst in (0, 1):
        g = get(env, "alice", p["reference"], inst=inst)
        eq(g.status, 200)
        got = g.json()
        eq(got["events"], [])
        for k in ("reference", "status", "amount", "currency", "description", "metadata"):
            eq(got[k], p[k], k)
    # description and metadata are optional
    r = create(env, "alice", {"amount": 1, "currency": "JPY"})
    eq(r.status, 201)
    eq(r.json()["description"], None)
    eq(r.json()["metadata"], {})


@test
def every_request_but_the_webhook_needs_a_credential(env):
    ref = created(env, "alice")
    for method, path, body in (("POST", "/payments", {"amount": 1, "currency": "usd"}),
                               ("GET", "/payments", None), ("GET", f"/payments/{ref}", None),
                               ("PATCH", f"/payments/{ref}/status", {"status": "cancelled"})):
        r = env.call(method, path, body)
        eq(r.status, 401, f"{method} {path} without credential")
        eq(r.json()["error"]["code"], "unauthorized", f"{method} {path} without credential")
        r = env.call(method, path, body, headers={"Authorization": "Bearer not.a.token"})
        eq(r.status, 401, f"{method} {path} with a forged token")
        eq(r.json()["error"]["code"], "unauthorized")
        eq(r.header("WWW-Authenticate"), 'Bearer realm="suite"', "the challenge")
    eq(get(env, "alice", ref).json()["status"], "pending", "nothing changed")


@test
def an_api_key_is_a_credential_too(env):
    r = env.auth("POST", "/auth/api-keys", {"name": "ci"}, token=env.users["alice"])
    eq(r.status, 201, r.body)
    key = r.json()["key"]
    r = env.call("POST", "/payments", {"amount": 5, "currency": "usd"},
                 headers={"Authorization": f"ApiKey {key}"})
    eq(r.status, 201, r.body)
    eq(get(env, "alice", r.json()["reference"]).status, 200, "the key acts as its user")


@test
def invalid_requests_get_400_and_store_nothing(env):
    before = count_payments(env)
    bad = [
        b"{not json",
        b'{"amount": 100, "currency": "usd"',
        b'[1, 2]',
        {"amount": -100, "currency": "usd"},
        {"amount": 0, "currency": "usd"},
        b'{"amount": 10.0, "currency": "usd"}',
        b'{"amount": 10.5, "currency": "usd"}',
        b'{"amount": 1e3, "currency": "usd"}',
        {"amount": "100", "currency": "usd"},
        {"amount": True, "currency": "usd"},
        {"amount": None, "currency": "usd"},
        {"amount": 100000000, "currency": "usd"},
        b'{"amount": 99999999999999999999999999, "currency": "usd"}',
        {"currency": "usd"},
        {"amount": 100},
        {"amount": 100, "currency": "usx"},
        {"amount": 100, "currency": "us"},
        {"amount": 100, "currency": "XAU"},
        {"amount": 100, "currency": 840},
        {"amount": 100, "currency": "usd", "description": "x" * 1001},
        {"amount": 100, "currency": "usd", "description": 7},
        {"amount": 100, "currency": "usd", "metadata": {"nested": {"a": "b"}}},
        {"amount": 100, "currency": "usd", "metadata": {"n": 1}},
        {"amount": 100, "currency": "usd", "metadata": ["a"]},
        {"amount": 100, "currency": "usd", "metadata": {"k" * 41: "v"}},
        {"amount": 100, "currency": "usd", "metadata": {"k": "v" * 501}},
        {"amount": 100, "currency": "usd",
         "metadata": {f"key{i:02d}": "v" * 490 for i in range(20)}},
        {"amount": 100, "currency": "usd", "surprise": True},
    ]
    for body in bad:
        r = env.call("POST", "/payments", body, token=env.users["alice"])
        eq(r.status, 400, f"{body!r:.80}: {r.body[:200]!r}")
        err = r.json()["error"]
        true(err["code"] in ("invalid_json", "invalid_request"), err)
        true(err["message"], "a message")
    eq(count_payments(env), before, "nothing stored")
    # the limits themselves are accepted
    ok = {"amount": 99999999, "currency": "usd", "description": "é" * 1000,
          "metadata": {f"k{i:02d}": "v" * 400 for i in range(20)}}
    eq(env.call("POST", "/payments", ok, token=env.users["alice"]).status, 201, "at the limits")


@test
def the_database_refuses_what_the_api_refuses(env):
    # a code path skipping validation could not store a bad payment either
    for values in ("'pay_x', 'u', 'o', 0, 'USD', '{}'",
                   "'pay_aaaaaaaaaaaaaaaaaaaaaaaa', 'u', 'o', 100000000, 'USD', '{}'",
                   "'pay_aaaaaaaaaaaaaaaaaaaaaaaa', 'u', 'o', 5, 'ABC', '{}'",
                   "'pay_aaaaaaaaaaaaaaaaaaaaaaaa', 'u', 'o', 5, 'USD', '{\"a\": {\"b\": 1}}'",
                   "'pay_aaaaaaaaaaaaaaaaaaaaaaaa', 'u', 'o', 5, 'USD', '[]'"):
        try:
            env.sql("INSERT INTO payments (reference, user_id, org_id, amount, currency, "
                    f"metadata) VALUES ({values})")
        except RuntimeError:
            continue
        raise AssertionError(f"the database stored ({values})")
    ref = created(env, "alice")
    try:
        env.sql(f"UPDATE payments SET status = 'refunded' WHERE reference = '{ref}'")
    except RuntimeError:
        pass
    else:
        raise AssertionError("the database stored pending -> refunded")


# ---- visibility ----

@test
def users_see_only_their_own_payments(env):
    a = created(env, "alice")
    for inst in (0, 1):
        eq(get(env, "bob", a, inst=inst).status, 404, "bob reads alice's payment")
        eq(get(env, "carol", a, inst=inst).status, 404, "carol (same org, plain user)")
    r = env.call("GET", "/payments?limit=100", token=env.users["bob"])
    eq(r.status, 200)
    true(a not in [p["reference"] for p in r.json()["data"]], "bob lists alice's payment")
    r = patch(env, "bob", a, "cancelled")
    eq(r.status, 404, "bob cancels alice's payment")
    eq(get(env, "alice", a).json()["status"], "pending")
    eq(get(env, "alice", "pay_000000000000000000000000").status, 404, "unknown reference")
    eq(env.call("GET", f"/payments?starting_after={a}", token=env.users["bob"]).status, 400,
       "a cursor bob cannot see")


@test
def org_admin_sees_the_organizations_payments(env):
    a, c, b = created(env, "alice"), created(env, "carol"), created(env, "bob")
    for ref in (a, c):
        eq(get(env, "orgadmin", ref).status, 200, "org_admin reads a member's payment")
    eq(get(env, "orgadmin", b).status, 404, "another organization's")
    listed = [p["reference"] for p in
              env.call("GET", "/payments?limit=100", token=env.users["orgadmin"]).json()["data"]]
    true(a in listed and c in listed and b not in listed, "org_admin's list")
    for ref in (a, b, c):
        eq(get(env, "admin", ref).status, 200, "admin reads every payment")


@test
def list_is_newest_first_with_cursor_pagination(env):
    reg = env.register(f"dave-{env.tag}@example.com")
    eq(reg["roles"], ["user", "org_admin"], "a personal organization")
    env.users["dave"] = env.login(f"dave-{env.tag}@example.com")
    eq(env.call("GET", "/payments", token=env.users["dave"]).json(),
       {"data": [], "has_more": False})
    refs = [created(env, "dave", amount=i + 1, currency="usd") for i in range(5)]
    newest_first = list(reversed(refs))
    r = env.call("GET", "/payments", token=env.users["dave"])
    eq([p["reference"] for p in r.json()["data"]], newest_first)
    eq(r.json()["has_more"], False)
    seen, cursor = [], None
    while True:
        path = "/payments?limit=2" + (f"&starting_after={cursor}" if cursor else "")
        page = env.call("GET", path, token=env.users["dave"]).json()
        true(len(page["data"]) <= 2)
        seen += [p["reference"] for p in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["data"][-1]["reference"]
    eq(seen, newest_first, "pages in order, no gaps or repeats")
    for q in ("limit=0", "limit=101", "limit=abc", "limit=", "limit=2x",
              "starting_after=pay_000000000000000000000000"):
        eq(env.call("GET", "/payments?" + q, token=env.users["dave"]).status, 400, q)
    r = env.call("GET", "/payments?limit=100", token=env.users["dave"])
    eq(len(r.json()["data"]), 5)


@test
def references_that_are_not_utf8_are_client_errors(env):
    for path in ("/payments/%E9", "/payments/ok%C3", "/payments/%ED%A0%80"):
        r = env.call("GET", path, token=env.users["alice"])
        eq(r.status, 404, f"{path}: {r.body}")
        r = env.call("PATCH", path + "/status", {"status": "cancelled"}, token=env.users["admin"])
        eq(r.status, 404, f"PATCH {path}: {r.body}")
    r = env.call("GET", "/payments?starting_after=%E9", token=env.users["alice"])
    eq(r.status, 400, r.body)
    eq(r.json()["error"]["code"], "invalid_request")


# ---- idempotency ----

@test
def idempotent_replay_and_mismatch(env):
    key = str(uuid.uuid4())
    body = {"amount": 2500, "currency": "usd", "description": "replay me"}
    first = create(env, "alice", body, key=key, inst=0)
    eq(first.status, 201)
    eq(first.header("Idempotent-Replayed"), None)
    before = count_payments(env)
    # same key, same body (other key order, other instance): the first answer again
    again = env.call("POST", "/payments",
                     b'{"description":"replay me",  "currency":"usd","amount":2500}',
                     token=env.users["alice"], headers={"Idempotency-Key": key}, inst=1)
    eq(again.status, 201)
    eq(again.header("Idempotent-Replayed"), "true")
    eq(again.json(), first.json())
    eq(count_payments(env), before, "no second payment")
    # same key, another body
    other = create(env, "alice", {"amount": 2501, "currency": "usd"}, key=key)
    eq(other.status, 422)
    eq(other.json()["error"]["code"], "idempotency_key_reused")
    # keys are per user: bob's same key is his own
    mine = create(env, "bob", body, key=key)
    eq(mine.status, 201)
    true(mine.header("Idempotent-Replayed") is None)
    true(mine.json()["reference"] != first.json()["reference"])
    # a request refused by validation is not stored under its key
    k2 = str(uuid.uuid4())
    eq(create(env, "alice", {"amount": -1, "currency": "usd"}, key=k2).status, 400)
    fixed = create(env, "alice", {"amount": 1, "currency": "usd"}, key=k2)
    eq(fixed.status, 201, "the key is free after a validation failure")
    eq(fixed.header("Idempotent-Replayed"), None)
    # a malformed key
    eq(create(env, "alice", body, key="x" * 256).status, 400)


@test
def twenty_parallel_requests_with_one_key_create_one_payment(env):
    for round_ in range(3):
        key = str(uuid.uuid4())
        desc = f"parallel {key}"
        body = {"amount": 700, "currency": "gbp", "description": desc}
        results = [None] * 20
        start = threading.Barrier(20)

        def worker(i):
            start.wait()
            results[i] = create(env, "carol", body, key=key, inst=i % 2)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        statuses = [r.status for r in results]
        true(set(statuses) <= {201, 409}, f"round {round_}: {statuses}")
        true(statuses.count(201) >= 1, f"round {round_}: {statuses}")
        refs = {r.json()["reference"] for r in results if r.status == 201}
        eq(len(refs), 1, "every 201 names the same payment")
        for r in results:
            if r.status == 409:
                eq(r.json()["error"]["code"], "idempotency_key_in_use")
        eq(env.sql(f"SELECT count(*) FROM payments WHERE description = '{desc}'"), "1")
        # once done, the key replays
        r = create(env, "carol", body, key=key)
        eq((r.status, r.header("Idempotent-Replayed")), (201, "true"))
        eq(r.json()["reference"], refs.pop())


@test
def idempotency_keys_expire(env):
    key = str(uuid.uuid4())
    first = create(env, "alice", {"amount": 10, "currency": "usd"}, key=key)
    eq(first.status, 201)
    eq(create(env, "alice", {"amount": 11, "currency": "usd"}, key=key).status, 422)
    # 24 hours later (moved back in time in the database)
    env.sql("UPDATE idempotency_keys SET created_at = now() - interval '25 hours', "
            f"expires_at = now() - interval '1 hour' WHERE key = '{key}'")
    r = create(env, "alice", {"amount": 11, "currency": "usd"}, key=key)
    eq(r.status, 201, "an expired key is free again")
    eq(r.header("Idempotent-Replayed"), None)
    true(r.json()["reference"] != first.json()["reference"])
    r = create(env, "alice", {"amount": 11, "currency": "usd"}, key=key)
    eq(r.header("Idempotent-Replayed"), "true", "and is then the new request's key")


@test
def a_key_left_in_flight_by_a_crashed_instance_expires(env):
    key = str(uuid.uuid4())
    desc = f"crash {key}"
    body = {"amount": 4242, "currency": "chf", "description": desc}
    # hold inserts into payments (SHARE mode: the claim on idempotency_keys still goes through)
    # so the request stays in flight on instance 0
    locker = subprocess.Popen(
        ["psql", "-h", os.environ["PGHOST"], "-p", os.environ["PGPORT"], "-U",
         os.environ["PGUSER"], "-d", env.pay_db, "-q"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    try:
        locker.stdin.write("BEGIN; LOCK TABLE payments IN SHARE MODE;\n")
        locker.stdin.flush()
        deadline = time.time() + 10
        while env.sql("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                      "WHERE c.relname = 'payments' AND l.mode = 'ShareLock' "
                      "AND l.granted") != "1":
            true(time.time() < deadline, "lock taken")
            time.sleep(0.05)
        t = threading.Thread(target=lambda: _swallow(create, env, "alice", body, key, 0))
        t.start()
        deadline = time.time() + 10
        while env.sql(f"SELECT count(*) FROM idempotency_keys WHERE key = '{key}'") != "1":
            true(time.time() < deadline, "the key is claimed")
            time.sleep(0.05)
        env.payments[0].stop(signal.SIGKILL)   # the instance dies mid-request
        t.join(15)
    finally:
        locker.stdin.write("ROLLBACK;\n\\q\n")
        locker.stdin.close()
        locker.wait(10)
    try:
        r = create(env, "alice", body, key=key, inst=1)
        eq(r.status, 409, "still in flight right after the crash")
        eq(r.json()["error"]["code"], "idempotency_key_in_use")
        time.sleep(pe.LOCK_TIMEOUT_S + 0.5)
        r = create(env, "alice", body, key=key, inst=1)
        eq(r.status, 201, f"free after the lock timeout: {r.body[:200]!r}")
        eq(create(env, "alice", body, key=key, inst=1).header("Idempotent-Replayed"), "true")
        eq(env.sql(f"SELECT count(*) FROM payments WHERE description = '{desc}'"), "1")
    finally:
        env.start_payments(0)


def _swallow(fn, *args):
    """fn(*args), or None when the connection fails (the instance is stopped under it)."""
    try:
        return fn(*args)
    except OSError:
        return None


# ---- state machine ----

def path_to(env, status):
    """A payment of alice's brought to status by the admin."""
    ref = created(env, "alice")
    route = {"pending": [], "processing": ["processing"], "succeeded": ["processing", "succeeded"],
             "refunded": ["processing", "succeeded", "refunded"], "failed": ["failed"],
             "cancelled": ["cancelled"]}[status]
    for s in route:
        eq(patch(env, "admin", ref, s).status, 200, f"to {s}")
    return ref


ALL = ["pending", "processing", "succeeded", "failed", "cancelled", "refunded"]
ALLOWED = {("pending", "processing"), ("pending", "cancelled"), ("pending", "failed"),
           ("processing", "succeeded"), ("processing", "failed"), ("succeeded", "refunded")}


@test
def admin_makes_every_allowed_move_and_no_other(env):
    for frm in ALL:
        for to in ALL:
            ref = path_to(env, frm)
            before = get(env, "admin", ref).json()
            r = patch(env, "admin", ref, to, reason=f"{frm}->{to}")
            if (frm, to) in ALLOWED:
                eq(r.status, 200, f"{frm} -> {to}: {r.body[:200]!r}")
                p = r.json()
                eq(p["status"], to)
                last = p["events"][-1]
                eq((last["status"], last["reason"], last["source"]), (to, f"{frm}->{to}", "api"))
                true(TS.match(last["at"]), last["at"])
                eq(len(p["events"]), len(before["events"]) + 1)
            else:
                eq(r.status, 409, f"{frm} -> {to}")
                eq(r.json()["error"]["code"], "invalid_transition")
                after = get(env, "admin", ref).json()
                eq((after["status"], after["events"]), (frm, before["events"]), "unchanged")


@test
def owner_may_only_cancel(env):
    ref = created(env, "alice")
    for to in ("processing", "failed", "succeeded", "refunded", "pending"):
        r = patch(env, "alice", ref, to)
        eq(r.status, 403, f"owner -> {to}")
        eq(r.json()["error"]["code"], "forbidden_transition")
    r = patch(env, "alice", ref, "cancelled", reason="changed my mind")
    eq(r.status, 200)
    eq(r.json()["status"], "cancelled")
    eq([(e["status"], e["reason"], e["source"]) for e in r.json()["events"]],
       [("cancelled", "changed my mind", "api")])
    eq(patch(env, "alice", ref, "cancelled").status, 409, "already cancelled")
    ref = path_to(env, "processing")
    eq(patch(env, "alice", ref, "cancelled").status, 409, "a processing payment")
    eq(patch(env, "alice", ref, "succeeded").status, 403, "owner -> succeeded")
    eq(patch(env, "bob", ref, "succeeded").status, 404, "a stranger: 404 before 403")


@test
def org_admin_may_not_move_a_members_payment(env):
    # the organization's admin sees a member's payment but is not its owner: no move at all,
    # not even a cancellation, and not even one the machine would refuse
    ref = created(env, "carol")
    for to in ("cancelled", "processing", "failed", "succeeded", "refunded", "pending"):
        r = patch(env, "orgadmin", ref, to)
        eq(r.status, 403, f"org_admin -> {to} on a member's payment: {r.body[:200]!r}")
        eq(r.json()["error"]["code"], "forbidden_transition")
    p = get(env, "carol", ref).json()
    eq((p["status"], p["events"]), ("pending", []), "the member's payment is unchanged")
    eq(patch(env, "orgadmin", created(env, "bob"), "cancelled").status, 404,
       "another organization's payment: 404")
    # the owner still may cancel; the org_admin may cancel their own payment, only cancel
    eq(patch(env, "carol", ref, "cancelled").status, 200, "the owner cancels")
    own = created(env, "orgadmin")
    eq(patch(env, "orgadmin", own, "processing").status, 403, "org_admin -> processing (own)")
    r = patch(env, "orgadmin", own, "cancelled")
    eq(r.status, 200, "org_admin cancels their own payment")
    eq(r.json()["status"], "cancelled")


@test
def bad_status_requests_get_400(env):
    ref = created(env, "alice")
    for body in ({"status": "done"}, {"status": "CANCELLED"}, {"status": 3}, {},
                 {"status": "cancelled", "reason": 5},
                 {"status": "cancelled", "reason": "r" * 501},
                 {"status": "cancelled", "extra": 1}, b"{nope"):
        r = env.call("PATCH", f"/payments/{ref}/status", body, token=env.users["admin"])
        eq(r.status, 400, f"{body!r:.60}")
    eq(get(env, "alice", ref).json()["status"], "pending")


def race(*fns):
    results = [None] * len(fns)
    start = threading.Barrier(len(fns))

    def run(i):
        start.wait()
        results[i] = fns[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


@test
def concurrent_double_transitions_apply_once(env):
    for _ in range(5):
        ref = path_to(env, "processing")
        a, b = race(lambda: patch(env, "admin", ref, "succeeded", inst=0),
                    lambda: patch(env, "admin", ref, "failed", inst=1))
        eq(sorted([a.status, b.status]), [200, 409], "two PATCHes")
        p = get(env, "admin", ref).json()
        eq(len(p["events"]), 2, "processing + one final event")
        winner = a if a.status == 200 else b
        eq(p["status"], winner.json()["status"])
    for _ in range(5):
        ref = path_to(env, "processing")
        ev = "evt_" + uuid.uuid4().hex
        a, b = race(lambda: patch(env, "admin", ref, "failed", inst=0),
                    lambda: webhook(env, ev, "payment.succeeded", ref, inst=1))
        eq(b.status, 200)
        applied = b.json()["applied"]
        eq(a.status, 409 if applied else 200, "PATCH vs webhook")
        p = get(env, "admin", ref).json()
        eq(p["status"], "succeeded" if applied else "failed")
        eq(len(p["events"]), 2)
    for _ in range(3):  # the same cancel twice at once
        ref = created(env, "alice")
        a, b = race(lambda: patch(env, "alice", ref, "cancelled", inst=0),
                    lambda: patch(env, "alice", ref, "cancelled", inst=1))
        eq(sorted([a.status, b.status]), [200, 409])
        eq(len(get(env, "alice", ref).json()["events"]), 1)


# ---- webhooks ----

@test
def webhook_signed_over_raw_bytes_applies_transitions(env):
    ref = created(env, "alice")
    r = webhook(env, "evt_" + uuid.uuid4().hex, "payment.processing", ref)
    eq(r.status, 200, r.body)
    eq(r.json(), {"received": True, "applied": True})
    r = webhook(env, "evt_" + uuid.uuid4().hex, "payment.succeeded", ref,
                secrets=[pe.WEBHOOK_SECRETS[1]])
    eq(r.json(), {"received": True, "applied": True}, "signed with the previous secret")
    r = webhook(env, "evt_" + uuid.uuid4().hex, "payment.refunded", ref,
                secrets=["whsec_unknown", pe.WEBHOOK_SECRETS[0]])
    eq(r.json(), {"received": True, "applied": True}, "two v1, the second matches")
    p = get(env, "alice", ref).json()
    eq(p["status"], "refunded")
    eq([(e["status"], e["source"]) for e in p["events"]],
       [("processing", "webhook"), ("succeeded", "webhook"), ("refunded", "webhook")])


@test
def webhook_bad_or_stale_signatures_are_refused(env):
    ref = created(env, "alice")
    body = pe.webhook_body("evt_" + uuid.uuid4().hex, "payment.processing", ref)
    now = int(time.time())
    cases = {
        "no header": None,
        "unknown secret": pe.sign(body, secrets=["whsec_unknown"]),
        "stale": pe.sign(body, t=now - 301),
        "future": pe.sign(body, t=now + 301),
        "no v1": f"t={now}",
        "garbage": "v1=abc",
        "another t": pe.sign(body, t=now).replace(f"t={now}", f"t={now - 1}"),
    }
    for what, sig in cases.items():
        headers = {"Content-Type": "application/json"}
        if sig is not None:
            headers["X-Signature"] = sig
        r = env.call("POST", "/payments/webhook", body, headers=headers)
        eq(r.status, 400, what)
        eq(r.json()["error"]["code"], "invalid_signature", what)
    # the bytes signed are the bytes verified: the same JSON re-serialized does not match
    sig = pe.sign(body)
    reserialized = json.dumps(json.loads(body)).encode()
    r = webhook(env, None, None, None, raw=reserialized, sig=sig)
    eq(r.status, 400, "re-serialized body")
    r = webhook(env, None, None, None, raw=body + b" ", sig=sig)
    eq(r.status, 400, "one more byte")
    eq(get(env, "alice", ref).json()["status"], "pending", "nothing applied")
    # a token instead of a signature does not help
    r = env.call("POST", "/payments/webhook", body, token=env.users["admin"])
    eq(r.status, 400)
    # still valid just inside the tolerance
    eq(webhook(env, None, None, None, raw=body, sig=pe.sign(body, t=now - 290)).status, 200)


@test
def webhook_replays_and_duplicates_change_nothing(env):
    ref = created(env, "alice")
    ev = "evt_" + uuid.uuid4().hex
    eq(webhook(env, ev, "payment.processing", ref).json()["applied"], True)
    # the same event again (freshly signed, either instance): acknowledged, no effect
    for inst in (0, 1):
        r = webhook(env, ev, "payment.processing", ref, inst=inst)
        eq(r.status, 200)
        eq(r.json()["applied"], False)
    # an already-seen id carrying another type changes nothing either
    r = webhook(env, ev, "payment.failed", ref)
    eq((r.status, r.json()["applied"]), (200, False))
    p = get(env, "alice", ref).json()
    eq((p["status"], len(p["events"])), ("processing", 1))
    # the same new event delivered twice at once: applied once
    ev2 = "evt_" + uuid.uuid4().hex
    a, b = race(lambda: webhook(env, ev2, "payment.succeeded", ref, inst=0),
                lambda: webhook(env, ev2, "payment.succeeded", ref, inst=1))
    eq((a.status, b.status), (200, 200))
    eq(sorted([a.json()["applied"], b.json()["applied"]]), [False, True])
    eq(len(get(env, "alice", ref).json()["events"]), 2)


@test
def webhook_unknown_reference_forbidden_transition_and_bad_events(env):
    r = webhook(env, "evt_" + uuid.uuid4().hex, "payment.succeeded", "pay_000000000000000000000000")
    eq(r.status, 404)
    ref = created(env, "alice")
    r = webhook(env, "evt_" + uuid.uuid4().hex, "payment.refunded", ref)
    eq(r.status, 200)
    eq(r.json(), {"received": True, "applied": False}, "pending -> refunded")
    eq(get(env, "alice", ref).json()["status"], "pending")
    for raw in (b"{not json", b'{"id":"e1","type":"payment.cancelled","data":{"reference":"x"}}',
                b'{"id":"e1","type":"payment.succeeded"}', b'{"type":"payment.succeeded",'
                b'"data":{"reference":"x"}}'):
        r = webhook(env, None, None, None, raw=raw, sig=pe.sign(raw))
        eq(r.status, 400, raw)


# ---- operations ----

@test
def livez_health_and_metrics(env):
    for inst in (0, 1):
        eq(env.call("GET", "/livez", inst=inst).status, 200)
        h = env.call("GET", "/health", inst=inst)
        eq(h.status, 200)
        eq(h.json()["dependencies"]["postgres"], "up")
        m = env.call("GET", "/metrics", inst=inst)
        eq(m.status, 200)
        true(b"payments_created_total" in m.body, "payments metric")


@test
def missing_settings_stop_the_start(env):
    port = env.pay_ports[0]  # taken: a process that went as far as listening exits 1, not 2
    for broken in ({"PAYMENTS_WEBHOOK_SECRETS": " , "}, {"AUTH_URL": ""},
                   {"PAYMENTS_IDEMPOTENCY_TTL": "soon"}):
        e = dict(os.environ)
        e.update(env.payments_env(port))
        e.update(broken)
        r = subprocess.run([procs.binary("svc-payments/svc-payments")], env=e, timeout=20,
                           capture_output=True)
        eq(r.returncode, 2, f"{broken}: {r.stdout[-300:]!r}")


@test
def database_url_alone_over_verified_tls(env):
    """An instance configured by DATABASE_URL only (no PG* variables), as on a managed
    PostgreSQL: sslmode=verify-full with the database's CA; it migrates and serves over TLS."""
    cluster = TlsCluster(procs.free_port())
    proc = None
    try:
        port = procs.free_port()
        e = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        e.update(env.payments_env(port))
        e.pop("PGDATABASE")
        e["DATABASE_URL"] = cluster.url("verify-full", cluster.ca)
        e["LOG_LEVEL"] = "info"
        proc = subprocess.Popen([procs.binary("svc-payments/svc-payments")], env=e,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        procs.wait_port(port, proc=proc)
        r = procs.request(port, "POST", "/payments", {"amount": 4200, "currency": "eur"},
                          {"Authorization": f"Bearer {env.users['alice']}"})
        eq(r.status, 201, f"create over TLS: {r.body[:300]!r}")
        ref = r.json()["reference"]
        eq(cluster.psql(f"SELECT amount FROM payments WHERE reference = '{ref}'", db="appdb"),
           "4200", "the row in the TLS server's database")
        eq(cluster.psql("SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a "
                        "USING (pid) WHERE a.usename = 'app'"), "t", "its connections use TLS")
    finally:
        out = b""
        if proc:
            proc.send_signal(signal.SIGTERM)
            out = proc.communicate(timeout=20)[0]
        cluster.remove()
    for secret in (TLS_DB_PASSWORD, urllib.parse.quote(TLS_DB_PASSWORD, safe="")):
        true(secret.encode() not in out, "the password in the service's log")


@test
def a_logged_out_token_is_refused_within_a_second(env):
    email = f"erin-{env.tag}@example.com"
    env.register(email)
    token = env.login(email)
    for inst in (0, 1):
        eq(env.call("GET", "/payments", token=token, inst=inst).status, 200)
    eq(env.auth("POST", "/auth/logout", token=token).status, 204)
    time.sleep(1.1)
    for inst in (0, 1):
        eq(env.call("GET", "/payments", token=token, inst=inst).status, 401, "after logout")


@test
def auth_down_answers_503_then_recovers(env):
    email = f"fred-{env.tag}@example.com"
    env.register(email)
    token = env.login(email)
    auth = [p for p in env.procs if p.port in env.auth_ports]
    for p in auth:
        p.stop()
    try:
        r = env.call("GET", "/payments", token=token)
        eq(r.status, 503, "no auth instance to ask")
        eq(r.header("Retry-After") is not None, True, "Retry-After")
    finally:
        for p in auth:
            env.procs.remove(p)
        env.start_auth(env.auth_ports)
    deadline = time.time() + 20
    while True:
        statuses = [env.call("GET", "/payments", token=token, inst=i).status for i in (0, 1)]
        if statuses == [200, 200]:
            break
        true(time.time() < deadline, f"recovered after auth came back: {statuses}")
        time.sleep(0.5)


@test
def sigterm_drains_and_exits_zero(env):
    slow = []
    t = threading.Thread(target=lambda: slow.append(_swallow(create, env, "alice", None, None, 1)))
    t.start()
    eq(env.payments[1].stop(signal.SIGTERM, timeout=15), 0, "exit status")
    t.join(10)
    if slow and slow[0] is not None:
        true(slow[0].status in (201, 503), "an in-flight request is answered")
    env.start_payments(1)
    eq(create(env, "alice", inst=1).status, 201, "restarted")


if __name__ == "__main__":
    main("payments", pe.Env.with_users, pe.Env.close)
