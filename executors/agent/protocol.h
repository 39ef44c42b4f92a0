/*
 * The agent protocol: framed messages over one byte stream between atx (the
 * host) and atx-agent (on the system). Shared by both sides; plain C, libc
 * only, no atx headers, so the agent stays a small static program.
 *
 * A frame is a 9-byte header, then the payload:
 *   u32 payload length (little endian), u8 type, u32 id (little endian)
 * `id` names a process (or a file transfer) chosen by the host. Integers in
 * payloads are little-endian u32/i32; strings are NUL-terminated.
 *
 * Host to agent:
 *   START   u32 flags, u32 argc, argv strings, u32 envc, env strings, cwd string
 *   SIGNAL  i32 signal, u32 grace_ms (then SIGKILL if still there)
 *   PING    (empty)
 *   PUT     u32 mode, path string: open a file for writing; DATA frames follow
 *   DATA    bytes (PUT content, or host stdin for a process: later)
 *   CLOSE   end of a PUT: the agent answers OK or FAIL
 *   GET     path string: the agent answers DATA frames, then OK or FAIL
 *   QUIT    (empty): kill everything, exit
 * Agent to host:
 *   HELLO   u32 protocol version, then the agent's version string
 *   STARTED u32 pid
 *   FAIL    i32 errno, message string
 *   OUT/ERR/CTL  bytes of stdout / stderr / the test-control channel
 *   EXIT    i32 kind (0 exited, 1 killed by a signal), i32 code or signal;
 *           sent after every OUT/ERR/CTL byte of that process
 *   PONG    (empty)
 *   DATA    bytes of a GET
 *   OK      (empty)
 */
#ifndef ATX_AGENT_PROTOCOL_H
#define ATX_AGENT_PROTOCOL_H

#include <stdint.h>
#include <string.h>

#define AGENT_PROTOCOL_VERSION 1
#define AGENT_HEADER_SIZE 9
/* Larger frames are a protocol error (a corrupt or hostile stream). */
#define AGENT_MAX_PAYLOAD (1u << 20)

enum agent_type {
    AGENT_START = 1,
    AGENT_SIGNAL = 2,
    AGENT_PING = 3,
    AGENT_PUT = 4,
    AGENT_DATA = 5,
    AGENT_CLOSE = 6,
    AGENT_GET = 7,
    AGENT_QUIT = 8,
    AGENT_HELLO = 64,
    AGENT_STARTED = 65,
    AGENT_FAIL = 66,
    AGENT_OUT = 67,
    AGENT_ERR = 68,
    AGENT_CTL = 69,
    AGENT_EXIT = 70,
    AGENT_PONG = 71,
    AGENT_OK = 72
};

/* START flags */
enum agent_start_flags {
    AGENT_MERGE_OUTPUT = 1u << 0,  /* stderr goes to stdout's stream */
    AGENT_CONTROL = 1u << 1,       /* give the test ATEX_TEST_CONTROL=3 */
    AGENT_PTY = 1u << 2,           /* run on a pseudo-terminal (implies merge) */
    AGENT_CLEAR_ENV = 1u << 3      /* start from an empty environment */
};

static inline void agent_put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline uint32_t agent_get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A cursor over a received payload; every read is bounds-checked. */
typedef struct agent_reader {
    const unsigned char *p;
    size_t left;
    int bad;
} agent_reader;

static inline uint32_t agent_read_u32(agent_reader *r)
{
    if (r->left < 4) {
        r->bad = 1;
        return 0;
    }
    uint32_t v = agent_get_u32(r->p);
    r->p += 4;
    r->left -= 4;
    return v;
}

static inline const char *agent_read_str(agent_reader *r)
{
    const unsigned char *nul = r->left ? memchr(r->p, 0, r->left) : NULL;
    if (!nul) {
        r->bad = 1;
        return NULL;
    }
    const char *s = (const char *)r->p;
    size_t n = (size_t)(nul - r->p) + 1;
    r->p += n;
    r->left -= n;
    return s;
}

#endif
