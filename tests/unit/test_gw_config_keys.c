/* test_gw_config_keys: the gateway's key table (gateway/gw_config.c) and the key reference in
 * deploy/local/gateway.ini agree: every key is documented under its section with its default,
 * every documented key exists, and each table default is accepted by its own parser. */
#include "../../gateway/gw_config.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DOC 128

typedef struct doc_key {
    char section[16], name[64], def[256];
    int seen;
} doc_key;

static doc_key docs[MAX_DOC];
static size_t ndocs;

/* Reads the block between "; --- keys" and "; --- end of keys": "; [section ...]" lines and
 * ";   name = default   words" lines (default: up to two spaces, or the line's end). */
static int read_docs(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[1024], section[16] = "";
    int in = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strncmp(line, "; --- keys", 10) == 0) {
            in = 1;
            continue;
        }
        if (strncmp(line, "; --- end of keys", 17) == 0)
            break;
        if (!in)
            continue;
        if (strncmp(line, "; [", 3) == 0) {
            size_t n = strcspn(line + 3, " ]");
            snprintf(section, sizeof section, "%.*s", (int)n, line + 3);
            continue;
        }
        if (strncmp(line, ";   ", 4) != 0 || !section[0] || ndocs == MAX_DOC)
            continue;
        const char *p = line + 4, *eq = strstr(p, " = ");
        if (!eq)
            continue;
        doc_key *d = &docs[ndocs++];
        snprintf(d->section, sizeof d->section, "%s", section);
        snprintf(d->name, sizeof d->name, "%.*s", (int)(eq - p), p);
        const char *v = eq + 3, *end = strstr(v, "  ");
        snprintf(d->def, sizeof d->def, "%.*s", (int)(end ? end - v : (long)strlen(v)), v);
    }
    fclose(f);
    return in ? 0 : -1;
}

static doc_key *doc_find(const char *section, const char *name)
{
    for (size_t i = 0; i < ndocs; i++)
        if (!strcmp(docs[i].section, section) && !strcmp(docs[i].name, name))
            return &docs[i];
    return NULL;
}

static void every_key_documented(void)
{
    size_t n;
    const gw_key *k = gw_config_keys(&n);
    CHECK(n >= 30);
    for (size_t i = 0; i < n; i++) {
        const char *sec = gw_config_section_name(k[i].section);
        doc_key *d = doc_find(sec, k[i].name);
        if (!d) {
            printf("  [%s] %s: not in deploy/local/gateway.ini's key list\n", sec, k[i].name);
            CHECK(d != NULL);
            continue;
        }
        d->seen = 1;
        if (k[i].def) {
            if (strcmp(d->def, k[i].def) != 0)
                printf("  [%s] %s: documented default \"%s\", the code's \"%s\"\n", sec, k[i].name,
                       d->def, k[i].def);
            CHECK_STR(d->def, k[i].def);
        } else {
            if (d->def[0] != '<')
                printf("  [%s] %s: documented default \"%s\", the code has none\n", sec, k[i].name,
                       d->def);
            CHECK(d->def[0] == '<');
        }
    }
}

static void every_documented_key_exists(void)
{
    CHECK(ndocs > 0);
    for (size_t i = 0; i < ndocs; i++) {
        if (!docs[i].seen)
            printf("  [%s] %s: documented, but the gateway does not know it\n", docs[i].section,
                   docs[i].name);
        CHECK(docs[i].seen);
    }
}

static void defaults_parse(void)
{
    size_t n;
    const gw_key *k = gw_config_keys(&n);
    static char obj[sizeof(gw_config)]; /* the largest of the three section structs */
    for (size_t i = 0; i < n; i++) {
        if (!k[i].def)
            continue;
        CHECK(k[i].off + k[i].size <= sizeof obj);
        CHECK_INT(k[i].set(&k[i], obj, k[i].def), 0);
    }
}

int main(void)
{
    test_suite = "gw_config_keys";
    if (read_docs(SOURCE_ROOT "/deploy/local/gateway.ini") != 0) {
        printf("FAIL gw_config_keys/read_docs: no key list in deploy/local/gateway.ini\n");
        return 1;
    }
    RUN(every_key_documented);
    RUN(every_documented_key_exists);
    RUN(defaults_parse);
    return TEST_EXIT();
}
