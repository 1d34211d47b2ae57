/* xalloc: the suite's one allocator wrapper and its out-of-memory policy.
 *
 * Policy (as Redis's zmalloc): an allocation that fails is not an error a caller handles; the
 * process writes one line to stderr ("out of memory allocating N bytes") and aborts. A service
 * that cannot allocate a few hundred bytes cannot answer anything sensibly, and the process
 * supervisor restarts it; an error path for every malloc would be untested code. So none of
 * these returns NULL (except xstrdup(NULL)), and callers never check.
 *
 * Size 0 asks for 1 byte, so that a zero-length request never returns NULL either. Errors that
 * are not out-of-memory (a size that overflows, a bad input) stay the caller's to report. */
#ifndef XALLOC_H
#define XALLOC_H

#include <stddef.h>

/* Reports the failed allocation of n bytes and aborts. */
void xalloc_oom(size_t n) __attribute__((noreturn));

void *xmalloc(size_t n);
/* Zeroed; nmemb * size is checked for overflow (which also aborts). */
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
/* A copy of s; xstrdup(NULL) is NULL. */
char *xstrdup(const char *s);
/* The n bytes at s (all readable; no NUL needed) copied and NUL-terminated. */
char *xstrndup(const char *s, size_t n);

/* Memory kept for reuse (a free list of objects with their buffers) is off limits until it is
 * handed out again: under AddressSanitizer a use of it is reported as a use after free would
 * be; elsewhere these do nothing. */
#if defined(__SANITIZE_ADDRESS__)
#define XALLOC_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define XALLOC_ASAN 1
#endif
#endif
#ifdef XALLOC_ASAN
#include <sanitizer/asan_interface.h>
#define xalloc_retire(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define xalloc_revive(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define xalloc_retire(p, n) ((void)(p), (void)(n))
#define xalloc_revive(p, n) ((void)(p), (void)(n))
#endif

#endif
