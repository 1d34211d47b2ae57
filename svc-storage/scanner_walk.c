/* scanner_walk: the files under the scanned folder. Symlinks are followed; every folder is
 * entered once (by device and inode), so a link back to a parent ends instead of looping. */
#include "scanner.h"

#include "xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct walk_seen {
    dev_t *dev;
    ino_t *ino;
    size_t n, cap;
} walk_seen;

/* 1 when the folder was entered before; else remembers it and returns 0. */
static int walk_seen_add(walk_seen *s, const struct stat *st)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->dev[i] == st->st_dev && s->ino[i] == st->st_ino)
            return 1;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->dev = xrealloc(s->dev, s->cap * sizeof *s->dev);
        s->ino = xrealloc(s->ino, s->cap * sizeof *s->ino);
    }
    s->dev[s->n] = st->st_dev;
    s->ino[s->n] = st->st_ino;
    s->n++;
    return 0;
}

scanner_file *scanner_files_add(scanner_files *fs, const char *path, const char *rel, uint64_t size,
                                scanner_result result, const char *detail)
{
    if (fs->n == fs->cap) {
        fs->cap = fs->cap ? fs->cap * 2 : 64;
        fs->v = xrealloc(fs->v, fs->cap * sizeof *fs->v);
    }
    scanner_file *f = &fs->v[fs->n++];
    memset(f, 0, sizeof *f);
    f->path = xstrdup(path);
    f->rel = xstrdup(rel);
    f->size = size;
    f->result = result;
    f->detail = xstrdup(detail);
    return f;
}

void scanner_files_free(scanner_files *fs)
{
    for (size_t i = 0; i < fs->n; i++) {
        free(fs->v[i].path);
        free(fs->v[i].rel);
        free(fs->v[i].detail);
    }
    free(fs->v);
    memset(fs, 0, sizeof *fs);
}

static char *walk_join(const char *a, const char *b)
{
    if (!*a)
        return xstrdup(b);
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

static int walk_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void walk_dir(const char *path, const char *rel, int hidden, walk_seen *seen,
                     scanner_files *out)
{
    DIR *d = opendir(path);
    if (!d) {
        char why[256];
        snprintf(why, sizeof why, "cannot open the folder: %s", strerror(errno));
        scanner_files_add(out, path, *rel ? rel : ".", 0, SCANNER_FAILED, why);
        return;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (e->d_name[0] == '.' && !hidden)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            names = xrealloc(names, cap * sizeof *names);
        }
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, walk_cmp);
    for (size_t i = 0; i < n; i++) {
        char *p = walk_join(path, names[i]);
        char *r = walk_join(rel, names[i]);
        struct stat st;
        if (stat(p, &st) != 0) {
            char why[256];
            snprintf(why, sizeof why, "cannot read: %s", strerror(errno));
            scanner_files_add(out, p, r, 0, SCANNER_FAILED, why);
        } else if (S_ISDIR(st.st_mode)) {
            if (!walk_seen_add(seen, &st))
                walk_dir(p, r, hidden, seen, out);
        } else if (S_ISREG(st.st_mode)) {
            scanner_files_add(out, p, r, (uint64_t)st.st_size, SCANNER_PENDING, NULL);
        }
        free(p);
        free(r);
        free(names[i]);
    }
    free(names);
}

int scanner_walk(const char *dir, int hidden, scanner_files *out)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        fprintf(stderr, "scanner: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "scanner: %s is not a folder\n", dir);
        return -1;
    }
    walk_seen seen = {0};
    walk_seen_add(&seen, &st);
    walk_dir(dir, "", hidden, &seen, out);
    free(seen.dev);
    free(seen.ino);
    return 0;
}
