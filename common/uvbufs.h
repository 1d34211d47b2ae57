/* uvbufs: what is left of an array of uv_buf_t once a write took its first bytes (a partial
 * uv_try_write), to hand the rest to uv_write. */
#ifndef COMMON_UVBUFS_H
#define COMMON_UVBUFS_H
#include <stddef.h>
#include <uv.h>

/* Skips the first `taken` bytes of bufs[0..*n): whole buffers are passed over (*n shrinks),
 * a buffer taken in part is advanced in place. Returns the first buffer left. */
uv_buf_t *uvbufs_skip(uv_buf_t *bufs, unsigned *n, size_t taken);

#endif
