/* objstore: the archive object store, a directory (file:///abs/dir) or an S3 bucket
 * (s3://bucket on S3_ENDPOINT, path-style, SigV4 through libcurl). Keys are "<org>/<doc>".
 *
 * Configuration: ARCHIVE_URL (default file:// of STORAGE_DIR/archive), S3_ENDPOINT,
 * S3_REGION (us-east-1), S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY (both also _FILE).
 * Every call blocks (call it from uv_queue_work or a worker thread) and is thread-safe: the
 * store is read-only after objstore_new_from_env and each call uses its own curl handle.
 * Error messages never contain the secret key. */
#ifndef COMMON_OBJSTORE_H
#define COMMON_OBJSTORE_H

#include <stddef.h>

typedef struct objstore objstore;

/* Reads the configuration; storage_dir is STORAGE_DIR (the default archive is its archive/
 * folder; NULL means var/storage). NULL with err on a bad setting. */
objstore *objstore_new_from_env(const char *storage_dir, char *err, size_t errlen);
void objstore_free(objstore *s);

/* Uploads the file at path as key (streamed, x-amz-content-sha256 = its real hash), then
 * checks with HEAD that the size matches. Writes the location ("s3://bucket/key" or
 * "file:///abs/path"). 0, or -1 with err. */
int objstore_put_file(objstore *s, const char *key, const char *path, char *location, size_t loclen,
                      char *err, size_t errlen);
/* Downloads key into dest_path (written to dest_path.tmp then renamed). 0, -1 err, 1 no such
 * key. */
int objstore_get_file(objstore *s, const char *key, const char *dest_path, char *err,
                      size_t errlen);
/* Deletes key; a missing key is success. 0 or -1 with err. */
int objstore_delete(objstore *s, const char *key, char *err, size_t errlen);

/* 1 when key is "<a>/<b>", each part 1-128 of [0-9a-zA-Z._-], not starting with '.' and
 * without "..". */
int objstore_key_valid(const char *key);

#endif
