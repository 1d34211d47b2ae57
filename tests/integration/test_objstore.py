"""test_objstore: common/objstore.c through tests/objstore_driver against a real S3 server
(moto from var/venv, started by tests/fixtures/s3 with SigV4 signature checking on) and against
the file:// backend: 0-byte, small and 20 MiB files go up and come back byte-identical, the
stored size is what curl's own SigV4 HEAD reports, deleted keys are gone, a wrong secret, an
unknown key and a missing bucket are clear errors that never show the secret, and keys that
could escape the archive are refused."""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import procs  # noqa: E402
from check import eq, main, test, true  # noqa: E402

FIXTURE = os.path.join(procs.ROOT, "tests", "fixtures", "s3")
DRIVER = procs.binary("tests/objstore_driver")
BUCKET = "archive"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
BAD_KEYS = ["../x", "x/../y", "/abs/x", "a/b/c", "a", "a/", "/a", "a/..", "../..", "a/.hidden",
            ".a/b", "a/b c", "a/b%2Fc", "a/\u00e9", "a/b\nc", "a..b/c", "a/b\\c", "a/" + "x" * 129,
            "", "a/b;rm"]


class Ctx:
    pass


def setup():
    c = Ctx()
    c.tmp = tempfile.mkdtemp(prefix="suite-objstore-")
    c.s3dir = os.path.join(c.tmp, "s3")
    c.port = int(os.environ.get("TEST_S3_PORT") or procs.free_port(24000, 24999))
    subprocess.run([FIXTURE, "start", c.s3dir, str(c.port), BUCKET], check=True, timeout=120)
    with open(os.path.join(c.s3dir, "access_key_id")) as f:
        c.access_key = f.read().strip()
    with open(os.path.join(c.s3dir, "secret_access_key")) as f:
        c.secret = f.read().strip()
    c.endpoint = f"http://127.0.0.1:{c.port}"
    c.files = {}
    for name, size in (("zero", 0), ("small", 1000), ("big", 20 * 1024 * 1024)):
        path = os.path.join(c.tmp, name)
        with open(path, "wb") as f:
            f.write(os.urandom(size))
        c.files[name] = path
    return c


def teardown(c):
    subprocess.run([FIXTURE, "stop", c.s3dir], timeout=60)
    shutil.rmtree(c.tmp, ignore_errors=True)


def s3_env(c, **over):
    env = {"ARCHIVE_URL": f"s3://{BUCKET}", "S3_ENDPOINT": c.endpoint,
           "S3_ACCESS_KEY_ID_FILE": os.path.join(c.s3dir, "access_key_id"),
           "S3_SECRET_ACCESS_KEY_FILE": os.path.join(c.s3dir, "secret_access_key")}
    env.update(over)
    return env


def drive(env, *args, timeout=120):
    """Runs the driver with only these settings (no S3_*/ARCHIVE_URL from the caller)."""
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("S3_", "ARCHIVE_URL", "STORAGE_DIR"))}
    full.update(env)
    p = subprocess.run([DRIVER, *args], env=full, capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout.strip(), p.stderr.strip()


def curl_sigv4(c, method, key, secret=None, content_sha=True):
    """An independent client: curl's own SigV4. Returns (status, headers+body text)."""
    args = ["curl", "-s", "-o", "-", "-D", "-", "-w", "\n%{http_code}",
            "--aws-sigv4", "aws:amz:us-east-1:s3", "-u", f"{c.access_key}:{secret or c.secret}"]
    if content_sha:
        args += ["-H", f"x-amz-content-sha256: {EMPTY_SHA256}"]
    args += ["-I"] if method == "HEAD" else ["-X", method]
    p = subprocess.run(args + [f"{c.endpoint}/{BUCKET}/{key}"], capture_output=True,
                       text=True, timeout=30)
    out = p.stdout.rstrip()
    return int(out.rsplit("\n", 1)[1]), out


def content_length(text):
    for line in text.splitlines():
        if line.lower().startswith("content-length:"):
            return int(line.split(":", 1)[1])
    return None


def same_bytes(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def roundtrip(c, env, prefix, location_of):
    for name, path in c.files.items():
        key = f"org-1/{prefix}-{name}"
        rc, out, err = drive(env, "put", key, path)
        eq(rc, 0, f"put {name}: {err}")
        eq(out, location_of(key), f"location of {name}")
        back = os.path.join(c.tmp, f"back-{prefix}-{name}")
        rc, _, err = drive(env, "get", key, back)
        eq(rc, 0, f"get {name}: {err}")
        true(same_bytes(path, back), f"{name} came back byte-identical")
        true(not os.path.exists(back + ".tmp"), "no .tmp left after get")
        rc, _, err = drive(env, "delete", key)
        eq(rc, 0, f"delete {name}: {err}")
        rc, _, err = drive(env, "get", key, back + "-again")
        eq(rc, 3, f"get after delete of {name}: {err}")
        true(not os.path.exists(back + "-again"), "nothing written for a missing key")
        true(not os.path.exists(back + "-again.tmp"), "no .tmp left for a missing key")
        rc, _, err = drive(env, "delete", key)
        eq(rc, 0, f"deleting a missing key is success: {err}")


@test
def s3_put_get_delete(c):
    roundtrip(c, s3_env(c), "s3", lambda key: f"s3://{BUCKET}/{key}")


@test
def s3_stored_size_seen_by_curl(c):
    for name, size in (("zero", 0), ("big", 20 * 1024 * 1024)):
        key = f"org-2/{name}"
        rc, _, err = drive(s3_env(c), "put", key, c.files[name])
        eq(rc, 0, err)
        status, text = curl_sigv4(c, "HEAD", key)
        eq(status, 200, f"HEAD {key}: {text}")
        eq(content_length(text), size, f"stored size of {name}")
        drive(s3_env(c), "delete", key)
    status, text = curl_sigv4(c, "HEAD", "org-2/big")
    eq(status, 404, "gone after delete")


@test
def s3_signature_is_checked(c):
    # The server itself: curl signing with a wrong secret is refused, the right one accepted,
    # and so is a request without x-amz-content-sha256 (libcurl 7.88 does not add it).
    status, text = curl_sigv4(c, "GET", "", secret="not-the-secret")
    eq(status, 403, f"wrong secret with curl: {text}")
    true("SignatureDoesNotMatch" in text, text)
    status, text = curl_sigv4(c, "GET", "")
    eq(status, 200, f"right secret with curl: {text}")
    status, text = curl_sigv4(c, "GET", "", content_sha=False)
    eq(status, 403, f"right secret, no x-amz-content-sha256: {text}")
    true("SignatureDoesNotMatch" in text, text)
    # The driver with a wrong secret: a clear error that never shows the secret.
    wrong = "wr0ngSecretValue/ABCDEFGHIJKLMNOP"
    env = s3_env(c, S3_SECRET_ACCESS_KEY=wrong)
    del env["S3_SECRET_ACCESS_KEY_FILE"]
    for args in (("put", "org-3/doc", c.files["small"]),
                 ("get", "org-3/doc", os.path.join(c.tmp, "w")), ("delete", "org-3/doc")):
        rc, out, err = drive(env, *args)
        eq(rc, 1, f"{args[0]} with a wrong secret: {err}")
        true("403" in err and "SignatureDoesNotMatch" in err, f"clear error: {err}")
        true(wrong not in err and wrong not in out and c.secret not in err, "no secret shown")
    true(not os.path.exists(os.path.join(c.tmp, "w")), "nothing written")
    true(not os.path.exists(os.path.join(c.tmp, "w.tmp")), "no .tmp left")
    status, _ = curl_sigv4(c, "HEAD", "org-3/doc")
    eq(status, 404, "the refused put stored nothing")


@test
def s3_unknown_access_key(c):
    env = s3_env(c, S3_ACCESS_KEY_ID="AKIAUNKNOWNUNKNOWN00")
    del env["S3_ACCESS_KEY_ID_FILE"]
    rc, _, err = drive(env, "put", "org-3/doc", c.files["small"])
    eq(rc, 1, err)
    true("InvalidAccessKeyId" in err and c.secret not in err, err)


@test
def s3_missing_bucket(c):
    env = s3_env(c, ARCHIVE_URL="s3://no-such-bucket")
    for args in (("put", "org-4/doc", c.files["small"]),
                 ("get", "org-4/doc", os.path.join(c.tmp, "nb")), ("delete", "org-4/doc")):
        rc, _, err = drive(env, *args)
        eq(rc, 1, f"{args[0]} into a missing bucket: {err}")
        true("NoSuchBucket" in err and "no-such-bucket" in err, f"clear error: {err}")


@test
def s3_unreachable_endpoint(c):
    dead = procs.free_port(24000, 24999)
    rc, _, err = drive(s3_env(c, S3_ENDPOINT=f"http://127.0.0.1:{dead}"), "put", "org-5/doc",
                       c.files["small"], timeout=30)
    eq(rc, 1, err)
    true("connect" in err.lower(), err)


@test
def bad_keys_refused(c):
    fdir = os.path.join(c.tmp, "farchive")
    for env in (s3_env(c), {"ARCHIVE_URL": "file://" + fdir}):
        for key in BAD_KEYS:
            for args in (("put", key, c.files["small"]),
                         ("get", key, os.path.join(c.tmp, "bk")), ("delete", key)):
                rc, _, err = drive(env, *args)
                eq(rc, 1, f"{args[0]} {key!r} on {env['ARCHIVE_URL']}: {err}")
                true("invalid key" in err, err)
    true(not os.path.exists(os.path.join(c.tmp, "x")), "nothing written beside the archive")
    true(not os.path.exists(fdir) or not os.listdir(fdir), "nothing written in the archive")
    status, text = curl_sigv4(c, "GET", "")
    true("<Key>" not in text, f"nothing stored in the bucket: {text}")


@test
def file_put_get_delete(c):
    fdir = os.path.join(c.tmp, "files archive")
    env = {"ARCHIVE_URL": "file://" + fdir}
    roundtrip(c, env, "f", lambda key: "file://" + os.path.join(fdir, key))
    rc, out, err = drive(env, "put", "org-6/doc.pdf", c.files["big"])
    eq(rc, 0, err)
    stored = os.path.join(fdir, "org-6", "doc.pdf")
    true(same_bytes(stored, c.files["big"]), "stored as dir/<org>/<doc>")
    eq(os.listdir(os.path.join(fdir, "org-6")), ["doc.pdf"], "no temp file left")
    # A second put of the same key replaces it whole.
    rc, out, err = drive(env, "put", "org-6/doc.pdf", c.files["small"])
    eq(rc, 0, err)
    true(same_bytes(stored, c.files["small"]), "replaced")
    rc, _, err = drive(env, "put", "org-6/x", os.path.join(c.tmp, "does-not-exist"))
    eq(rc, 1, "a missing source file")
    true("does-not-exist" in err, err)
    eq(sorted(os.listdir(os.path.join(fdir, "org-6"))), ["doc.pdf"], "no temp file left")


@test
def file_default_under_storage_dir(c):
    sd = os.path.join(c.tmp, "storage")
    rc, out, err = drive({"STORAGE_DIR": sd}, "put", "org-7/d", c.files["small"])
    eq(rc, 0, err)
    eq(out, "file://" + os.path.join(sd, "archive", "org-7", "d"), "default archive location")
    true(same_bytes(os.path.join(sd, "archive", "org-7", "d"), c.files["small"]), "stored")


@test
def bad_configuration(c):
    cases = [({"ARCHIVE_URL": "ftp://x"}, "ARCHIVE_URL"),
             ({"ARCHIVE_URL": "file://relative/dir"}, "ARCHIVE_URL"),
             ({"ARCHIVE_URL": "s3://Bad_Bucket"}, "ARCHIVE_URL"),
             ({"ARCHIVE_URL": "s3://bucket/prefix"}, "ARCHIVE_URL"),
             ({"ARCHIVE_URL": "s3://archive", "S3_ENDPOINT": c.endpoint,
               "S3_SECRET_ACCESS_KEY": "x"}, "S3_ACCESS_KEY_ID"),
             ({"ARCHIVE_URL": "s3://archive", "S3_ENDPOINT": c.endpoint,
               "S3_ACCESS_KEY_ID": "x"}, "S3_SECRET_ACCESS_KEY"),
             ({"ARCHIVE_URL": "s3://archive", "S3_ENDPOINT": "127.0.0.1:9000",
               "S3_ACCESS_KEY_ID": "x", "S3_SECRET_ACCESS_KEY": "y"}, "S3_ENDPOINT")]
    for env, name in cases:
        rc, _, err = drive(env, "delete", "a/b")
        eq(rc, 2, f"{env}: {err}")
        true(name in err, f"{env}: the message names {name}: {err}")


if __name__ == "__main__":
    main("objstore", setup, teardown)
