"""test_archive_s3: the archive half end to end on S3: two real svc-storage instances and a
real worker-archive with ARCHIVE_URL=s3://bucket on moto checking SigV4 signatures
(tests/fixtures/s3), real svc-auth for the users and the workers' service token. An upload is
archived by the worker to s3://bucket/<org>/<id> (curl's own SigV4 sees it, byte for byte),
the local copy is evicted after STORAGE_LOCAL_RETENTION and fetched back from S3 on download,
and DELETE removes the S3 object too."""
import hashlib
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import procs  # noqa: E402
import storage_env as se  # noqa: E402
from check import eq, main, test, true  # noqa: E402

FIXTURE = os.path.join(procs.ROOT, "tests", "fixtures", "s3")
BUCKET = "suite-archive"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class Ctx:
    pass


def setup():
    c = Ctx()
    c.s3dir = None
    c.worker = None
    c.env = None
    try:
        c.port = procs.free_port(24000, 24999)
        c.env = se.Env(tag="arch3")
        c.s3dir = os.path.join(c.env.tmp, "s3")
        subprocess.run([FIXTURE, "start", c.s3dir, str(c.port), BUCKET], check=True, timeout=120)
        with open(os.path.join(c.s3dir, "access_key_id")) as f:
            c.access_key = f.read().strip()
        with open(os.path.join(c.s3dir, "secret_access_key")) as f:
            c.secret = f.read().strip()
        c.s3 = {"ARCHIVE_URL": f"s3://{BUCKET}", "S3_ENDPOINT": f"http://127.0.0.1:{c.port}",
                "S3_ACCESS_KEY_ID_FILE": os.path.join(c.s3dir, "access_key_id"),
                "S3_SECRET_ACCESS_KEY_FILE": os.path.join(c.s3dir, "secret_access_key")}
        # both storage instances on S3, local copies evicted 2 s after archival
        for i in (0, 1):
            c.env.storage[i].stop()
            c.env.start_storage(i, STORAGE_LOCAL_RETENTION="2s", **c.s3)
        c.users = c.env.make_users()
        wport = procs.free_port(24000, 24999, avoid=(c.port,))
        c.worker = procs.Proc([procs.binary("worker-ocr/worker-archive")], port=wport, env=dict(
            c.s3, PORT=str(wport), HOST="127.0.0.1", STORAGE_DIR=c.env.dir,
            STORAGE_URL=",".join(f"127.0.0.1:{p}" for p in c.env.ports),
            AUTH_URL=",".join(f"127.0.0.1:{p}" for p in c.env.auth_ports),
            SERVICE_SECRET=se.WORKERS_SECRET, WORKER_CONSUMER="s3-archiver", LOG_LEVEL="warn"))
        return c
    except Exception:
        teardown(c)
        raise


def teardown(c):
    if c.worker:
        c.worker.stop()
    if c.s3dir:
        subprocess.run([FIXTURE, "stop", c.s3dir], timeout=60)
    if c.env:
        c.env.close()


def s3_object(c, key):
    """(status, body bytes) of GET key, signed by curl itself."""
    p = subprocess.run(["curl", "-s", "-o", "-", "-w", "%{http_code}", "--aws-sigv4",
                        "aws:amz:us-east-1:s3", "-u", f"{c.access_key}:{c.secret}",
                        "-H", f"x-amz-content-sha256: {EMPTY_SHA256}",
                        f"http://127.0.0.1:{c.port}/{BUCKET}/{key}"], capture_output=True, timeout=30)
    return int(p.stdout[-3:]), p.stdout[:-3]


def document(c, doc_id, who="alice"):
    r = c.env.call("GET", f"/documents/{doc_id}", token=c.users[who])
    eq(r.status, 200, r.body)
    return r.json()


@test
def uploads_are_archived_to_s3_evicted_fetched_back_and_deleted(c):
    data = se.png(b"archive-on-s3") + os.urandom(200000)
    ct, body = se.multipart([("file", data, "scan.png")])
    r = c.env.call("POST", "/documents", body, token=c.users["alice"], headers={"Content-Type": ct})
    eq(r.status, 201, r.body)
    doc = r.json()
    archived = se.wait_for(lambda: (lambda d: d["archive"]["status"] == "done" and d)(
        document(c, doc["id"])), timeout=30)
    true(archived, f"archived: {document(c, doc['id'])['archive']}")
    loc = archived["archive"]["location"]
    true(loc.startswith(f"s3://{BUCKET}/") and loc.endswith("/" + doc["id"]), loc)
    key = loc[len(f"s3://{BUCKET}/"):]
    status, stored = s3_object(c, key)
    eq((status, stored == data), (200, True), "the object in S3 is the upload, read with curl's SigV4")

    # evicted from the volume once archived 2 s, then served from S3 by either instance
    local = os.path.join(c.env.dir, "files", doc["id"][:2], doc["id"])
    true(se.wait_for(lambda: not os.path.exists(local), timeout=20), "the local copy evicted")
    for inst in (0, 1):
        r = c.env.call("GET", f"/documents/{doc['id']}/content", token=c.users["alice"], inst=inst)
        eq((r.status, r.body == data), (200, True), f"download from S3 through instance {inst}")
    r = c.env.call("GET", f"/documents/{doc['id']}/content", token=c.users["alice"],
                   headers={"Range": "bytes=8-15"})
    eq((r.status, r.body), (206, data[8:16]), "a range of the fetched-back copy")
    r = c.env.call("GET", f"/documents/{doc['id']}/content", token=c.users["bob"])
    eq(r.status, 404, "another organization")

    eq(c.env.call("DELETE", f"/documents/{doc['id']}", token=c.users["alice"]).status, 204)
    true(se.wait_for(lambda: s3_object(c, key)[0] == 404, timeout=15), "the S3 object deleted")
    eq(c.env.call("GET", f"/documents/{doc['id']}", token=c.users["alice"]).status, 404)


@test
def a_wrong_s3_secret_fails_archival_with_a_reason_and_loses_nothing(c):
    """worker-archive with a secret S3 refuses: the job is retried, then dead-lettered with the
    S3 error as the reason, never the secret; the document keeps its local copy."""
    bad = os.path.join(c.env.tmp, "bad-secret")
    with open(bad, "w") as f:
        f.write("not-the-secret-" + "x" * 25)
    c.worker.stop()
    wport = procs.free_port(24000, 24999, avoid=(c.port,))
    c.worker = procs.Proc([procs.binary("worker-ocr/worker-archive")], port=wport, env=dict(
        c.s3, S3_SECRET_ACCESS_KEY_FILE=bad, PORT=str(wport), HOST="127.0.0.1",
        STORAGE_DIR=c.env.dir, STORAGE_URL=",".join(f"127.0.0.1:{p}" for p in c.env.ports),
        AUTH_URL=",".join(f"127.0.0.1:{p}" for p in c.env.auth_ports),
        SERVICE_SECRET=se.WORKERS_SECRET, WORKER_CONSUMER="s3-bad", WORKER_RETRY_BASE="200ms",
        WORKER_MAX_DELIVERIES="3", LOG_LEVEL="warn"))
    ct, body = se.multipart([("file", se.png(b"bad-secret"), "b.png")])
    r = c.env.call("POST", "/documents", body, token=c.users["alice"], headers={"Content-Type": ct})
    eq(r.status, 201, r.body)
    doc_id = r.json()["id"]
    failed = se.wait_for(lambda: (lambda d: d["archive"]["status"] == "failed" and d)(
        document(c, doc_id)), timeout=60)
    true(failed, f"failed: {document(c, doc_id)['archive']}")
    err = failed["archive"].get("error", "")
    true("SignatureDoesNotMatch" in err, f"the S3 reason: {err!r}")
    true("not-the-secret" not in err, "the secret is not in the reason")
    with open(c.worker.log_path, "rb") as f:
        true(b"not-the-secret" not in f.read(), "nor in the worker's log")
    local = os.path.join(c.env.dir, "files", doc_id[:2], doc_id)
    true(os.path.exists(local), "the local copy is kept")
    dead = subprocess.run(["redis-cli", "-p", os.environ.get("REDIS_PORT", "6379"), "--raw", "XRANGE",
                           "jobs:archive:dead", "-", "+"], capture_output=True, text=True).stdout
    true(doc_id in dead, "the job is in the dead letters")


if __name__ == "__main__":
    main("archive_s3", setup, teardown)
