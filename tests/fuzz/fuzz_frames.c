/*
 * libFuzzer target for the agent protocol's framing and payload reading
 * (executors/agent/protocol.h: agent_frame_next, which both atx and
 * atx-agent split their input with, and the agent_reader they decode
 * payloads with).
 *
 * The input is a byte stream. With the top bit of its first byte set, the
 * rest is cut at 0x1e bytes into pieces, each made a well-formed frame (its
 * first byte the type, the rest the payload), so that mutations reach the
 * payloads. The stream is split twice: whole, and as a reader does it, in
 * chunks (sizes from the first byte) into a buffer it moves the rest of
 * down; both must see the same frames and stop the same way. Each frame's
 * payload is then decoded the way its reader does (HELLO, FAIL, EXIT and
 * INFO on the host; START, SIGNAL, DEADLINE, CHECK, PUT, MKDIR, SYMLINK and
 * GET on the agent), in a copy of exactly its length: no read may leave it,
 * every string must end inside it, a failed read takes nothing and the
 * failure sticks.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

#define MAX_FRAMES 4096

typedef struct seen {
    uint8_t type;
    uint32_t id, len;
    uint32_t sum;            /* of the payload's bytes */
} seen;

static uint32_t sum_of(const unsigned char *p, uint32_t n)
{
    uint32_t s = 0;
    for (uint32_t i = 0; i < n; i++)
        s = s * 31 + p[i];
    return s;
}

static void check_reader(const agent_reader *r, const unsigned char *base, size_t n)
{
    if (r->left > n || r->p < base || r->p + r->left != base + n)
        abort();
}

static const char *str(agent_reader *r, const unsigned char *base, size_t n)
{
    int was_bad = r->bad;
    const char *s = agent_read_str(r);
    check_reader(r, base, n);
    if (s) {
        size_t len = strlen(s); /* ASan: it ends inside the copy */
        if ((const unsigned char *)s < base || (const unsigned char *)s + len >= base + n)
            abort();
    }
    if (was_bad && !r->bad)
        abort();
    return s;
}

/* A number read takes its width, or nothing and fails with 0. */
static void check_number(const agent_reader *r, size_t before, int was_bad, uint64_t v,
                         size_t width)
{
    if (r->left == before ? v || !r->bad : before - r->left != width)
        abort();
    if (was_bad && !r->bad)
        abort();
}

static uint32_t u32(agent_reader *r, const unsigned char *base, size_t n)
{
    size_t before = r->left;
    int was_bad = r->bad;
    uint32_t v = agent_read_u32(r);
    check_reader(r, base, n);
    check_number(r, before, was_bad, v, 4);
    return v;
}

static uint64_t u64(agent_reader *r, const unsigned char *base, size_t n)
{
    size_t before = r->left;
    int was_bad = r->bad;
    uint64_t v = agent_read_u64(r);
    check_reader(r, base, n);
    check_number(r, before, was_bad, v, 8);
    return v;
}

static void decode(uint8_t type, const unsigned char *payload, uint32_t len)
{
    unsigned char *p = malloc(len ? len : 1);
    agent_reader r;

    if (!p)
        return;
    memcpy(p, payload, len);
    r = (agent_reader){ p, len, 0 };
    switch (type) {
    case AGENT_HELLO:
        u32(&r, p, len), u32(&r, p, len), u32(&r, p, len);
        str(&r, p, len);
        break;
    case AGENT_FAIL:
        u32(&r, p, len);
        str(&r, p, len);
        break;
    case AGENT_EXIT:
        u32(&r, p, len), u32(&r, p, len), u32(&r, p, len);
        break;
    case AGENT_INFO: {
        uint8_t t = agent_read_u8(&r);
        check_reader(&r, p, len);
        u32(&r, p, len);
        u64(&r, p, len), u64(&r, p, len);
        str(&r, p, len);
        if (t == 'l')
            str(&r, p, len);
        break;
    }
    case AGENT_START: {
        u32(&r, p, len), u32(&r, p, len), u32(&r, p, len);
        for (int list = 0; list < 2 && !r.bad; list++) {
            uint32_t n = u32(&r, p, len);
            /* More strings than bytes left is a lie the reader must survive. */
            for (uint32_t i = 0; i < n && !r.bad; i++)
                str(&r, p, len);
        }
        str(&r, p, len);
        break;
    }
    case AGENT_SIGNAL:
        u32(&r, p, len), u32(&r, p, len);
        break;
    case AGENT_DEADLINE:
        u32(&r, p, len);
        break;
    case AGENT_CHECK:
        u32(&r, p, len);
        u64(&r, p, len), u64(&r, p, len);
        str(&r, p, len);
        break;
    case AGENT_PUT:
        u32(&r, p, len);
        u64(&r, p, len);
        str(&r, p, len);
        break;
    case AGENT_MKDIR:
        u32(&r, p, len);
        str(&r, p, len);
        break;
    case AGENT_SYMLINK:
        str(&r, p, len), str(&r, p, len);
        break;
    case AGENT_GET:
        str(&r, p, len);
        break;
    default:
        break;
    }
    /* Past the end, every read fails. */
    if (r.left == 0 && (agent_read_u32(&r) || agent_read_u64(&r) || agent_read_u8(&r) ||
                        agent_read_str(&r) || !r.bad))
        abort();
    check_reader(&r, p, len);
    free(p);
}

/* Split a whole buffer: the frames, how it ended (0 or -1), what is left. */
static size_t split_whole(const unsigned char *buf, size_t n, seen *out, int *end, size_t *left)
{
    size_t off = 0, k = 0;
    agent_frame f;
    int got;

    while (k < MAX_FRAMES && (got = agent_frame_next(buf + off, n - off, &f)) > 0) {
        if (f.payload != buf + off + AGENT_HEADER_SIZE || f.len > AGENT_MAX_PAYLOAD ||
            off + AGENT_HEADER_SIZE + f.len > n)
            abort();
        out[k++] = (seen){ f.type, f.id, f.len, sum_of(f.payload, f.len) };
        decode(f.type, f.payload, f.len);
        off += AGENT_HEADER_SIZE + f.len;
    }
    *end = k == MAX_FRAMES ? 1 : got;
    *left = n - off;
    return k;
}

/* The same as a reader does it: chunks appended, whole frames taken, the
 * rest moved to the front. */
static size_t split_chunked(const unsigned char *buf, size_t n, uint8_t seed, seen *out,
                            int *end, size_t *left)
{
    unsigned char *in = malloc(n ? n : 1);
    size_t have = 0, fed = 0, k = 0;
    int got = 0;

    if (!in)
        abort();
    while (fed < n && got >= 0 && k < MAX_FRAMES) {
        size_t chunk = (size_t)(seed % 13) + 1 + (fed % 7);
        seed = (uint8_t)(seed * 73 + 41);
        if (chunk > n - fed)
            chunk = n - fed;
        memcpy(in + have, buf + fed, chunk);
        have += chunk;
        fed += chunk;
        size_t off = 0;
        agent_frame f;
        while (k < MAX_FRAMES && (got = agent_frame_next(in + off, have - off, &f)) > 0) {
            out[k++] = (seen){ f.type, f.id, f.len, sum_of(f.payload, f.len) };
            off += AGENT_HEADER_SIZE + f.len;
        }
        memmove(in, in + off, have - off);
        have -= off;
    }
    *end = k == MAX_FRAMES ? 1 : got;
    *left = have + (n - fed);
    free(in);
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static seen a[MAX_FRAMES], b[MAX_FRAMES];
    unsigned char *stream;
    size_t n = 0, ka, kb, la, lb;
    int ea, eb;

    if (size < 1)
        return 0;
    /* At worst every input byte is a piece: a header each. */
    if (!(stream = malloc(size * (AGENT_HEADER_SIZE + 1) + AGENT_HEADER_SIZE)))
        return 0;
    if (data[0] & 0x80) {
        /* Pieces made frames: header, the piece's first byte the type. */
        const uint8_t *p = data + 1, *end = data + size;
        uint32_t id = 0;
        while (p < end) {
            const uint8_t *cut = memchr(p, 0x1e, (size_t)(end - p));
            size_t plen = (size_t)((cut ? cut : end) - p);
            uint8_t type = plen ? p[0] : AGENT_PING;
            size_t body = plen ? plen - 1 : 0;
            agent_put_u32(stream + n, (uint32_t)body);
            stream[n + 4] = type;
            agent_put_u32(stream + n + 5, id++);
            if (body)
                memcpy(stream + n + AGENT_HEADER_SIZE, p + 1, body);
            n += AGENT_HEADER_SIZE + body;
            p = cut ? cut + 1 : end;
        }
    } else {
        memcpy(stream, data + 1, size - 1);
        n = size - 1;
    }
    /* Exactly n bytes, so that a read past the stream is seen. */
    unsigned char *exact = malloc(n ? n : 1);
    if (!exact)
        abort();
    memcpy(exact, stream, n);
    free(stream);
    ka = split_whole(exact, n, a, &ea, &la);
    kb = split_chunked(exact, n, data[0], b, &eb, &lb);
    if (ka != kb)
        abort();
    for (size_t i = 0; i < ka; i++)
        if (a[i].type != b[i].type || a[i].id != b[i].id || a[i].len != b[i].len ||
            a[i].sum != b[i].sum)
            abort();
    if (ea != 1 && eb != 1 && (ea != eb || (ea == 0 && la != lb)))
        abort();
    if (ea == 0 && la >= AGENT_HEADER_SIZE && agent_get_u32(exact + n - la) <= la - AGENT_HEADER_SIZE)
        abort(); /* a whole frame was left unread */
    free(exact);
    return 0;
}
