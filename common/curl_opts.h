/* curl_opts: the libcurl options every transfer of the suite starts from (common/objstore's S3
 * requests, svc-storage's scanner uploads), and the read callback of a body sent from a file. */
#ifndef COMMON_CURL_OPTS_H
#define COMMON_CURL_OPTS_H

#include <curl/curl.h>

/* A request to url over http or https only, without signals, connecting within connect_ms,
 * aborted when slower than low_speed bytes/s for low_time s; errors go to errbuf (at least
 * CURL_ERROR_SIZE bytes). */
void curl_opts_base(CURL *c, const char *url, long connect_ms, long low_speed, long low_time,
                    char *errbuf);
/* The body comes from in (a FILE *), read up to its end; a read error aborts the transfer. */
void curl_opts_body_from(CURL *c, FILE *in);

#endif
