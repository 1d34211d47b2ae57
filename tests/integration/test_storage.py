"""svc-storage against real PostgreSQL and Redis, two svc-auth instances and two svc-storage
instances sharing one volume (requests alternate between them): uploads (multipart with
Python and curl, raw), the 201 body, sha256/size, byte-identical downloads, ETag/304, Range
(206, suffix, 416, multi-range whole), hostile file names, 415, 413 (Content-Length and
chunked), duplicates and a duplicate race across instances, a connection cut mid-upload,
organization isolation, API keys, list pagination and filters, full-text search over titles
and OCR text reported by a service, the /internal endpoints' authentication and state rules,
jobs on Redis streams (Redis down during an upload, lost and vanished entries re-enqueued by
the sweeper), DELETE, /livez /health /metrics and a SIGTERM that drains an upload."""
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(__file__))
import procs  # noqa: E402
import storage_env as se  # noqa: E402
from check import eq, main, test, true  # noqa: E402
from suite_env import TIMESTAMP as TS  # noqa: E402

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def upload_mp(env, who, data, filename="scan.png", title=None, tags=None, inst=None):
    fields = [("file", data, filename)]
    if title is not None:
        fields.append(("title", title.encode(), None))
    if tags is not None:
        fields.append(("tags", tags.encode(), None))
    ct, body = se.multipart(fields)
    return env.call("POST", "/documents", body, token=env.users[who],
                    headers={"Content-Type": ct}, inst=inst)


def upload_raw(env, who, data, filename="scan.pdf", ctype="application/octet-stream", inst=None,
               extra=""):
    q = urllib.parse.quote(filename, safe="")
    return env.call("POST", f"/documents?filename={q}{extra}", data, token=env.users[who],
                    headers={"Content-Type": ctype}, inst=inst)


def created(r, what="upload"):
    eq(r.status, 201, f"{what}: {r.body[:300]!r}")
    return r.json()


def rows(env, where="true"):
    return int(env.sql(f"SELECT count(*) FROM documents WHERE {where}"))


def tmp_files(env):
    return os.listdir(os.path.join(env.dir, "tmp"))


def stored_files(env):
    out = []
    for root, _dirs, files in os.walk(os.path.join(env.dir, "files")):
        out += [os.path.join(root, f) for f in files]
    return out


def raw_http(port, head, body_parts, pause=0.0, read=True, timeout=15):
    """Sends a request head and body pieces on a socket; returns (status, response bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(head)
        for part in body_parts:
            s.sendall(part)
            if pause:
                time.sleep(pause)
        if not read:
            return None, b""
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                hd, _, rest = data.partition(b"\r\n\r\n")
                m = re.search(rb"Content-Length: (\d+)", hd, re.I)
                if m and len(rest) >= int(m.group(1)):
                    break
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
        return status, data
    finally:
        s.close()


# ---- uploads ----

@test
def multipart_upload_answers_201_with_the_document(env):
    data = se.png(b"shape")
    r = upload_mp(env, "alice", data, filename="Scan 2024.png", title="Invoice März",
                  tags="finance, 2024,finance")
    d = created(r)
    eq(sorted(d.keys()), sorted(["id", "filename", "title", "content_type", "size", "sha256",
                                 "tags", "created_at", "ocr", "archive"]), "keys")
    true(UUID.match(d["id"]), d["id"])
    eq(d["filename"], "Scan 2024.png")
    eq(d["title"], "Invoice März")
    eq(d["content_type"], "image/png")
    eq(d["size"], len(data))
    eq(d["sha256"], hashlib.sha256(data).hexdigest())
    eq(d["tags"], ["finance", "2024"])
    true(TS.match(d["created_at"]), d["created_at"])
    eq(d["ocr"], {"status": "queued"})
    eq(d["archive"], {"status": "queued"})
    path = os.path.join(env.dir, "files", d["id"][:2], d["id"])
    with open(path, "rb") as f:
        eq(f.read(), data, "stored bytes")
    eq(tmp_files(env), [], "tmp files left")


@test
def curl_multipart_and_raw_uploads_detect_the_type_by_content(env):
    f = os.path.join(env.tmp, "photo.bin")
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(2000)
    with open(f, "wb") as fh:
        fh.write(jpeg)
    status, _h, body = env.curl("-F", f"file=@{f};filename=photo.txt;type=text/plain",
                                "-F", "title=Holiday", "-F", "tags=a", "-F", "tags=b",
                                "{base}/documents", token=env.users["alice"])
    eq(status, 201, body)
    d = json.loads(body)
    eq((d["content_type"], d["filename"], d["title"], d["tags"]),
       ("image/jpeg", "photo.txt", "Holiday", ["a", "b"]))
    eq(d["sha256"], hashlib.sha256(jpeg).hexdigest())
    for data, ctype in ((b"II*\x00" + os.urandom(300), "image/tiff"),
                        (b"MM\x00*" + os.urandom(300), "image/tiff"),
                        (se.pdf("raw"), "application/pdf")):
        d = created(upload_raw(env, "alice", data, filename="doc.bin", ctype="image/png"))
        eq(d["content_type"], ctype)
        eq(d["size"], len(data))
    # a raw upload with title and tags in the query
    d = created(upload_raw(env, "alice", se.pdf("q"), extra="&title=From%20query&tags=x,y"))
    eq((d["title"], d["tags"]), ("From query", ["x", "y"]))


@test
def download_is_byte_identical_with_etag_and_304(env):
    data = os.urandom(300 * 1024)
    data = b"%PDF-1.7\n" + data
    d = created(upload_raw(env, "alice", data, filename="big.pdf"))
    for inst in (0, 1):
        r = env.call("GET", f"/documents/{d['id']}/content", token=env.users["alice"], inst=inst)
        eq(r.status, 200)
        eq(r.body, data, "bytes")
        eq(r.header("Content-Type"), "application/pdf")
        eq(r.header("ETag"), f'"{d["sha256"]}"')
        eq(r.header("X-Content-Type-Options"), "nosniff")
        eq(r.header("Content-Length"), str(len(data)))
    r = env.call("GET", f"/documents/{d['id']}/content", token=env.users["alice"],
                 headers={"If-None-Match": f'"{d["sha256"]}"'})
    eq(r.status, 304)
    eq(r.body, b"")
    r = env.call("GET", f"/documents/{d['id']}/content", token=env.users["alice"],
                 headers={"If-None-Match": '"other"'})
    eq(r.status, 200)
    # curl agrees
    status, headers, body = env.curl("{base}/documents/" + d["id"] + "/content",
                                     token=env.users["alice"])
    eq((status, body == data), (200, True))
    true("attachment;" in headers, headers)


@test
def range_requests(env):
    data = b"%PDF-1.4\n" + bytes(range(256)) * 8
    d = created(upload_raw(env, "alice", data, filename="r.pdf"))
    url = f"/documents/{d['id']}/content"
    n = len(data)

    def rng(h):
        return env.call("GET", url, token=env.users["alice"], headers={"Range": h})

    r = rng("bytes=10-19")
    eq(r.status, 206)
    eq(r.body, data[10:20])
    eq(r.header("Content-Range"), f"bytes 10-19/{n}")
    r = rng("bytes=-7")
    eq((r.status, r.body, r.header("Content-Range")), (206, data[-7:], f"bytes {n - 7}-{n - 1}/{n}"))
    r = rng(f"bytes={n - 5}-")
    eq((r.status, r.body), (206, data[-5:]))
    r = rng(f"bytes=100-{n + 1000}")
    eq((r.status, r.body), (206, data[100:]))
    r = rng(f"bytes={n}-")
    eq(r.status, 416)
    eq(r.header("Content-Range"), f"bytes */{n}")
    r = rng("bytes=-0")
    eq(r.status, 416)
    r = rng("bytes=0-1,5-6")
    eq((r.status, r.body), (200, data), "multiple ranges: whole")
    r = rng("bytes=9-3")
    eq((r.status, r.body), (200, data), "invalid range ignored")
    status, headers, body = env.curl("-r", "0-3", "{base}" + url, token=env.users["alice"])
    eq((status, body), (206, data[:4]))


@test
def hostile_file_names_stay_names(env):
    names = {
        "../../etc/passwd": "passwd",
        'evil"name".pdf': "evilname.pdf",
        "..": "document",
        "C:\\Windows\\system32\\x.pdf": "x.pdf",
        "line\r\nX-Injected: 1.pdf": "lineX-Injected: 1.pdf",
    }
    for i, (name, want) in enumerate(names.items()):
        d = created(upload_raw(env, "alice", se.pdf(f"hostile{i}"), filename=name), name)
        eq(d["filename"], want, repr(name))
        r = env.call("GET", f"/documents/{d['id']}/content", token=env.users["alice"])
        eq(r.status, 200)
        cd = r.header("Content-Disposition")
        true(cd.startswith('attachment; filename="'), cd)
        true(all(32 <= ord(c) < 127 for c in cd), repr(cd))
        quoted = cd.split('"')
        eq(len(quoted), 3, f"one quoted name only: {cd!r}")
        ext = cd.split("filename*=UTF-8''", 1)[1]
        eq(urllib.parse.unquote(ext), want, "filename* decodes to the name")
    # non-UTF-8 bytes and an escaped quote in a multipart filename (raw header bytes)
    boundary = "xYzBoundary"
    body = (b"--" + boundary.encode() + b"\r\nContent-Disposition: form-data; name=\"file\"; "
            b"filename=\"../\xff\xfe\\\"q\\\"\xc3\xa9t\xc3\xa9.pdf\"\r\n\r\n" + se.pdf("nonutf8") +
            b"\r\n--" + boundary.encode() + b"--\r\n")
    r = env.call("POST", "/documents", body, token=env.users["alice"],
                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    d = created(r)
    eq(d["filename"], "\ufffd\ufffdqété.pdf")
    r = env.call("GET", f"/documents/{d['id']}/content", token=env.users["alice"])
    cd = r.header("Content-Disposition")
    eq(cd, "attachment; filename=\"__q_t_.pdf\"; filename*=UTF-8''%EF%BF%BD%EF%BF%BDq%C3%A9t%C3%A9.pdf")
    # a ?filename= that does not decode (NUL, not UTF-8) is named as the error, and none is missing
    for bad in ("%00%0d%0aX-Evil:%201.pdf", "%ff%fe.pdf"):
        r = env.call("POST", f"/documents?filename={bad}", se.pdf("badname"), token=env.users["alice"],
                     headers={"Content-Type": "application/pdf"})
        eq((r.status, r.json()["error"]["code"]), (400, "invalid_filename"), bad)
    r = env.call("POST", "/documents", se.pdf("noname"), token=env.users["alice"],
                 headers={"Content-Type": "application/pdf"})
    eq((r.status, r.json()["error"]["code"]), (400, "missing_filename"), "no ?filename=")
    # nothing was written outside the volume's files/ (and never by name)
    for p in stored_files(env):
        true(UUID.match(os.path.basename(p)), p)
    true(not os.path.exists(os.path.join(env.tmp, "etc")), "escaped the volume")


@test
def text_files_are_refused_with_415(env):
    before = rows(env)
    r = upload_raw(env, "alice", b"just some text, not a document\n", filename="a.pdf",
                   ctype="application/pdf")
    eq(r.status, 415)
    eq(r.json()["error"]["code"], "unsupported_media_type")
    r = upload_mp(env, "alice", b"GIF89a" + os.urandom(100), filename="x.png")
    eq(r.status, 415)
    r = upload_mp(env, "alice", b"%PD", filename="tiny.pdf")
    eq(r.status, 415, "shorter than any magic")
    eq(rows(env), before)
    time.sleep(0.3)
    eq(tmp_files(env), [])


@test
def too_large_is_413_by_content_length_and_while_streaming(env):
    before = rows(env)
    port = env.ports[0]
    head = (f"POST /documents?filename=big.pdf HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {env.users['alice']}\r\nContent-Type: application/pdf\r\n"
            f"Content-Length: {se.MAX_UPLOAD + 1}\r\n\r\n").encode()
    t0 = time.time()
    status, data = raw_http(port, head, [])  # no body sent at all: refused before reading
    eq(status, 413, data[:200])
    true(b"too_large" in data, data)
    true(time.time() - t0 < 5, "answered at once")
    # chunked, with curl: no Content-Length, the limit is found while streaming
    big = os.path.join(env.tmp, "big.pdf")
    with open(big, "wb") as f:
        f.write(b"%PDF-1.4\n" + os.urandom(se.MAX_UPLOAD + 100 * 1024))
    status, _h, body = env.curl("-H", "Transfer-Encoding: chunked", "-H",
                                "Content-Type: application/pdf", "--data-binary", f"@{big}",
                                "{base}/documents?filename=big.pdf", token=env.users["alice"])
    eq(status, 413, body)
    eq(json.loads(body)["error"]["code"], "too_large")
    # multipart over the limit too
    status, _h, body = env.curl("-F", f"file=@{big}", "{base}/documents",
                                token=env.users["alice"])
    eq(status, 413, body)
    eq(rows(env), before)
    time.sleep(0.5)
    eq(tmp_files(env), [], "the partial file is removed")
    # exactly at the limit is fine
    with open(big, "wb") as f:
        f.write(b"%PDF-1.4\n" + os.urandom(se.MAX_UPLOAD - 9))
    status, _h, body = env.curl("-H", "Content-Type: application/pdf", "--data-binary", f"@{big}",
                                "{base}/documents?filename=limit.pdf", token=env.users["alice"])
    eq(status, 201, body)


@test
def the_same_bytes_again_are_a_duplicate(env):
    data = se.png(b"dup")
    d = created(upload_mp(env, "alice", data, filename="one.png"))
    r = upload_raw(env, "carol", data, filename="two.png")  # same organization
    eq(r.status, 200, r.body)
    d2 = r.json()
    eq(d2["duplicate"], True)
    eq(d2["id"], d["id"])
    eq(d2["filename"], "one.png")
    r = upload_raw(env, "bob", data, filename="mine.png")  # another organization
    eq(r.status, 201)
    eq(rows(env, f"sha256 = '{d['sha256']}'"), 2)
    time.sleep(0.3)
    paths = [p for p in stored_files(env) if os.path.basename(p) in (d["id"], r.json()["id"])]
    eq(len(paths), 2, "the duplicate's copy was removed")
    eq(len(stored_files(env)), rows(env), "one file per row")


@test
def identical_uploads_racing_on_two_instances_make_one_row(env):
    for round_ in range(6):
        data = se.pdf(f"race{round_}") + os.urandom(200 * 1024)
        results = [None, None]

        def go(i):
            results[i] = upload_raw(env, "alice", data, filename=f"race{i}.pdf", inst=i)

        threads = [threading.Thread(target=go, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(r.status for r in results)
        eq(statuses, [200, 201], f"round {round_}: {[r.body[:200] for r in results]}")
        eq(results[0].json()["id"], results[1].json()["id"])
        sha = hashlib.sha256(data).hexdigest()
        eq(rows(env, f"sha256 = '{sha}'"), 1)
    time.sleep(0.3)
    eq(len(stored_files(env)), rows(env), "one file per row")
    eq(tmp_files(env), [])


@test
def a_connection_cut_mid_upload_leaves_nothing(env):
    before = rows(env)
    files_before = len(stored_files(env))
    port = env.ports[1]
    for mode in ("raw", "multipart"):
        if mode == "raw":
            head = (f"POST /documents?filename=cut.pdf HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: Bearer {env.users['alice']}\r\n"
                    f"Content-Type: application/pdf\r\nContent-Length: 1000000\r\n\r\n").encode()
            parts = [b"%PDF-1.4\n" + os.urandom(300000)]
        else:
            head = (f"POST /documents HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: Bearer {env.users['alice']}\r\n"
                    f"Content-Type: multipart/form-data; boundary=cutcut\r\n"
                    f"Transfer-Encoding: chunked\r\n\r\n").encode()
            piece = (b"--cutcut\r\nContent-Disposition: form-data; name=\"file\"; "
                     b"filename=\"c.pdf\"\r\n\r\n%PDF-1.4\n" + os.urandom(200000))
            parts = [b"%x\r\n" % len(piece) + piece + b"\r\n"]
        s = socket.create_connection(("127.0.0.1", port), timeout=15)
        s.sendall(head)
        for part in parts:
            s.sendall(part)
        true(se.wait_for(lambda: len(tmp_files(env)) == 1, timeout=10),
             f"{mode}: the upload is being written")
        s.close()
        true(se.wait_for(lambda: tmp_files(env) == [], timeout=10), f"{mode}: tmp left: "
             f"{tmp_files(env)}")
    eq(rows(env), before)
    eq(len(stored_files(env)), files_before)


# ---- reading, isolation, auth ----

@test
def another_organizations_document_is_404_like_a_missing_one(env):
    d = created(upload_mp(env, "alice", se.png(b"iso"), filename="iso.png"))
    missing = str(uuid.uuid4())
    for path in ("/documents/{}", "/documents/{}/content"):
        theirs = env.call("GET", path.format(d["id"]), token=env.users["bob"])
        none = env.call("GET", path.format(missing), token=env.users["bob"])
        eq(theirs.status, 404)
        eq((theirs.status, theirs.body), (none.status, none.body), path)
    eq(env.call("DELETE", f"/documents/{d['id']}", token=env.users["bob"]).status, 404)
    for bad in ("not-a-uuid", "1", "%27%20OR%201=1"):
        eq(env.call("GET", f"/documents/{bad}", token=env.users["alice"]).status, 404, bad)
    r = env.call("GET", "/documents", token=env.users["bob"])
    true(d["id"] not in [x["id"] for x in r.json()["data"]], "listed to another org")
    r = env.call("GET", f"/documents/{d['id']}", token=env.users["carol"])
    eq(r.status, 200, "a member of the organization sees it")
    eq(env.call("GET", f"/documents/{d['id']}").status, 401, "no credential")
    eq(env.call("GET", f"/documents/{d['id']}", token="garbage").status, 401)


@test
def api_keys_work(env):
    r = env.auth("POST", "/auth/api-keys", {"name": "scanner"}, token=env.users["alice"])
    eq(r.status, 201, r.body)
    key = r.json()["key"]
    ct, body = se.multipart([("file", se.png(b"apikey"), "k.png")])
    r = env.call("POST", "/documents", body, apikey=key, headers={"Content-Type": ct})
    d = created(r)
    r = env.call("GET", f"/documents/{d['id']}", apikey=key)
    eq(r.status, 200)
    r = env.call("GET", f"/documents?sha256={d['sha256'].upper()}", apikey=key)
    eq([x["id"] for x in r.json()["data"]], [d["id"]])


@test
def list_pagination_and_filters(env):
    t = env.tag
    env.register(f"dave-{t}@example.com")
    env.users["dave"] = env.login(f"dave-{t}@example.com")
    ids = []
    for i in range(7):
        d = created(upload_mp(env, "dave", se.png(b"list%d" % i), filename=f"l{i}.png",
                              tags="even" if i % 2 == 0 else "odd"))
        ids.append(d["id"])
    seen, after, pages = [], None, 0
    while True:
        q = "/documents?limit=3" + (f"&starting_after={after}" if after else "")
        r = env.call("GET", q, token=env.users["dave"])
        eq(r.status, 200, r.body)
        page = r.json()
        eq(sorted(page.keys()), ["data", "has_more"])
        true(len(page["data"]) <= 3)
        seen += [x["id"] for x in page["data"]]
        pages += 1
        if not page["has_more"]:
            break
        after = page["data"][-1]["id"]
    eq(seen, list(reversed(ids)), "newest first, each once")
    eq(pages, 3)
    r = env.call("GET", "/documents", token=env.users["dave"])
    eq(len(r.json()["data"]), 7)
    eq(r.json()["has_more"], False)
    r = env.call("GET", "/documents?tag=even", token=env.users["dave"])
    eq([x["id"] for x in r.json()["data"]], [ids[6], ids[4], ids[2], ids[0]])
    sha = hashlib.sha256(se.png(b"x")).hexdigest()  # random: matches nothing
    eq(env.call("GET", f"/documents?sha256={sha}", token=env.users["dave"]).json()["data"], [])
    other = created(upload_mp(env, "alice", se.png(b"not dave's")))["id"]
    for bad in ("limit=0", "limit=101", "limit=x", "starting_after=abc", "sha256=12",
                "starting_after=" + str(uuid.uuid4()), "starting_after=" + other):
        r = env.call("GET", f"/documents?{bad}", token=env.users["dave"])
        eq(r.status, 400, bad)
        eq(r.json()["error"]["code"], "invalid_query")


@test
def full_text_search_over_titles_and_ocr_text(env):
    d1 = created(upload_mp(env, "alice", se.png(b"fts1"), filename="a.png",
                           title="Quarterly platypus report"))
    d2 = created(upload_mp(env, "alice", se.png(b"fts2"), filename="b.png"))
    r = env.call("GET", "/documents?q=platypus", token=env.users["alice"])
    eq([x["id"] for x in r.json()["data"]], [d1["id"]])
    tok = env.service_token()
    r = env.call("POST", f"/internal/documents/{d2['id']}/ocr",
                 {"status": "done", "text": "The wombats invoiced seventeen carrots",
                  "confidence": 87.5, "pages": 2}, headers={"X-Service-Token": tok})
    eq(r.status, 204, r.body)
    r = env.call("GET", "/documents?q=wombat%20carrots", token=env.users["alice"])
    eq([x["id"] for x in r.json()["data"]], [d2["id"]], "stemmed OCR text")
    r = env.call("GET", "/documents?q=wombat%20-carrots", token=env.users["alice"])
    eq(r.json()["data"], [], "websearch syntax")
    eq(env.call("GET", "/documents?q=wombat", token=env.users["bob"]).json()["data"], [])
    r = env.call("GET", f"/documents/{d2['id']}", token=env.users["alice"])
    eq(r.json()["ocr"], {"status": "done", "text": "The wombats invoiced seventeen carrots",
                         "confidence": 87.5, "pages": 2})


@test
def internal_endpoints_need_a_service_token(env):
    d = created(upload_mp(env, "alice", se.png(b"internal"), filename="i.png"))
    url = f"/internal/documents/{d['id']}/ocr"
    body = {"status": "processing"}
    user = env.users["alice"]
    wrong_aud = env.service_token(audience="payments")
    for headers in ({}, {"X-Service-Token": user}, {"Authorization": f"Bearer {user}"},
                    {"X-Service-Token": wrong_aud}, {"X-Service-Token": "x.y.z"}):
        for path in (url, f"/internal/documents/{d['id']}/archive", "/internal/jobs/lost"):
            r = env.call("POST", path, body, headers=headers)
            eq(r.status, 401, f"{path} {list(headers)}")
    tok = {"X-Service-Token": env.service_token()}
    eq(env.call("GET", "/documents", headers=tok).status, 401, "a service is not a user")
    eq(env.call("POST", url, body, headers=tok).status, 204)
    eq(env.call("POST", f"/internal/documents/{uuid.uuid4()}/ocr", body, headers=tok).status, 404)
    for bad in ({"status": "weird"}, {"status": "done", "pages": "2"}, {"nope": 1}, [1]):
        r = env.call("POST", url, bad, headers=tok)
        eq(r.status, 400, f"{bad}: {r.body!r}")
    eq(env.call("POST", f"/internal/documents/{d['id']}/archive", {"status": "done"},
                headers=tok).status, 400, "done without a location")
    # state rules: failed, then a late processing does not move it back; done is idempotent
    eq(env.call("POST", url, {"status": "failed", "error": "unreadable", "dead": True},
                headers=tok).status, 204)
    eq(env.call("POST", url, {"status": "processing"}, headers=tok).status, 204)
    r = env.call("GET", f"/documents/{d['id']}", token=user)
    eq(r.json()["ocr"], {"status": "failed", "error": "unreadable"})
    aurl = f"/internal/documents/{d['id']}/archive"
    loc = {"status": "done", "location": "s3://bucket/org/doc"}
    eq(env.call("POST", aurl, loc, headers=tok).status, 204)
    eq(env.call("POST", aurl, loc, headers=tok).status, 204, "a repeat")
    eq(env.call("POST", aurl, {"status": "failed", "error": "late"}, headers=tok).status, 204)
    eq(env.call("POST", aurl, {"status": "processing"}, headers=tok).status, 204)
    r = env.call("GET", f"/documents/{d['id']}", token=user)
    eq(r.json()["archive"], {"status": "done", "location": "s3://bucket/org/doc"})
    m = env.call("GET", "/metrics", inst=0).body.decode() + env.call("GET", "/metrics",
                                                                     inst=1).body.decode()
    true('storage_jobs_total{stream="jobs:ocr",outcome="dead"}' in m, "dead counted")


# ---- jobs ----

def entry_of(env, doc_id, stream="jobs:ocr"):
    """The ids of the stream entries whose doc field is doc_id."""
    out = env.redis_cli("XRANGE", stream, "-", "+")
    ids, cur = [], None
    lines = [ln.strip() for ln in out.splitlines()]
    for i, ln in enumerate(lines):
        m = re.match(r'^(?:\d+\) )*1\) "(\d+-\d+)"$', ln)
        if m:
            cur = m.group(1)
        if ln.endswith('"doc"') and i + 1 < len(lines) and f'"{doc_id}"' in lines[i + 1]:
            ids.append(cur)
    return ids


@test
def uploads_enqueue_both_jobs_with_the_contract_fields(env):
    d = created(upload_mp(env, "alice", se.png(b"jobs"), filename="job name.png"))
    true(se.wait_for(lambda: env.sql(f"SELECT ocr_job ~ '^[0-9]+-[0-9]+$' AND archive_job ~ "
                                     f"'^[0-9]+-[0-9]+$' FROM documents WHERE id = "
                                     f"'{d['id']}'") == "t"), "job ids stored")
    job = env.sql(f"SELECT ocr_job FROM documents WHERE id = '{d['id']}'")
    out = env.redis_cli("--raw", "XRANGE", "jobs:ocr", job, job).split("\n")
    fields = dict(zip(out[1::2], out[2::2]))
    eq(fields, {"doc": d["id"], "org": fields["org"], "file": f"files/{d['id'][:2]}/{d['id']}",
                "type": "image/png", "size": str(d["size"]), "sha256": d["sha256"],
                "name": "job name.png"})
    true(fields["org"], "org")
    true(env.sql(f"SELECT archive_job FROM documents WHERE id = '{d['id']}'") in
         env.redis_cli("XRANGE", "jobs:archive", "-", "+"), "archive entry")
    groups = env.redis_cli("--raw", "XINFO", "GROUPS", "jobs:ocr")
    true("workers" in groups, "consumer group created")


@test
def lost_and_vanished_jobs_are_re_enqueued_once(env):
    d = created(upload_mp(env, "alice", se.png(b"lost"), filename="lost.png"))
    q = f"SELECT ocr_job FROM documents WHERE id = '{d['id']}'"
    true(se.wait_for(lambda: re.match(r"^\d+-\d+$", env.sql(q))), "enqueued")
    first = env.sql(q)
    env.redis_cli("XDEL", "jobs:ocr", first)
    tok = {"X-Service-Token": env.service_token()}
    r = env.call("POST", "/internal/jobs/lost", {"stream": "jobs:ocr", "ids": [first]}, headers=tok)
    eq(r.status, 204, r.body)
    true(se.wait_for(lambda: re.match(r"^\d+-\d+$", env.sql(q)) and env.sql(q) != first,
                     timeout=5), "re-enqueued at once")
    second = env.sql(q)
    time.sleep(1.5)  # both instances sweep: still one new entry
    eq(entry_of(env, d["id"]), [second])
    # an entry that vanished without a report: the sweeper notices after the grace period
    env.redis_cli("XDEL", "jobs:ocr", second)
    true(se.wait_for(lambda: env.sql(q) not in (second, "") and
                     re.match(r"^\d+-\d+$", env.sql(q)), timeout=15), "vanished re-enqueued")
    time.sleep(1.5)
    eq(entry_of(env, d["id"]), [env.sql(q)], "exactly one entry")
    for bad in ({"stream": "jobs:other", "ids": []}, {"stream": "jobs:ocr", "ids": [1]},
                {"stream": "jobs:ocr"}):
        eq(env.call("POST", "/internal/jobs/lost", bad, headers=tok).status, 400, bad)


@test
def lost_reports_to_both_instances_at_once_enqueue_each_document_once(env):
    docs = [created(upload_raw(env, "alice", se.pdf(f"both{i}"), filename=f"b{i}.pdf"))["id"]
            for i in range(12)]
    ids = "(" + ",".join(f"'{d}'" for d in docs) + ")"
    q = f"SELECT count(*) FROM documents WHERE id IN {ids} AND ocr_job ~ '^[0-9]+-[0-9]+$'"
    true(se.wait_for(lambda: env.sql(q) == "12"), "enqueued")
    entries = env.sql(f"SELECT ocr_job FROM documents WHERE id IN {ids}").split()
    env.redis_cli("XDEL", "jobs:ocr", *entries)
    tok = {"X-Service-Token": env.service_token()}
    body = {"stream": "jobs:ocr", "ids": entries}
    out = []
    threads = [threading.Thread(target=lambda i=i: out.append(
        env.call("POST", "/internal/jobs/lost", body, headers=tok, inst=i).status)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    eq(out, [204, 204])
    new = f"SELECT count(*) FROM documents WHERE id IN {ids} AND ocr_job ~ '^[0-9]+-[0-9]+$' " \
          f"AND ocr_job NOT IN ({','.join(repr(e) for e in entries)})"
    true(se.wait_for(lambda: env.sql(new) == "12", timeout=10), "all re-enqueued")
    time.sleep(1.5)
    for d in docs:
        eq(len(entry_of(env, d)), 1, f"entries of {d}")


@test
def redis_down_during_upload_still_201_and_enqueued_later(env):
    """The instance whose Redis was down enqueues the job once Redis is back: the two shared
    instances are stopped meanwhile, or their sweepers (on the same database, with a Redis
    that never went down) could enqueue it first and the test would see nothing here."""
    port = env.ports[1] + 1  # base + 4, a Redis of this test's own
    rds = procs.RedisServer(port)
    p = None
    for i in (0, 1):
        env.storage[i].stop()
    try:
        sport = port + 1
        p = procs.Proc([procs.binary("svc-storage/svc-storage")], port=sport,
                       env=env.storage_env(sport, REDIS_PORT=str(port)))
        rds.stop()
        time.sleep(0.5)
        ct, body = se.multipart([("file", se.png(b"redisdown"), "rd.png")])
        r = procs.request(sport, "POST", "/documents", body,
                          {"Authorization": f"Bearer {env.users['alice']}", "Content-Type": ct})
        d = created(r, "upload with Redis down")
        h = procs.request(sport, "GET", "/health")
        eq(h.status, 503)
        eq(h.json()["dependencies"]["redis"], "down")
        time.sleep(0.5)
        eq(env.sql(f"SELECT coalesce(ocr_job, 'null') FROM documents WHERE id = '{d['id']}'"),
           "null")
        rds.start()

        def enqueued():
            out = subprocess.run(["redis-cli", "-p", str(port), "--raw", "XRANGE", "jobs:ocr",
                                  "-", "+"], capture_output=True, text=True).stdout
            return d["id"] in out

        true(se.wait_for(enqueued, timeout=20), "the sweeper enqueued the job")
        eq(procs.request(sport, "GET", "/health").status, 200)
    finally:
        if p:
            p.stop()
        rds.remove()
        for i in (0, 1):
            env.start_storage(i)


@test
def the_sweeper_removes_abandoned_temporary_files(env):
    tmp = os.path.join(env.dir, "tmp")
    old, fresh = os.path.join(tmp, "abandoned"), os.path.join(tmp, "recent")
    for p in (old, fresh):
        with open(p, "wb") as f:
            f.write(b"partial upload")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    true(se.wait_for(lambda: not os.path.exists(old), timeout=10), "the old file is removed")
    time.sleep(1)
    true(os.path.exists(fresh), "a recent one is kept")
    os.unlink(fresh)


@test
def archived_copies_are_evicted_fetched_back_and_deleted(env):
    """With STORAGE_LOCAL_RETENTION, the local copy of a document archived "done" is removed by
    the sweeper; /content fetches it back from the archive (file:// of STORAGE_DIR/archive,
    written here with common/objstore as worker-archive would); DELETE removes the object."""
    port = env.ports[1] + 1
    p = procs.Proc([procs.binary("svc-storage/svc-storage")], port=port,
                   env=env.storage_env(port, STORAGE_LOCAL_RETENTION="1s"))
    try:
        data = b"%PDF-1.4\n" + os.urandom(150000)
        r = procs.request(port, "POST", "/documents?filename=arch.pdf", data,
                          {"Authorization": f"Bearer {env.users['alice']}",
                           "Content-Type": "application/pdf"})
        d = created(r)
        org = env.sql(f"SELECT org_id FROM documents WHERE id = '{d['id']}'")
        local = os.path.join(env.dir, "files", d["id"][:2], d["id"])
        out = subprocess.run([procs.binary("tests/objstore_driver"), "put", f"{org}/{d['id']}",
                              local], env=dict(os.environ, STORAGE_DIR=env.dir),
                             capture_output=True, text=True, check=True).stdout.strip()
        true(out.startswith("file://"), out)
        obj = out[len("file://"):]
        tok = {"X-Service-Token": env.service_token()}
        eq(procs.request(port, "POST", f"/internal/documents/{d['id']}/archive",
                         {"status": "done", "location": out}, tok).status, 204)
        true(se.wait_for(lambda: not os.path.exists(local), timeout=15), "evicted")
        eq(env.sql(f"SELECT local_evicted FROM documents WHERE id = '{d['id']}'"), "t")
        for inst in (0, 1):  # any instance fetches it back
            r = env.call("GET", f"/documents/{d['id']}/content", token=env.users["alice"],
                         inst=inst, headers={"Range": "bytes=-100"} if inst else None)
            eq(r.status, 206 if inst else 200)
            eq(r.body, data[-100:] if inst else data, "bytes from the archive")
        true(os.path.exists(local), "the local copy is back")
        eq(env.call("DELETE", f"/documents/{d['id']}", token=env.users["alice"]).status, 204)
        true(se.wait_for(lambda: not os.path.exists(obj), timeout=10), "archived object deleted")
        true(se.wait_for(lambda: not os.path.exists(local), timeout=10), "local copy deleted")
        # a document whose archive object is gone too: 503, not a hang or a crash
        d = created(upload_raw(env, "alice", se.pdf("gone"), filename="gone.pdf"))
        local = os.path.join(env.dir, "files", d["id"][:2], d["id"])
        os.unlink(local)
        r = env.call("GET", f"/documents/{d['id']}/content", token=env.users["alice"])
        eq(r.status, 503, r.body)
    finally:
        p.stop()


# ---- delete, operations ----

@test
def delete_removes_row_and_file(env):
    d = created(upload_mp(env, "alice", se.png(b"del"), filename="del.png"))
    path = os.path.join(env.dir, "files", d["id"][:2], d["id"])
    true(os.path.exists(path))
    eq(env.call("DELETE", f"/documents/{d['id']}", token=env.users["carol"]).status, 204)
    eq(rows(env, f"id = '{d['id']}'"), 0)
    true(se.wait_for(lambda: not os.path.exists(path), timeout=5), "file unlinked")
    eq(env.call("GET", f"/documents/{d['id']}", token=env.users["alice"]).status, 404)
    eq(env.call("GET", f"/documents/{d['id']}/content", token=env.users["alice"]).status, 404)
    eq(env.call("DELETE", f"/documents/{d['id']}", token=env.users["alice"]).status, 404)
    tok = {"X-Service-Token": env.service_token()}
    eq(env.call("POST", f"/internal/documents/{d['id']}/ocr", {"status": "processing"},
                headers=tok).status, 404, "a worker learns it is gone")
    # the same bytes can be uploaded again afterwards
    eq(upload_mp(env, "alice", b"", filename="x").status, 415)


@test
def livez_health_metrics(env):
    eq(env.call("GET", "/livez", inst=0).status, 200)
    r = env.call("GET", "/health", inst=1)
    eq(r.status, 200, r.body)
    eq(r.json()["dependencies"], {"postgres": "up", "redis": "up", "auth": "up"})
    created(upload_mp(env, "alice", se.png(b"metrics"), filename="m.png", inst=0))
    time.sleep(1.2)
    m = env.call("GET", "/metrics", inst=0).body.decode()
    true(re.search(r'^storage_uploads_total\{result="created"\} \d+', m, re.M), m[:2000])
    true(re.search(r"^storage_upload_bytes_total \d+", m, re.M), "bytes")
    true(re.search(r'^storage_queue_depth\{stream="jobs:ocr"\} [1-9]', m, re.M), "queue depth")


@test
def sigterm_drains_an_upload_in_flight(env):
    p = env.storage[1]
    port = env.ports[1]
    data = b"%PDF-1.4\n" + os.urandom(400000)
    head = (f"POST /documents?filename=drain.pdf HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {env.users['alice']}\r\nContent-Type: application/pdf\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    result = {}

    def go():
        parts = [data[i:i + 40000] for i in range(0, len(data), 40000)]
        result["r"] = raw_http(port, head, parts, pause=0.15)

    t = threading.Thread(target=go)
    t.start()
    time.sleep(0.5)
    p.p.send_signal(signal.SIGTERM)
    t.join(30)
    status, resp = result["r"]
    eq(status, 201, resp[:300])
    eq(p.p.wait(20), 0, "exit status")
    body = json.loads(resp.split(b"\r\n\r\n", 1)[1])
    eq(body["sha256"], hashlib.sha256(data).hexdigest())
    env.start_storage(1)


@test
def no_sanitizer_report_and_instances_alive(env):
    for i in (0, 1):
        eq(env.storage[i].p.poll(), None, f"instance {i} is running")
    for p in env.procs:
        out = p.output()
        for bad in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
            true(bad not in out, f"{bad} in the log of pid {p.pid}: {out[-1500:]}")


if __name__ == "__main__":
    main("storage", se.Env.with_users, se.Env.close)
