/*
 * The agent protocol: framed messages over one byte stream between atx (the
 * host) and atx-agent (on the system). Shared by both sides; plain C, libc
 * only, no atx headers, so the agent stays a small static program.
 *
 * A frame is a 9-byte header, then the payload:
 *   u32 payload length (little endian), u8 type, u32 id (little endian)
 * `id` names a process, a transfer or a ping, chosen by the host. Integers in
 * payloads are little-endian u32/i32/u64; strings are NUL-terminated.
 * Durations are milliseconds from when the agent reads the frame: the two
 * clocks are never compared.
 *
 * Host to agent:
 *   START    u32 flags, u32 deadline ms (0: none), u32 grace ms, u32 argc,
 *            argv strings, u32 envc, env strings, cwd string ("" : the agent's)
 *   SIGNAL   i32 signal, u32 grace ms: the signal to the process's whole tree,
 *            then SIGKILL after the grace if it is still there
 *   DEADLINE u32 deadline ms (0: none): the process's deadline moves
 *   DATA     bytes: a process's stdin (START_STDIN), or a PUT's content
 *   CLOSE    the end of a process's stdin, or of a PUT (answered OK or FAIL)
 *   PING     (empty): answered PONG
 *   CHECK    u32 mode, u64 size, u64 mtime ns, path: OK if a regular file
 *            of that size and time is there (a copy may skip it), else FAIL
 *   PUT      u32 mode, u64 mtime ns (0: now), path: a file is written (its
 *            folders made); DATA frames follow, then CLOSE
 *   MKDIR    u32 mode, path: the folder and its parents (answered OK or FAIL)
 *   SYMLINK  target string, path string (answered OK or FAIL)
 *   GET      path: INFO frames for the file, or for the tree below a folder,
 *            each file's DATA frames after its INFO, then OK (or FAIL)
 *   QUIT     (empty): kill everything, exit
 *   CLOSE_CONTROL  (empty): the process's test-control channel is closed,
 *            so its further writes there fail (SIGPIPE, or EPIPE where
 *            it is ignored): a test that said
 *            `disconnect` learns that it may reboot
 * Agent to host:
 *   HELLO    u32 protocol version, u32 the agent's pid, u32 features, then the
 *            agent's version string
 *   STARTED  u32 pid
 *   FAIL     i32 errno, message string
 *   OUT/ERR/CTL  bytes of stdout / stderr / the test-control channel
 *   EXIT     i32 kind (0 exited, 1 killed by a signal), i32 code or signal,
 *            u32 exit flags; sent after every OUT/ERR/CTL byte of the
 *            process, and once every process the test started is gone
 *   PONG     (empty)
 *   INFO     u8 type ('f' file, 'd' folder, 'l' link), u32 mode, u64 size,
 *            u64 mtime ns, relative path string ("" for the one asked for),
 *            link target string (links only)
 *   DATA     bytes of a GET
 *   OK       (empty)
 */
#ifndef ATX_AGENT_PROTOCOL_H
#define ATX_AGENT_PROTOCOL_H

#include <stdint.h>
#include <string.h>

#define AGENT_PROTOCOL_VERSION 3
#define AGENT_HEADER_SIZE 9
/* Larger frames are a protocol error (a corrupt or hostile stream). */
#define AGENT_MAX_PAYLOAD (1u << 20)
/* What either side puts in one DATA frame at most. */
#define AGENT_CHUNK 65536

enum agent_type {
    AGENT_START = 1,
    AGENT_SIGNAL = 2,
    AGENT_PING = 3,
    AGENT_PUT = 4,
    AGENT_DATA = 5,
    AGENT_CLOSE = 6,
    AGENT_GET = 7,
    AGENT_QUIT = 8,
    AGENT_DEADLINE = 9,
    AGENT_CHECK = 10,
    AGENT_MKDIR = 11,
    AGENT_SYMLINK = 12,
    AGENT_CLOSE_CONTROL = 13,
    AGENT_HELLO = 64,
    AGENT_STARTED = 65,
    AGENT_FAIL = 66,
    AGENT_OUT = 67,
    AGENT_ERR = 68,
    AGENT_CTL = 69,
    AGENT_EXIT = 70,
    AGENT_PONG = 71,
    AGENT_OK = 72,
    AGENT_INFO = 73
};

/* START flags */
enum agent_start_flags {
    AGENT_MERGE_OUTPUT = 1u << 0,  /* stderr goes to stdout's stream */
    AGENT_CONTROL = 1u << 1,       /* a pipe on the test's fd 3 (CTL frames) */
    AGENT_PTY = 1u << 2,           /* run on a pseudo-terminal (implies merge) */
    AGENT_CLEAR_ENV = 1u << 3,     /* start from an empty environment */
    AGENT_STDIN = 1u << 4,         /* stdin from DATA frames (else /dev/null) */
    AGENT_STDOUT = 1u << 5,        /* stdout in OUT frames (else /dev/null) */
    AGENT_STDERR = 1u << 6         /* stderr in ERR frames (else /dev/null) */
};

/* HELLO features */
enum agent_features {
    AGENT_FEATURE_CGROUP = 1u << 0 /* tests run in cgroups of their own */
};

/* EXIT flags */
enum agent_exit_flags {
    AGENT_EXIT_TIMED_OUT = 1u << 0 /* the agent's deadline killed it */
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

static inline void agent_put_u64(unsigned char *p, uint64_t v)
{
    agent_put_u32(p, (uint32_t)v);
    agent_put_u32(p + 4, (uint32_t)(v >> 32));
}

static inline uint64_t agent_get_u64(const unsigned char *p)
{
    return (uint64_t)agent_get_u32(p) | (uint64_t)agent_get_u32(p + 4) << 32;
}

/* A whole frame at the start of received bytes. */
typedef struct agent_frame {
    uint8_t type;
    uint32_t id;
    const unsigned char *payload;  /* in the received bytes */
    uint32_t len;
} agent_frame;

/*
 * The frame at the start of @p buf, of which @p have bytes were received:
 * 1 with *f set (the frame is AGENT_HEADER_SIZE + f->len bytes); 0 when
 * more bytes are needed; -1 when its header announces a payload over
 * AGENT_MAX_PAYLOAD (a corrupt or hostile stream: end the connection).
 * Both sides split what they read with it.
 */
static inline int agent_frame_next(const unsigned char *buf, size_t have, agent_frame *f)
{
    if (have < AGENT_HEADER_SIZE)
        return 0;
    uint32_t len = agent_get_u32(buf);
    if (len > AGENT_MAX_PAYLOAD)
        return -1;
    if (have - AGENT_HEADER_SIZE < len)
        return 0;
    f->type = buf[4];
    f->id = agent_get_u32(buf + 5);
    f->payload = buf + AGENT_HEADER_SIZE;
    f->len = len;
    return 1;
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

static inline uint64_t agent_read_u64(agent_reader *r)
{
    if (r->left < 8) {
        r->bad = 1;
        return 0;
    }
    uint64_t v = agent_get_u64(r->p);
    r->p += 8;
    r->left -= 8;
    return v;
}

static inline uint8_t agent_read_u8(agent_reader *r)
{
    if (r->left < 1) {
        r->bad = 1;
        return 0;
    }
    uint8_t v = *r->p;
    r->p++;
    r->left--;
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
