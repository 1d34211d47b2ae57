/* stream.h: the job runner's operations on its Redis stream and consumer group (stream.c):
 * creating the group, reading new entries (XREADGROUP), claiming own entries past their
 * backoff (XPENDING + XCLAIM) and dead consumers' (XAUTOCLAIM), renewing the lease of the
 * jobs in hand, acknowledging, moving to the dead letters, and trimming. */
#ifndef WORKER_STREAM_H
#define WORKER_STREAM_H

#include "runner_int.h"

/* Creates the group (MKSTREAM) unless it is being created; reading starts once it exists. */
void stream_group_create(runner *r);
/* Reads new entries for the free slots, unless a read is under way or must wait. */
void stream_read(runner *r);
/* Own pending entries past their backoff, then dead consumers' entries: claimed. */
void stream_scan(runner *r);
/* Resets the idle time of the entries in hand, so that nobody takes them over. */
void stream_renew(runner *r);
/* Removes idle consumers without pending entries and trims the stream below the oldest
 * entry still needed. */
void stream_trim(runner *r);
/* Acknowledges the job's entry, then drops the job. */
void stream_ack(runner *r, rjob *rj);
/* Adds the job to the dead letters and acknowledges it, in one transaction. */
void stream_bury(runner *r, rjob *rj);

#endif
