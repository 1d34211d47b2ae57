/* multipart: an incremental multipart/form-data parser (RFC 7578 / RFC 2046) for uploads that
 * stream: bytes are fed as they arrive, in pieces of any size (a boundary may be split across
 * pieces), and the parts come out through callbacks without the body ever being held whole.
 *
 * Strict: the body starts with the first delimiter (no preamble); header lines end in CRLF,
 * are at most MP_MAX_HEADER_LINE bytes, at most MP_MAX_HEADERS of them and MP_MAX_HEADER_BYTES
 * in all per part; every part has Content-Disposition: form-data with a name; at most
 * MP_MAX_PARTS parts; the body ends with the close delimiter (what follows is ignored). */
#ifndef STORAGE_MULTIPART_H
#define STORAGE_MULTIPART_H

#include <stddef.h>

#define MP_MAX_BOUNDARY     70
#define MP_MAX_HEADER_LINE  1024
#define MP_MAX_HEADERS      8
#define MP_MAX_HEADER_BYTES 4096
#define MP_MAX_PARTS        16
#define MP_MAX_NAME         64
#define MP_MAX_FILENAME     1024

typedef struct mp_part {
    char name[MP_MAX_NAME + 1];
    int has_filename;
    char filename[MP_MAX_FILENAME + 1]; /* raw bytes as sent (filename* decoded), may be "" */
    char content_type[128];             /* "" when none */
} mp_part;

/* Each returns 0 to go on, nonzero to stop (mp_feed then returns -1, mp_error "stopped"). */
typedef struct mp_callbacks {
    int (*on_part)(void *ud, const mp_part *part);
    int (*on_data)(void *ud, const char *data, size_t len);
    int (*on_part_end)(void *ud);
} mp_callbacks;

typedef struct mp_parser mp_parser;

/* The boundary parameter of a Content-Type "multipart/form-data; boundary=..." header into out
 * (MP_MAX_BOUNDARY + 1 bytes). 1 when the header is multipart/form-data with a valid boundary,
 * 0 when it is not multipart/form-data at all, -1 when it is but its boundary is bad. */
int mp_boundary(const char *content_type, char *out, size_t cap);

mp_parser *mp_new(const char *boundary, const mp_callbacks *cb, void *ud);
void mp_free(mp_parser *p);
/* Feeds the next piece. 0, or -1 on malformed input or a callback's stop (mp_error says
 * which; the parser then refuses everything). */
int mp_feed(mp_parser *p, const char *data, size_t len);
/* At the end of the body: 0 when the close delimiter was seen, else -1. */
int mp_finish(mp_parser *p);
const char *mp_error(const mp_parser *p);

#endif
