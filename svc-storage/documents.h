/* documents: the read and delete side of /documents: the list (cursor pagination, tag,
 * sha256 and full-text filters), one document, its content (ETag, Range, streamed from disk
 * or fetched back from the archive), and DELETE. */
#ifndef STORAGE_DOCUMENTS_H
#define STORAGE_DOCUMENTS_H

#include "router.h"

void documents_routes(router *r);

#endif
