/* sniff: the type of an uploaded file decided by its first bytes (magic numbers), never by
 * its name or the client's Content-Type: PNG, JPEG, TIFF (both byte orders) and PDF. */
#ifndef STORAGE_SNIFF_H
#define STORAGE_SNIFF_H

#include <stddef.h>

/* Bytes of the file's head that decide every type. */
#define SNIFF_NEED 8

/* The MIME type of a file starting with head[0..len) (len: SNIFF_NEED, or the whole file when
 * shorter), or NULL when it is not one of the stored types. */
const char *sniff_type(const void *head, size_t len);

#endif
