/* xalloc: malloc, calloc, realloc and strdup that abort with a line on stderr when memory runs
 * out (the policy is in xalloc.h). */
#include "xalloc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void xalloc_oom(size_t n)
{
    /* No allocation here: stderr is unbuffered and fprintf of a number needs no heap. */
    fprintf(stderr, "out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        xalloc_oom(n);
    return p;
}

void *xcalloc(size_t nmemb, size_t size)
{
    if (size && nmemb > SIZE_MAX / size)
        xalloc_oom(SIZE_MAX);
    size_t n = nmemb * size;
    void *p = calloc(1, n ? n : 1);
    if (!p)
        xalloc_oom(n);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        xalloc_oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = xmalloc(n);
    memcpy(d, s, n);
    return d;
}

char *xstrndup(const char *s, size_t n)
{
    if (n == SIZE_MAX)
        xalloc_oom(n);
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}
