/*
 * atx output capture (plugin tier): keeps the head and the tail of a stream
 * past a cap, counting everything. One thread at a time per capture.
 */
#ifndef ATX_PLUGIN_CAPTURE_H
#define ATX_PLUGIN_CAPTURE_H

#include "atx/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct atx_capture {
    char *head;        /**< first bytes, up to head_cap */
    size_t head_len, head_cap;
    char *tail;        /**< ring of the last bytes, up to tail_cap */
    size_t tail_pos, tail_len, tail_cap;
    uint64_t total;    /**< bytes seen */
} atx_capture;

/** Embedded init: keep up to @p head_cap first and @p tail_cap last bytes. */
ATX_API int atx_capture_init(atx_capture *c, size_t head_cap, size_t tail_cap);
/** Release the buffers. */
ATX_API void atx_capture_release(atx_capture *c);
ATX_API int atx_capture_append(atx_capture *c, const char *data, size_t len);
/**
 * The kept bytes as one buffer: head, then — if bytes were dropped — a marker
 * line saying how many, then the tail. Malloc'ed, NUL-terminated.
 */
ATX_API int atx_capture_collect(const atx_capture *c, char **out, size_t *len);
/**
 * Read what @p fd has now (non-blocking fd) into the capture.
 * @return bytes read (> 0), 0 at end of file, -EAGAIN if nothing now, or -errno.
 */
ATX_API int64_t atx_capture_read_fd(atx_capture *c, int fd);

#ifdef __cplusplus
}
#endif
#endif
