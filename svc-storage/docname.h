/* docname: a client's file name made safe to store and to send back: the sanitized name
 * (what the API shows), the Content-Disposition header of a download, and the HTTP Range
 * header of a download. Client names never become paths (files are stored by id). */
#ifndef STORAGE_DOCNAME_H
#define STORAGE_DOCNAME_H

#include <stddef.h>
#include <stdint.h>

/* Longest sanitized name in bytes (never splitting a UTF-8 character). */
#define DOCNAME_MAX 200

/* Writes the sanitized form of in[0..len) to out (cap >= DOCNAME_MAX + 1): the last path
 * component ('/' and '\\' both separate), valid UTF-8 (ill-formed bytes become U+FFFD), no
 * control characters (C0, DEL, C1), no quotes, blanks and dots trimmed at both ends, at most
 * DOCNAME_MAX bytes; "document" when nothing is left. */
void docname_sanitize(const char *in, size_t len, char *out, size_t cap);

/* The Content-Disposition value for a sanitized name: attachment; filename="<ASCII, every
 * other character as '_'>"; filename*=UTF-8''<percent-encoded> (RFC 6266 / 8187). out needs
 * DOCNAME_DISPOSITION_MAX bytes. */
#define DOCNAME_DISPOSITION_MAX (48 + 4 * DOCNAME_MAX)
void docname_disposition(const char *name, char *out, size_t cap);

/* A Range header against a file of size bytes: 0 serve it whole (no header, not "bytes=", a
 * malformed or multi-range value: RFC 9110 lets a server ignore those), 1 one satisfiable
 * range [*start, *end] (inclusive), -1 unsatisfiable (416). */
int docname_range(const char *header, int64_t size, int64_t *start, int64_t *end);

#endif
