/* static: the files the gateway serves itself: /docs (Swagger UI's files from the PyPI package
 * swagger-ui-bundle-v2, over docs/openapi.yaml), kept in memory with gzip copies and validators,
 * and the ACME HTTP-01 challenges from the webroot (read off the loop). */
#ifndef GW_STATIC_H
#define GW_STATIC_H

#include "gw_config.h"
#include "http_server.h"

typedef struct gw_static gw_static;

/* Loads the docs files (missing ones are logged and answer 404). */
gw_static *gw_static_new(const gw_config *c);
void gw_static_free(gw_static *s);

/* path: the normalized path, "/docs" or under "/docs/". Replies (200, 304, 301, 404 or 405)
 * and returns that status. */
int gw_static_docs(gw_static *s, http_req *req, const char *path);
/* token: what follows "/.well-known/acme-challenge/". Replies 200 with the file or 404 (the
 * file is read on the threadpool), then calls done with the status. */
typedef void (*gw_static_done_fn)(http_req *req, int status, void *ud);
void gw_static_acme(gw_static *s, http_req *req, const char *token, gw_static_done_fn done,
                    void *ud);

#endif
