/*
 * Test control for the fmf executor (private to executors/fmf).
 *
 * One fmf_control per attempt reads the test-control byte stream
 * (TEST_CONTROL.md: `result`, `exitcode`, `duration`, `disconnect`, `noop`)
 * and writes the attempt's per-test results: `<attempt>/results` (JSON lines)
 * and `<attempt>/files/`. File payloads go straight to disk as they arrive;
 * only JSON and control lines are buffered, with caps (below) on memory, files
 * and bytes whose overflow is a protocol error, never a crash.
 *
 * Threads: an fmf_control is used by one thread at a time; hooks run on the
 * thread that calls fmf_control_feed(). Errors are ints as in atx/error.h.
 */
#ifndef ATX_FMF_CONTROL_H
#define ATX_FMF_CONTROL_H

#include <stddef.h>
#include <stdint.h>

struct json_object;

/*
 * Limits, per attempt. Going past one is a protocol error of the test; what
 * was recorded before it stays. Memory is counted as json-c will hold it
 * (about 800 bytes an object, 170 an array, 110 a scalar, 64 a key, plus the
 * text), estimated from the JSON text before it is parsed, so a result that
 * would not fit is refused without being parsed.
 */
#define FMF_CONTROL_LINE_MAX 4096                        /* a control line, with its newline */
#define FMF_CONTROL_JSON_MAX (16u * 1024 * 1024)         /* one `result` JSON text */
#define FMF_CONTROL_DEPTH_MAX 64                         /* nesting of one result */
#define FMF_CONTROL_MEMORY_MAX (64u * 1024 * 1024)       /* results held: pending partials
                                                            parsed, written lines, the one
                                                            being parsed, file names */
#define FMF_CONTROL_PENDING_MAX 10000                    /* partial results kept at once */
#define FMF_CONTROL_RESULTS_MAX 1000000                  /* results written by the test */
#define FMF_CONTROL_FILES_MAX 10000                      /* files and folders made below files/ */
#define FMF_CONTROL_FILES_BYTES_MAX (1024ull * 1024 * 1024) /* file data declared by results */

typedef struct fmf_control fmf_control;

/** Called from fmf_control_feed() once a control line is complete. Any may be NULL. */
typedef struct fmf_control_hooks {
    void *ud;
    /** `exitcode N`. */
    void (*exitcode)(void *ud, int code);
    /**
     * `duration SPEC`, already validated: "5m", "90", "+1m", "-30s", "save" or
     * "restore" (see fmf_duration_spec_parse()). The string lives for the call.
     */
    void (*duration)(void *ud, const char *spec);
    /** `disconnect`: the connection is about to drop on purpose (a reboot). */
    void (*disconnect)(void *ud);
    /**
     * `reboot TIMEOUT COMMAND` (atx's own word, written by tmt-reboot): the
     * test asks atx to reboot the system. @p timeout_ns 0: the default;
     * @p command "": the system's own way.
     */
    void (*reboot)(void *ud, int64_t timeout_ns, const char *command);
    /**
     * Settle the test's own result just before fmf_control_finish() writes
     * it: @p own is its object (without `partial`; `files` already a list
     * of names) and may be changed (status, note). @p status_from_exit: its
     * status is the fallback's from the exit code (the test reported none).
     * Not called for an own result written while the test ran (see
     * hold_own). @return 0, or a negative code (the result is still
     * written; finish returns the code).
     */
    int (*settle)(void *ud, const struct fmf_control *c, struct json_object *own,
                  int status_from_exit);
    /**
     * Nonzero: a final own result of the test is held and written at
     * fmf_control_finish() (after the pending ones, through settle), not
     * when it arrives; a later one writes the one held before it.
     */
    int hold_own;
} fmf_control_hooks;

/**
 * Start an attempt's results in @p attempt_dir: the directory (and missing
 * parents) is created if missing, `results` is created empty (truncated if it
 * exists) and `files/` created.
 * @param hooks  copied; may be NULL.
 * @param out    receives the handle (free with fmf_control_free()); untouched
 *               on failure.
 * @return 0, ATX_EINVAL, -ENOMEM or -errno of the failing file operation
 *         (detail in atx_error_last()).
 */
int fmf_control_new(const char *attempt_dir, const fmf_control_hooks *hooks, fmf_control **out);

/**
 * Feed the next @p len bytes of the control stream. Any split of the stream
 * (down to one byte per call) gives the same results, files, hooks and error.
 * @return 0; or, once, on the first problem: ATX_EPARSE (a protocol error of
 *         the test), -errno / ATX_EIO (writing results or files failed) or
 *         -ENOMEM. The text is in fmf_control_error(); all later input is
 *         ignored (and 0 returned). ATX_ESTATE after fmf_control_finish().
 */
int fmf_control_feed(fmf_control *c, const char *data, size_t len);

/**
 * The current stream ended (its connection closed) and another may follow
 * after a reconnect. Ending inside a control line or a payload is a protocol
 * error. fmf_control_finish() does this itself.
 * @return 0, or ATX_EPARSE the first time an error arises (as feed()).
 */
int fmf_control_stream_end(fmf_control *c);

/** The first protocol (or I/O) problem as one line, or NULL. Borrowed from @p c. */
const char *fmf_control_error(const fmf_control *c);

typedef enum {
    FMF_END_EXITED = 0,      /* the test exited on its own */
    FMF_END_TIMEOUT = 1,     /* killed at its duration */
    FMF_END_LOST = 2,        /* the system or the connection was lost */
    FMF_END_INTERRUPTED = 3  /* the run was cancelled */
} fmf_end_kind;

/**
 * End the attempt: the stream end is checked (fmf_control_stream_end()),
 * pending partial results are written in the order they first appeared, and —
 * unless the test wrote a final result of its own — a fallback result for the
 * test is merged into its own pending partial (or added last):
 *   - status: `infra` if the attempt ended by a protocol error or @p end is
 *     not EXITED, with a note saying what happened; otherwise the pending
 *     partial's status, else `pass` for @p exit_code 0 and `fail` otherwise;
 *   - testout "output.txt" unless the partial has a testout or lists
 *     output.txt (if files/output.txt is taken, output-2.txt, output-3.txt...).
 * The test's own result held by hooks.hold_own is written last. The hook
 * `settle` sees every own result written here, just before it is written.
 * Every testout becomes a copy of @p output_path (which the caller may
 * rewrite for the next test; nothing if @p output_path is NULL).
 * @param exit_code  the test's exit code, or -1 if there is none.
 * @param end_note   what happened, for a non-EXITED @p end (may be NULL).
 * @return 0, or a negative code if writing the results failed (detail in
 *         atx_error_last()); ATX_ESTATE if called twice.
 */
int fmf_control_finish(fmf_control *c, int exit_code, fmf_end_kind end, const char *end_note,
                       const char *output_path);

/** Number of result lines written to `results` so far (all of them after finish). */
size_t fmf_control_result_count(const fmf_control *c);

/** Result line @p i exactly as written, without its newline; NULL if out of range. Borrowed. */
const char *fmf_control_result_line(const fmf_control *c, size_t i);

/**
 * Result @p i parsed, owned by @p c and valid until the next call of this
 * function or fmf_control_free() (one is kept at a time). NULL if out of
 * range or out of memory.
 */
const struct json_object *fmf_control_result(const fmf_control *c, size_t i);

/**
 * The files of result @p i as paths relative to the attempt directory
 * ("files/log", "files/sub/test/log"), in the order of its `files` list,
 * NULL-terminated. Owned by @p c; NULL if @p i is out of range.
 */
const char *const *fmf_control_result_paths(const fmf_control *c, size_t i);

/** Free @p c (NULL is fine). Files already written stay on disk. */
void fmf_control_free(fmf_control *c);

/* ---- `duration` arguments ---- */

typedef enum {
    FMF_DURATION_SET = 0,     /* "5m": new limit, clock restarts */
    FMF_DURATION_ADD = 1,     /* "+5m": limit moves later */
    FMF_DURATION_SUB = 2,     /* "-5m": limit moves earlier */
    FMF_DURATION_SAVE = 3,    /* "save" */
    FMF_DURATION_RESTORE = 4  /* "restore" */
} fmf_duration_op;

/**
 * Parse a `duration` argument: `[+|-]<digits>[s|m|h|d]` (no unit: seconds),
 * `save` or `restore`, nothing else (no spaces, no fractions).
 * @param op  receives the operation.
 * @param ns  receives the amount in nanoseconds (0 for save/restore).
 * @return 0, or ATX_EINVAL (also when the amount does not fit in int64 ns).
 */
int fmf_duration_spec_parse(const char *spec, fmf_duration_op *op, int64_t *ns);

#endif
