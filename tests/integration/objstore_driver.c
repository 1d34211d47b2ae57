/* objstore_driver: common/objstore from the command line, for tests/integration/test_objstore.py.
 *   objstore_driver put KEY PATH     prints the location
 *   objstore_driver get KEY DEST
 *   objstore_driver delete KEY
 * Configuration from the environment (ARCHIVE_URL, S3_*, STORAGE_DIR). Exit status: 0 done,
 * 1 error (the message on stderr), 3 no such key (get), 2 usage or configuration. */
#include "objstore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s put KEY PATH | get KEY DEST | delete KEY\n", argv[0]);
        return 2;
    }
    char err[512] = "";
    objstore *s = objstore_new_from_env(getenv("STORAGE_DIR"), err, sizeof err);
    if (!s) {
        fprintf(stderr, "config: %s\n", err);
        return 2;
    }
    const char *op = argv[1], *key = argv[2];
    int rc;
    if (strcmp(op, "put") == 0 && argc == 4) {
        char loc[1024];
        rc = objstore_put_file(s, key, argv[3], loc, sizeof loc, err, sizeof err);
        if (rc == 0)
            printf("%s\n", loc);
    } else if (strcmp(op, "get") == 0 && argc == 4) {
        rc = objstore_get_file(s, key, argv[3], err, sizeof err);
    } else if (strcmp(op, "delete") == 0 && argc == 3) {
        rc = objstore_delete(s, key, err, sizeof err);
    } else {
        fprintf(stderr, "usage: %s put KEY PATH | get KEY DEST | delete KEY\n", argv[0]);
        objstore_free(s);
        return 2;
    }
    objstore_free(s);
    if (rc == 1) {
        fprintf(stderr, "no such key\n");
        return 3;
    }
    if (rc != 0) {
        fprintf(stderr, "error: %s\n", err);
        return 1;
    }
    return 0;
}
