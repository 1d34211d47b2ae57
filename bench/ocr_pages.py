"""ocr_pages: the pages bench/ocr.sh reads, drawn with tests/integration/test_ocr.py's helpers.
    python3 bench/ocr_pages.py DIR N
writes DIR/page-1.png .. page-N.png (A4 at 300 dpi, 60 lines of dense text each),
DIR/doc.pdf (2 more such pages as JPEG images in a PDF), DIR/warm.png (a small page) and
DIR/truth.txt (the words of all N + 2 pages, for a word-recall figure)."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import test_ocr  # noqa: E402


def main():
    out, n = sys.argv[1], int(sys.argv[2])
    truth = []
    for i in range(1, n + 1):
        test_ocr.draw_dense(os.path.join(out, f"page-{i}.png"), seed=i)
        truth += test_ocr.dense_lines(60, i)
    jpegs = []
    for i in (n + 1, n + 2):
        png = os.path.join(out, f"pdfpage-{i}.png")
        test_ocr.draw_dense(png, seed=i)
        truth += test_ocr.dense_lines(60, i)
        jpegs.append(os.path.join(out, f"pdfpage-{i}.jpg"))
        subprocess.run(["convert", png, "-quality", "90", jpegs[-1]], check=True)
        os.unlink(png)
    with open(os.path.join(out, "doc.pdf"), "wb") as f:
        f.write(test_ocr.pdf_of_jpegs([test_ocr.jpeg_page(j) for j in jpegs], dpi=300))
    test_ocr.draw(os.path.join(out, "warm.png"), ["warm up 1234"], height=300)
    with open(os.path.join(out, "truth.txt"), "w") as f:
        f.write("\n".join(truth) + "\n")


if __name__ == "__main__":
    main()
