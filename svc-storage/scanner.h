/* scanner: the pieces of the `scanner` command (walk a folder, upload what the organization
 * does not have yet to svc-storage through libcurl's multi interface, show progress). */
#ifndef SCANNER_H
#define SCANNER_H

#include <stddef.h>
#include <stdint.h>

typedef struct scanner_opts {
    const char *url; /* base URL, no trailing '/' */
    const char *api_key;
    int jobs;           /* transfers at once */
    const char *cacert; /* NULL: the system's */
    int insecure;
    int dry_run;
    int hidden; /* also files and folders whose name starts with '.' */
    int tty;    /* progress bar instead of one line per file */
} scanner_opts;

typedef enum {
    SCANNER_PENDING = 0,
    SCANNER_UPLOADED,
    SCANNER_SKIPPED,   /* the organization already has these bytes */
    SCANNER_DUPLICATE, /* same bytes as another file of this scan, or the server said so */
    SCANNER_WOULD_UPLOAD,
    SCANNER_FAILED,
} scanner_result;

typedef struct scanner_file {
    char *path; /* as opened */
    char *rel;  /* relative to the scanned folder, for messages */
    uint64_t size;
    char sha256[65]; /* "" until hashed */
    scanner_result result;
    char *detail; /* document id, the file it duplicates, or why it failed */
} scanner_file;

typedef struct scanner_files {
    scanner_file *v;
    size_t n, cap;
} scanner_files;

/* scanner_walk.c: every regular file under dir (symlinks followed, each folder once so link
 * loops end; names starting with '.' skipped unless hidden), sorted by path. A folder or file
 * that cannot be read is added as already failed. 0, or -1 when dir itself is not a readable
 * folder (message on stderr). */
int scanner_walk(const char *dir, int hidden, scanner_files *out);
void scanner_files_free(scanner_files *fs);
/* Adds a file; detail may be NULL. Returns it. */
scanner_file *scanner_files_add(scanner_files *fs, const char *path, const char *rel, uint64_t size,
                                scanner_result result, const char *detail);

/* scanner_xfer.c: checks and uploads every pending file, o->jobs at once. Sets each file's
 * result and detail. 0, or -1 when libcurl cannot start. */
int scanner_transfer(const scanner_opts *o, scanner_files *fs);

/* scanner_out.c: what the user sees. */
void scanner_out_start(const scanner_opts *o, const scanner_files *fs);
/* A file got its result. */
void scanner_out_file(const scanner_file *f);
/* A try failed and the next one comes in wait_ms (shown without a terminal only); next_try 0:
 * a rate limit (429) is waited out without using a try. */
void scanner_out_retry(const scanner_file *f, const char *why, int next_try, int tries,
                       uint64_t wait_ms);
/* bytes of the current uploads sent so far (the bar's byte count between results). */
void scanner_out_progress(uint64_t inflight_bytes);
/* The summary; returns the number of failed files. */
size_t scanner_out_summary(const scanner_files *fs);

#endif
