/* scanner: uploads a folder of scanned documents to svc-storage, skipping what the
 * organization already has (same SHA-256). Options, then walk, transfer, summary.
 *   scanner [--url URL] [--api-key KEY] [--jobs N] [--cacert FILE|--insecure] [--dry-run]
 *           [--hidden] DIR
 * SCANNER_URL and SCANNER_API_KEY (or SCANNER_API_KEY_FILE) stand for --url and --api-key.
 * Exit status: 0 nothing failed, 1 some file failed, 2 usage error. */
#include "scanner.h"

#include "config.h"
#include "xalloc.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCANNER_MAX_JOBS 64

static const char scanner_usage[] =
    "usage: scanner [--url URL] [--api-key KEY] [--jobs N] [--cacert FILE|--insecure]\n"
    "               [--dry-run] [--hidden] DIR\n"
    "  Uploads every file under DIR that the organization does not have yet.\n"
    "  --url URL       the API (svc-storage or the gateway), or SCANNER_URL\n"
    "  --api-key KEY   an API key, or SCANNER_API_KEY / SCANNER_API_KEY_FILE\n"
    "  --jobs N        transfers at once (1-64, default 4)\n"
    "  --cacert FILE   trust this CA for https; --insecure: do not check the certificate\n"
    "  --dry-run       check what would be uploaded, upload nothing\n"
    "  --hidden        also files and folders whose name starts with '.'\n"
    "Exit status: 0 nothing failed, 1 some file failed, 2 usage error.\n";

static int scanner_usage_error(const char *msg)
{
    if (msg)
        fprintf(stderr, "scanner: %s\n", msg);
    fputs(scanner_usage, stderr);
    return 2;
}

int main(int argc, char **argv)
{
    scanner_opts o = {.jobs = 4};
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},
        {"api-key", required_argument, NULL, 'k'},
        {"jobs", required_argument, NULL, 'j'},
        {"cacert", required_argument, NULL, 'c'},
        {"insecure", no_argument, NULL, 'i'},
        {"dry-run", no_argument, NULL, 'n'},
        {"hidden", no_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    char *end;
    while ((ch = getopt_long(argc, argv, "u:k:j:c:inah", longopts, NULL)) != -1) {
        switch (ch) {
        case 'u': o.url = optarg; break;
        case 'k': o.api_key = optarg; break;
        case 'j':
            o.jobs = (int)strtol(optarg, &end, 10);
            if (*end || end == optarg || o.jobs < 1 || o.jobs > SCANNER_MAX_JOBS)
                return scanner_usage_error("--jobs takes a number from 1 to 64");
            break;
        case 'c': o.cacert = optarg; break;
        case 'i': o.insecure = 1; break;
        case 'n': o.dry_run = 1; break;
        case 'a': o.hidden = 1; break;
        case 'h': fputs(scanner_usage, stdout); return 0;
        default: return scanner_usage_error(NULL);
        }
    }
    if (optind != argc - 1)
        return scanner_usage_error("give exactly one folder");
    if (!o.url)
        o.url = config_str("SCANNER_URL", NULL);
    if (!o.api_key)
        o.api_key = config_str("SCANNER_API_KEY", NULL);
    if (!o.url || !*o.url)
        return scanner_usage_error("no URL: --url or SCANNER_URL");
    if (strncmp(o.url, "http://", 7) != 0 && strncmp(o.url, "https://", 8) != 0)
        return scanner_usage_error("the URL must start with http:// or https://");
    if (!o.api_key || !*o.api_key)
        return scanner_usage_error(
            "no API key: --api-key, SCANNER_API_KEY or SCANNER_API_KEY_FILE");
    if (strpbrk(o.api_key, "\r\n"))
        return scanner_usage_error("the API key holds a line break");
    if (o.cacert && o.insecure)
        return scanner_usage_error("--cacert and --insecure exclude each other");
    char *url = xstrdup(o.url);
    size_t ulen = strlen(url);
    while (ulen && url[ulen - 1] == '/')
        url[--ulen] = '\0';
    o.url = url;
    o.tty = isatty(STDOUT_FILENO);
    signal(SIGPIPE, SIG_IGN); /* a peer closing a TLS connection is an error, not death */

    scanner_files fs = {0};
    if (scanner_walk(argv[optind], o.hidden, &fs) != 0) {
        free(url);
        return 2;
    }
    scanner_out_start(&o, &fs);
    if (scanner_transfer(&o, &fs) != 0) {
        fprintf(stderr, "scanner: libcurl cannot start\n");
        scanner_files_free(&fs);
        free(url);
        return 1;
    }
    size_t failed = scanner_out_summary(&fs);
    scanner_files_free(&fs);
    free(url);
    return failed ? 1 : 0;
}
