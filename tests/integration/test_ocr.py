"""test_ocr: worker-ocr's ocr_file (worker-ocr/ocr.c) on real files, through tests/ocr_driver
(one JSON line per file). The fixtures are made here at test time: pages of known words drawn
by ImageMagick (PNG, JPEG, a 3-page TIFF), a 2-page PDF written by hand around JPEG images
(ImageMagick's policy forbids writing PDF), and hostile files: a corrupt and a truncated PNG,
a truncated PDF, a text file named .pdf, too many pages, image headers declaring huge sizes,
a PDF page of 200 inches, and jobs over their time limit. Each must answer, in bounded time,
with the words in page order, or -1 and a reason."""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from check import eq, main, test, true  # noqa: E402
from procs import SANITIZED, binary  # noqa: E402

DRIVER = binary("tests/ocr_driver")
SLOW = 3 if SANITIZED else 1
HOSTILE_MS = 10000 * SLOW  # "bounded time" for a file that must be refused

PAGES = {
    "png": ["invoice 4217 harbour", "payable within thirty days"],
    "jpeg": ["receipt 8350 lantern", "paid by card at the counter"],
    "tiff": [["first meadow 1111"], ["second copper 2222"], ["third violet 3333"]],
    "pdf": [["invoice 4217 harbour"], ["delivery 9034 granite"]],
}


def draw(path, lines, width=1600, height=700, background="white", rgba=False):
    """A page with lines of 48-point text, one per -annotate: grey 8-bit, or RGBA."""
    args = ["convert", "-size", f"{width}x{height}", f"xc:{background}", "-fill", "black",
            "-font", "DejaVu-Sans", "-pointsize", "48"]
    y = 120
    for line in lines:
        args += ["-annotate", f"+80+{y}", line]
        y += 90
    out = ["PNG32:" + path] if rgba else ["-colorspace", "Gray", "-depth", "8", path]
    subprocess.run(args + out, check=True, capture_output=True)


def dense_lines(n, seed):
    words = ("invoice harbour account payment delivery order customer total amount balance "
             "shipping address number reference quantity price tax date signature contract "
             "service period monthly annual report summary").split()
    out, x = [], seed
    for i in range(n):
        row = []
        for _ in range(10):
            x = (x * 1103515245 + 12345) % 2**31
            row.append(words[x % len(words)])
        out.append(" ".join(row) + f" {1000 + (x % 9000)}.")
    return out


def draw_dense(path, seed=1):
    """A letter page at 300 dpi (2480x3508) of 60 lines of small text."""
    args = ["convert", "-size", "2480x3508", "xc:white", "-fill", "black", "-font", "DejaVu-Sans",
            "-pointsize", "30"]
    for i, line in enumerate(dense_lines(60, seed)):
        args += ["-annotate", f"+120+{150 + 55 * i}", line]
    subprocess.run(args + ["-colorspace", "Gray", "-depth", "8", path], check=True,
                   capture_output=True)


def pdf_of_jpegs(pages, dpi=150):
    """A PDF whose pages are JPEG images (/DCTDecode): pages is a list of (jpeg bytes, width,
    height, components), or of (None, width_pt, height_pt, 0) for a blank page of that size."""
    objs = []  # bodies; object n is objs[n - 1]
    kids = []
    objs.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objs.append(None)  # the page tree, once the kids are known
    for jpeg, w, h, comps in pages:
        if jpeg is None:
            content = b""
            res = b"<< >>"
            wpt, hpt = w, h
        else:
            wpt, hpt = w * 72.0 / dpi, h * 72.0 / dpi
            cs = b"/DeviceGray" if comps == 1 else b"/DeviceRGB"
            objs.append(b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace %s "
                        b"/BitsPerComponent 8 /Filter /DCTDecode /Length %d >>\nstream\n"
                        % (w, h, cs, len(jpeg)) + jpeg + b"\nendstream")
            img = len(objs)
            content = b"q %.2f 0 0 %.2f 0 0 cm /Im0 Do Q" % (wpt, hpt)
            res = b"<< /XObject << /Im0 %d 0 R >> >>" % img
        objs.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
        contents = len(objs)
        objs.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.2f %.2f] /Resources %s "
                    b"/Contents %d 0 R >>" % (wpt, hpt, res, contents))
        kids.append(len(objs))
    objs[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def jpeg_page(path):
    with open(path, "rb") as f:
        data = f.read()
    out = subprocess.run(["identify", "-format", "%w %h %[channels]", path], check=True,
                         capture_output=True, text=True).stdout.split()
    return data, int(out[0]), int(out[1]), 1 if out[2].startswith("gray") else 3


def png_chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))


def png_declaring(width, height):
    """A small PNG whose header says width x height (8-bit grey): a decompression bomb's
    shape; its data would fill 100 000 x 100 000 bytes if anyone decoded it."""
    raw = zlib.compress(b"\0" * (1 << 16), 9)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                                   0, 0, 0))
            + png_chunk(b"IDAT", raw) + png_chunk(b"IEND", b""))


def tiff_declaring(width, height):
    """A little-endian TIFF of one uncompressed 8-bit grey strip that claims width x height."""
    n = 9
    strip_at = 8 + 2 + 12 * n + 4  # header, entry count, entries, next-IFD offset
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
               (273, 4, strip_at), (277, 3, 1), (278, 4, height), (279, 4, 64)]
    ifd = struct.pack("<H", n)
    for tag, typ, value in entries:
        fmt = "<HHIHH" if typ == 3 else "<HHII"
        ifd += struct.pack(fmt, tag, typ, 1, value, 0) if typ == 3 else struct.pack(
            fmt, tag, typ, 1, value)
    return b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + b"\x80" * 64


def run(files, *opts, env=None):
    """ocr_driver opts files -> the list of results (dicts), and the wall time in ms."""
    t0 = time.monotonic()
    p = subprocess.run([DRIVER, *opts, *files], capture_output=True, text=True,
                       timeout=300 * SLOW, env=env)
    ms = (time.monotonic() - t0) * 1000
    if p.returncode != 0:
        raise AssertionError(f"ocr_driver exited {p.returncode}: {p.stderr[-2000:]}")
    true("ERROR: AddressSanitizer" not in p.stderr, p.stderr[-3000:])
    return [json.loads(line) for line in p.stdout.splitlines()], ms


def one(path, *opts, env=None):
    res, _ = run([path], *opts, env=env)
    eq(len(res), 1, "results")
    return res[0]


def words(text):
    return re.findall(r"[a-z0-9]+", text.lower())


def has_in_order(text, expected):
    """Each phrase's words appear in text, every phrase after the previous one."""
    w = words(text)
    pos = 0
    for phrase in expected:
        want = words(phrase)
        found = -1
        for i in range(pos, len(w) - len(want) + 1):
            if w[i:i + len(want)] == want:
                found = i
                break
        if found < 0:
            return False
        pos = found + len(want)
    return True


def ok(r, expected, pages):
    eq(r["rc"], 0, f"rc ({r['error']})")
    eq(r["pages"], pages, "pages")
    true(has_in_order(r["text"], expected), f"{expected} not in order in {r['text']!r}")
    true(r["confidence"] > 50, f"confidence {r['confidence']}")


def refused(r, pattern, ms_limit=HOSTILE_MS):
    eq(r["rc"], -1, f"rc ({r['error']})")
    true(re.search(pattern, r["error"], re.I), f"error {r['error']!r} does not say {pattern}")
    true(r["ms"] < ms_limit, f"took {r['ms']} ms")
    true(r["text"] is None, "no text with an error")


def setup():
    d = tempfile.mkdtemp(prefix="suite-ocr-")
    f = {"dir": d}
    tmp = os.path.join(d, "tmp")
    os.mkdir(tmp)
    os.environ["TMPDIR"] = tmp  # the driver's PDF work directories, checked empty after
    os.environ["OMP_THREAD_LIMIT"] = "1"

    def p(name):
        return os.path.join(d, name)
    f["png"] = p("page.png")
    draw(f["png"], PAGES["png"])
    f["jpeg"] = p("page.jpg")
    draw(f["jpeg"], PAGES["jpeg"])
    tiff_pages = []
    for i, lines in enumerate(PAGES["tiff"]):
        tiff_pages.append(p(f"t{i}.png"))
        draw(tiff_pages[-1], lines, height=400)
    f["tiff"] = p("pages.tif")
    subprocess.run(["convert", *tiff_pages, f["tiff"]], check=True, capture_output=True)
    jpegs = []
    for i, lines in enumerate(PAGES["pdf"] + [["extra page 5555"], ["extra page 6666"]]):
        jpegs.append(p(f"pdf{i}.jpg"))
        draw(jpegs[-1], lines, height=500)
    pdf = pdf_of_jpegs([jpeg_page(j) for j in jpegs[:2]])
    f["pdf"] = p("doc.pdf")
    with open(f["pdf"], "wb") as out:
        out.write(pdf)
    f["pdf4"] = p("four.pdf")
    with open(f["pdf4"], "wb") as out:
        out.write(pdf_of_jpegs([jpeg_page(j) for j in jpegs]))
    f["pdf_trunc"] = p("truncated.pdf")
    with open(f["pdf_trunc"], "wb") as out:
        out.write(pdf[:len(pdf) // 3])
    f["pdf_huge"] = p("huge.pdf")
    with open(f["pdf_huge"], "wb") as out:
        out.write(pdf_of_jpegs([(None, 14400, 14400, 0)]))
    f["text_pdf"] = p("notes.pdf")
    with open(f["text_pdf"], "w") as out:
        out.write("invoice 4217 harbour\nthis is a text file, not a PDF\n")
    with open(f["png"], "rb") as src:
        good = src.read()
    f["png_corrupt"] = p("corrupt.png")
    idat = good.index(b"IDAT")
    with open(f["png_corrupt"], "wb") as out:
        out.write(good[:idat + 8] + bytes((b * 7 + 13) & 0xff for b in good[idat + 8:]))
    f["png_trunc"] = p("truncated.png")
    with open(f["png_trunc"], "wb") as out:
        out.write(good[:len(good) // 2])
    f["png_bomb"] = p("bomb.png")
    with open(f["png_bomb"], "wb") as out:
        out.write(png_declaring(100000, 100000))
    f["png_wide"] = p("wide.png")
    with open(f["png_wide"], "wb") as out:
        out.write(png_declaring(30000, 10))
    f["tiff_bomb"] = p("bomb.tif")
    with open(f["tiff_bomb"], "wb") as out:
        out.write(tiff_declaring(60000, 60000))
    f["blank"] = p("blank.png")
    subprocess.run(["convert", "-size", "800x600", "xc:white", "-depth", "8", f["blank"]],
                   check=True)
    f["rgba"] = p("transparent.png")
    draw(f["rgba"], ["ledger 7781 orchard"], background="none", rgba=True)
    f["dense"] = p("dense.png")
    draw_dense(f["dense"])
    f["dense_pdf"] = p("dense.pdf")
    dense_jpg = p("dense.jpg")
    subprocess.run(["convert", f["dense"], "-quality", "90", dense_jpg], check=True)
    with open(f["dense_pdf"], "wb") as out:
        out.write(pdf_of_jpegs([jpeg_page(dense_jpg)] * 3, dpi=300))
    return f


def teardown(f):
    shutil.rmtree(f["dir"], ignore_errors=True)


def tmp_left(f):
    return os.listdir(os.path.join(f["dir"], "tmp"))


@test
def png_words_come_back(f):
    ok(one(f["png"]), PAGES["png"], 1)


@test
def jpeg_words_come_back(f):
    ok(one(f["jpeg"]), PAGES["jpeg"], 1)


@test
def tiff_three_pages_in_order(f):
    r = one(f["tiff"])
    ok(r, [line for page in PAGES["tiff"] for line in page], 3)
    eq(r["text"].count("\f\n"), 2, "page separators")
    parts = r["text"].split("\f\n")
    for part, lines in zip(parts, PAGES["tiff"]):
        true(has_in_order(part, lines), f"{lines} not on its own page: {part!r}")


@test
def pdf_two_pages_in_order(f):
    r = one(f["pdf"])
    ok(r, [line for page in PAGES["pdf"] for line in page], 2)
    first, second = r["text"].split("\f\n")
    true(has_in_order(first, PAGES["pdf"][0]), f"page 1: {first!r}")
    true(has_in_order(second, PAGES["pdf"][1]), f"page 2: {second!r}")
    eq(tmp_left(f), [], "files left in TMPDIR")


@test
def magic_bytes_decide_over_content_type(f):
    ok(one(f["png"], "-c", "application/pdf"), PAGES["png"], 1)
    ok(one(f["pdf"], "-c", "image/png"), [line for page in PAGES["pdf"] for line in page], 2)


@test
def engine_reused_and_recreated(f):
    res, _ = run([f["png"], f["jpeg"], f["png"]])
    for r, lines in zip(res, [PAGES["png"], PAGES["jpeg"], PAGES["png"]]):
        ok(r, lines, 1)
    res, _ = run([f["png"], f["jpeg"]], "-e")  # ocr_thread_end between the jobs
    ok(res[0], PAGES["png"], 1)
    ok(res[1], PAGES["jpeg"], 1)


@test
def openmp_stays_on_the_calling_thread(f):
    # Without OMP_THREAD_LIMIT in the environment, libgomp would start a thread per core for
    # Tesseract's LSTM and a page would take several times longer; ocr.c keeps it serial.
    env = dict(os.environ)
    env.pop("OMP_THREAD_LIMIT", None)
    r = one(f["png"], env=env)
    ok(r, PAGES["png"], 1)
    eq(r["threads"], 1, "threads in the process after a page")


@test
def transparent_background_reads_as_white(f):
    ok(one(f["rgba"]), ["ledger 7781 orchard"], 1)


@test
def blank_page_is_empty_text(f):
    r = one(f["blank"])
    eq(r["rc"], 0, f"rc ({r['error']})")
    eq(r["pages"], 1, "pages")
    eq(r["text"].strip(), "", "text")
    eq(r["confidence"], 0.0, "confidence without text")


@test
def corrupt_png_refused(f):
    refused(one(f["png_corrupt"]), r"PNG")
    refused(one(f["png_trunc"]), r"PNG")


@test
def truncated_pdf_refused(f):
    refused(one(f["pdf_trunc"]), r"PDF")
    eq(tmp_left(f), [], "files left in TMPDIR")


@test
def text_named_pdf_refused(f):
    refused(one(f["text_pdf"], "-c", "application/pdf"), r"unsupported file type.*application/pdf")


@test
def too_many_pages_refused(f):
    refused(one(f["pdf4"], "-p", "3"), r"more than 3 pages \(the PDF has 4\)")
    ok(one(f["pdf4"], "-p", "4"), ["invoice 4217 harbour", "delivery 9034 granite",
                                   "extra page 5555", "extra page 6666"], 4)
    refused(one(f["tiff"], "-p", "2"), r"more than 2 pages \(the TIFF has 3\)")


@test
def huge_declared_sizes_refused(f):
    refused(one(f["png_bomb"]), r"too large: 100000x100000")
    refused(one(f["png_wide"]), r"too large: 30000x10")
    refused(one(f["tiff_bomb"]), r"too large: 60000x60000")
    refused(one(f["pdf_huge"]), r"page 1 is too large: 60001x60001")
    eq(tmp_left(f), [], "files left in TMPDIR")


@test
def empty_and_missing_files_refused(f):
    empty = os.path.join(f["dir"], "empty.png")
    open(empty, "wb").close()
    refused(one(empty), r"empty")
    refused(one(os.path.join(f["dir"], "nothing.png")), r"No such file")
    refused(one(f["dir"]), r"not a regular file")


@test
def unknown_language_is_transient(f):
    r = one(f["png"], "-l", "xx_nonexistent")
    eq(r["rc"], -2, f"rc ({r['error']})")
    true("xx_nonexistent" in r["error"], r["error"])


@test
def timeout_while_reading_a_page(f):
    full = one(f["dense"])
    eq(full["rc"], 0, f"rc ({full['error']})")
    true(full["ms"] > 1000, f"a dense page takes time: {full['ms']} ms")
    r = one(f["dense"], "-t", "300")
    refused(r, r"timed out after 300 ms \(reading page 1\)", ms_limit=300 + 2000 * SLOW)


@test
def timeout_while_rendering_a_pdf(f):
    # 3 dense pages at 600 dpi: pdftoppm alone needs far more than 400 ms.
    r = one(f["dense_pdf"], "-t", "400", "-d", "600")
    refused(r, r"timed out after 400 ms", ms_limit=400 + 2000 * SLOW)
    eq(tmp_left(f), [], "files left in TMPDIR")
    left = subprocess.run(["pgrep", "-f", f["dense_pdf"]], capture_output=True, text=True)
    eq(left.stdout.strip(), "", "pdftoppm still running")


@test
def pdf_multi_page_timeout_between_pages(f):
    # Enough time for rendering and some of the pages, not for all three.
    full = one(f["dense_pdf"])
    eq(full["rc"], 0, f"rc ({full['error']})")
    eq(full["pages"], 3, "pages")
    budget = int(full["ms"] * 0.6)
    r = one(f["dense_pdf"], "-t", str(budget))
    refused(r, r"timed out after %d ms" % budget, ms_limit=budget + 2000 * SLOW)


if __name__ == "__main__":
    main("ocr", setup, teardown)
