/* upload: POST /documents: a multipart/form-data or raw body streamed to a temporary file
 * (hashed and sniffed on the way), then moved under files/ and recorded (see upload.c). */
#ifndef STORAGE_UPLOAD_H
#define STORAGE_UPLOAD_H

#include "router.h"

void upload_routes(router *r);

#endif
