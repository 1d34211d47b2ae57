#!/usr/bin/env bash
# bench/ocr.sh: OCR pages per second on the same pages, side by side: N generated A4 pages of
# dense text at 300 dpi (PNG) plus a 2-page PDF of two more (JPEG images), N + 2 pages in all:
#   (a) worker-ocr's ocr_file in one process, model kept loaded (bench/ocr_bench, 1 thread)
#   (b) the tesseract CLI once per page (OMP_THREAD_LIMIT=1 --psm 6; the PDF through
#       pdftoppm -r 300 -gray first), one after the other, then 2 at once
#   (c) ocrmypdf (-j 1, then -j 2) on a PDF of the N pages (img2pdf, lossless) and on the
#       2-page PDF, text only (--output-type none --sidecar)
#   (d) ocr_file on 2 threads of one process, and in 2 processes of 1 thread each
# Each line: pages, wall seconds, pages/s, CPU seconds a page (user + system of everything the
# run started; for (a)/(d) in-process, of the timed part), and the share of the pages' words
# found in order (word recall). The machine's other load shows in wall time, less in CPU.
# Usage: bench/ocr.sh [N] (default 6). Prints a summary; bench/run saves it under bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps ocrmypdf >/dev/null
root=$(pwd)
build=${SUITE_BUILD:-$root/build}
n=${1:-6}
bench=$build/bench/ocr_bench
[ -x "$bench" ] || { echo "bench: build first ($bench missing)" >&2; exit 1; }
cores=$(getconf _NPROCESSORS_ONLN) # before OMP_THREAD_LIMIT, which nproc obeys
export OMP_THREAD_LIMIT=1

tmp=$(mktemp -d /tmp/bench-ocr.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
python3 bench/ocr_pages.py "$tmp" "$n"
pngs=()
for i in $(seq "$n"); do pngs+=("$tmp/page-$i.png"); done
pages=$((n + 2))
# The PDF first: with 2 threads, its 2 pages run while the other thread takes single pages.
files=("$tmp/doc.pdf" "${pngs[@]}")
/usr/bin/python3 -c 'import img2pdf, sys; open(sys.argv[1], "wb").write(img2pdf.convert(sys.argv[2:]))' \
    "$tmp/pages.pdf" "${pngs[@]}"

# recall TEXTFILE: the share of truth.txt's words found in TEXTFILE, in order.
recall() {
    python3 - "$tmp/truth.txt" "$1" <<'EOF'
import difflib, re, sys
truth, got = (re.findall(r"[a-z0-9]+", open(p).read().lower()) for p in sys.argv[1:3])
m = difflib.SequenceMatcher(None, truth, got, autojunk=False)
print(f"{100.0 * sum(b.size for b in m.get_matching_blocks()) / len(truth):.1f}%")
EOF
}

line() { # name pages wall cpu recall
    awk -v n="$1" -v p="$2" -v r="$3" -v c="$4" -v w="$5" 'BEGIN {
        printf "%-46s %3d pages %7.2f s %7.3f pages/s %6.2f CPU s/page  recall %s\n",
               n, p, r, p / r, c / p, w }'
}

# measure NAME TEXTFILE CMD...: runs CMD, prints its line (CPU: user + sys of CMD and children).
measure() {
    local name=$1 text=$2 t real user sys
    shift 2
    local TIMEFORMAT='%R %U %S'
    t=$({ time "$@" >>"$tmp/log" 2>&1; } 2>&1) || { echo "$name failed:" >&2; tail -20 "$tmp/log" >&2; exit 1; }
    read -r real user sys <<<"$t"
    line "$name" "$pages" "$real" "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" \
        "$(recall "$text")"
}

# ours RESULT_LINE NAME TEXTFILE: the line of an ocr_bench result.
ours() {
    local secs cpu
    secs=$(sed -E 's/.*seconds=([0-9.]+).*/\1/' <<<"$1")
    cpu=$(sed -E 's/.*cpu_s_per_page=([0-9.]+).*/\1/' <<<"$1")
    line "$2" "$pages" "$secs" "$(awk -v c="$cpu" -v p="$pages" 'BEGIN { print c * p }')" \
        "$(recall "$3")"
}

cli_all() { # PARALLEL
    pdftoppm -r 300 -gray -png "$tmp/doc.pdf" "$tmp/cli-pdf"
    printf '%s\n' "$tmp"/cli-pdf-*.png "${pngs[@]}" | sort -V |
        xargs -P "$1" -I{} sh -c 'tesseract "$1" "${1%.png}" --psm 6 -l eng quiet' _ {}
    cat "$tmp"/page-*.txt > "$tmp/cli.txt"
    cat "$tmp"/cli-pdf-*.txt >> "$tmp/cli.txt"
}
ocrmypdf_all() { # JOBS
    ocrmypdf -q -j "$1" -l eng --tesseract-pagesegmode 6 --output-type none \
        --sidecar "$tmp/omp-pages.txt" "$tmp/pages.pdf" -
    ocrmypdf -q -j "$1" -l eng --tesseract-pagesegmode 6 --output-type none \
        --sidecar "$tmp/omp-doc.txt" "$tmp/doc.pdf" -
    cat "$tmp/omp-pages.txt" "$tmp/omp-doc.txt" > "$tmp/omp.txt"
}

echo "OCR of $pages pages (A4, 300 dpi, 60 lines of text each: $n PNG + a 2-page PDF), $cores cores, load average$(sed -E 's/^(\S+ \S+ \S+).*/ \1/' /proc/loadavg) at the start"
# texts PREFIX: the texts ocr_bench wrote, in the pages' order, into PREFIX.txt
texts() {
    local f
    for f in "${pngs[@]}" "$tmp/doc.pdf"; do cat "$1$(basename "$f").txt"; done > "$1.txt"
}
r=$("$bench" -j 1 -w "$tmp/warm.png" -o "$tmp/ours1-" "${files[@]}")
texts "$tmp/ours1-"
ours "$r" "(a) ocr_file, 1 thread, model loaded" "$tmp/ours1-.txt"
measure "(b) tesseract CLI per page, 1 at a time" "$tmp/cli.txt" cli_all 1
measure "(c) ocrmypdf -j 1 (text only)" "$tmp/omp.txt" ocrmypdf_all 1
r=$("$bench" -j 2 -w "$tmp/warm.png" -o "$tmp/ours2-" "${files[@]}")
texts "$tmp/ours2-"
ours "$r" "(d) ocr_file, 2 threads, one process" "$tmp/ours2-.txt"
two_procs() {
    "$bench" -j 1 -o "$tmp/ours3-" "$tmp/doc.pdf" "${pngs[@]:0:2}" &
    local a=$!
    "$bench" -j 1 -o "$tmp/ours3-" "${pngs[@]:2}"
    wait "$a"
    texts "$tmp/ours3-"
}
measure "(d) ocr_file, 2 processes of 1 thread" "$tmp/ours3-.txt" two_procs
measure "(b) tesseract CLI per page, 2 at once" "$tmp/cli.txt" cli_all 2
measure "(c) ocrmypdf -j 2 (text only)" "$tmp/omp.txt" ocrmypdf_all 2
