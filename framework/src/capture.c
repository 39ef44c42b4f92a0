/* Output capture that keeps the head and the tail past a cap. */
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

int atx_capture_init(atx_capture *c, size_t head_cap, size_t tail_cap)
{
    memset(c, 0, sizeof(*c));
    c->head_cap = head_cap;
    c->tail_cap = tail_cap;
    /* Buffers grow on demand: most tests print little. */
    return 0;
}

void atx_capture_release(atx_capture *c)
{
    free(c->head);
    free(c->tail);
    memset(c, 0, sizeof(*c));
}

static int grow_head(atx_capture *c, size_t need)
{
    size_t cap = 4096;

    while (cap < need)
        cap *= 2;
    if (cap > c->head_cap)
        cap = c->head_cap;
    char *h = realloc(c->head, cap);
    if (!h)
        return atx_error_oom();
    c->head = h;
    return 0;
}

int atx_capture_append(atx_capture *c, const char *data, size_t len)
{
    c->total += len;
    if (c->head_len < c->head_cap) {
        size_t n = c->head_cap - c->head_len;
        if (n > len)
            n = len;
        if (grow_head(c, c->head_len + n) < 0)
            return ATX_ENOMEM;
        memcpy(c->head + c->head_len, data, n);
        c->head_len += n;
        data += n;
        len -= n;
    }
    if (len == 0 || c->tail_cap == 0)
        return 0;
    if (!c->tail) {
        c->tail = malloc(c->tail_cap);
        if (!c->tail)
            return atx_error_oom();
    }
    if (len >= c->tail_cap) {
        memcpy(c->tail, data + len - c->tail_cap, c->tail_cap);
        c->tail_pos = 0;
        c->tail_len = c->tail_cap;
        return 0;
    }
    /* Write into the ring at tail_pos + tail_len (mod cap). */
    size_t w = (c->tail_pos + c->tail_len) % c->tail_cap;
    size_t first = c->tail_cap - w < len ? c->tail_cap - w : len;
    memcpy(c->tail + w, data, first);
    memcpy(c->tail, data + first, len - first);
    c->tail_len += len;
    if (c->tail_len > c->tail_cap) {
        c->tail_pos = (c->tail_pos + c->tail_len - c->tail_cap) % c->tail_cap;
        c->tail_len = c->tail_cap;
    }
    return 0;
}

int atx_capture_collect(const atx_capture *c, char **out, size_t *len)
{
    uint64_t dropped = c->total - c->head_len - c->tail_len;
    char marker[128];
    int mlen = 0;
    size_t head = c->head_len, tail_skip = 0;
    char *buf;

    if (dropped > 0) {
        /* Cut on UTF-8 boundaries so the kept text stays decodable: drop a
         * partial sequence at the end of the head and at the start of the
         * tail, and count those bytes as omitted too. */
        head = atx_text_utf8_floor(c->head, c->head_len, c->head_len);
        while (tail_skip < 3 && tail_skip < c->tail_len &&
               ((unsigned char)c->tail[(c->tail_pos + tail_skip) % c->tail_cap] & 0xC0) == 0x80)
            tail_skip++;
        mlen = snprintf(marker, sizeof(marker), "\n[... %llu bytes omitted ...]\n",
                        (unsigned long long)(dropped + (c->head_len - head) + tail_skip));
    }
    buf = malloc(head + (size_t)mlen + c->tail_len + 1);
    if (!buf)
        return atx_error_oom();
    if (head)
        memcpy(buf, c->head, head);
    size_t o = head;
    memcpy(buf + o, marker, (size_t)mlen);
    o += (size_t)mlen;
    for (size_t i = tail_skip; i < c->tail_len; i++)
        buf[o++] = c->tail[(c->tail_pos + i) % c->tail_cap];
    buf[o] = '\0';
    *out = buf;
    *len = o;
    return 0;
}

int64_t atx_capture_read_fd(atx_capture *c, int fd)
{
    char buf[65536];
    ssize_t n;

    do
        n = read(fd, buf, sizeof(buf));
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if (n > 0 && atx_capture_append(c, buf, (size_t)n) < 0)
        return ATX_ENOMEM;
    return n;
}
