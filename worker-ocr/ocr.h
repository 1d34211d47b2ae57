/* ocr: the text of a stored document (PNG, JPEG, TIFF with its pages, PDF) through Tesseract's
 * C API. Blocking: call it on a worker thread, never on an event loop.
 *
 * - The file's type is decided by its magic bytes; content_type is only used in messages when
 *   the bytes are of no supported type (a PNG uploaded as "application/pdf" is read as a PNG).
 * - One TessBaseAPI per thread, created on the thread's first job (Init3, about 0.1 s) and kept
 *   for the next ones; re-initialised only when lang or tessdata change. ocr_thread_end frees
 *   it (it is also freed when the thread exits).
 * - Tesseract's OpenMP is kept to the calling thread (omp_set_max_active_levels(0) on each
 *   thread's first use): with OpenMP's own threads a page takes 13-19 s on 2 cores instead of
 *   2-3 s. OMP_THREAD_LIMIT=1 has the same effect but libgomp reads it when the library is
 *   loaded, before main, so a main cannot set it for itself; deploy may still set it.
 * - PDFs are rendered with poppler's pdftoppm (`-r dpi -gray -png`) into a private directory
 *   under TMPDIR (default /tmp), after `pdfinfo` gave the page count and sizes. Both run as
 *   subprocesses in their own process group, killed with it when the job's time is over. The
 *   process must not ignore SIGCHLD (waitpid reaps them).
 * - Refused before any decoding: more than max_pages pages, a page over 20000 pixels a side or
 *   100 megapixels (from the image header, or the PDF page size at dpi).
 * - confidence: the mean of the pages' Tesseract MeanTextConf, each page weighted by the
 *   number of non-space characters it gave (a blank page does not count; no text at all: 0). */
#ifndef WORKER_OCR_OCR_H
#define WORKER_OCR_OCR_H

typedef struct ocr_opts {
    const char *lang;     /* "eng" */
    const char *tessdata; /* NULL: default */
    int psm;              /* 6 */
    int dpi;              /* 300 for PDFs */
    int max_pages;        /* 50 */
    unsigned timeout_ms;  /* per job: 300000 */
} ocr_opts;
void ocr_opts_default(ocr_opts *o);

typedef struct ocr_result {
    char *text;        /* UTF-8, pages in order, separated by "\f\n" */
    double confidence; /* mean 0..100 */
    int pages;
    char error[256];
} ocr_result;

/* 0 ok; -1 the file cannot be read (corrupt, hostile, too many pages, timed out: error says
 * which; retrying will not help); -2 a transient failure (out of memory, tesseract init). */
int ocr_file(const char *path, const char *content_type, const ocr_opts *o, ocr_result *r);
void ocr_result_free(ocr_result *r);
/* Frees this thread's TessBaseAPI (one per thread, created on first use, reused). */
void ocr_thread_end(void);

#endif
