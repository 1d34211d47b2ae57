/* jobs: the OCR and archive jobs of documents on the Redis streams jobs:ocr and jobs:archive
 * (consumer group "workers"), and the sweeper that makes sure every unfinished document has a
 * job: PostgreSQL is the source of truth, Redis may lose entries or be down. */
#ifndef STORAGE_JOBS_H
#define STORAGE_JOBS_H

#include <uv.h>

/* Starts the sweeper (every storage.sweep_ms; the first run soon after start-up). */
void jobs_start(uv_loop_t *loop);
void jobs_stop(void);
/* Enqueues both jobs of a document just inserted (its *_job columns still NULL). */
void jobs_enqueue_new(const char *id);
/* Runs the sweeper at once (after /internal/jobs/lost). */
void jobs_sweep_soon(void);
/* The *_job column prefix ("ocr", "archive") of a stream name, NULL for another stream. */
const char *jobs_kind_of_stream(const char *stream);

#endif
