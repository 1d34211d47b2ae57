/* uvbufs: what is left of an array of uv_buf_t after a partial write (see uvbufs.h). */
#include "uvbufs.h"

uv_buf_t *uvbufs_skip(uv_buf_t *bufs, unsigned *n, size_t taken)
{
    while (taken > 0 && *n > 0) {
        if (taken >= bufs->len) {
            taken -= bufs->len;
            bufs++;
            (*n)--;
        } else {
            bufs->base += taken;
            bufs->len -= taken;
            taken = 0;
        }
    }
    return bufs;
}
