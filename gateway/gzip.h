/* gzip: streaming gzip compression of responses (zlib), and the decisions around it: does the
 * client accept gzip, is the content type worth compressing. */
#ifndef GW_GZIP_H
#define GW_GZIP_H

#include <stddef.h>

typedef struct gw_gzip gw_gzip;

gw_gzip *gw_gzip_new(int level);
void gw_gzip_free(gw_gzip *z);
/* Compresses in (finish: and ends the stream). *out is malloc'ed (the caller frees), *outlen
 * may be 0 (then *out is NULL). Returns 0, or -1 on error. */
int gw_gzip_push(gw_gzip *z, const void *in, size_t len, int finish, char **out, size_t *outlen);

/* 1 when Accept-Encoding allows gzip (a "gzip" coding with q > 0, or "*" with q > 0). */
int gw_gzip_accepted(const char *accept_encoding);
/* 1 for JSON, text/ types, JavaScript, CSS, SVG, XML, YAML. */
int gw_gzip_type_ok(const char *content_type);
/* Whole-buffer helper (static files). Returns 0 and a malloc'ed result. */
int gw_gzip_buffer(const void *in, size_t len, char **out, size_t *outlen);

#endif
