/* internal: the endpoints the workers call with a service token (X-Service-Token, audience
 * "storage"): OCR and archive results of a document, and job entries reported lost. */
#ifndef STORAGE_INTERNAL_H
#define STORAGE_INTERNAL_H

#include "router.h"

void internal_routes(router *r);

#endif
