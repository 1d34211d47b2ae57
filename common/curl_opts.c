/* curl_opts: the libcurl options every transfer of the suite starts from (see curl_opts.h). */
#include <stdio.h>

#include "curl_opts.h"

static size_t curl_opts_read(char *buf, size_t size, size_t nitems, void *ud)
{
    FILE *in = ud;
    size_t n = fread(buf, 1, size * nitems, in);
    if (n == 0 && ferror(in))
        return CURL_READFUNC_ABORT;
    return n;
}

void curl_opts_base(CURL *c, const char *url, long connect_ms, long low_speed, long low_time,
                    char *errbuf)
{
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, low_speed);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, low_time);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
}

void curl_opts_body_from(CURL *c, FILE *in)
{
    curl_easy_setopt(c, CURLOPT_READFUNCTION, curl_opts_read);
    curl_easy_setopt(c, CURLOPT_READDATA, in);
}
