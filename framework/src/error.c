/* Error codes, strerror and the thread-local last error. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local struct {
    atx_error err;
    char buf[1024];
} last;

const char *atx_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
#define ATX_ERROR_CASE_(name, value, text) case name: return text;
    ATX_ERROR_LIST(ATX_ERROR_CASE_)
#undef ATX_ERROR_CASE_
    default:
        break;
    }
    if (code < 0 && code > -4096) {
        /* strerrordesc_np is async-signal- and thread-safe and never allocates. */
        const char *s = strerrordesc_np(-code);
        if (s)
            return s;
    }
    return "unknown error";
}

const atx_error *atx_error_last(void)
{
    if (!last.err.message)
        last.err.message = "";
    return &last.err;
}

void atx_error_clear(void)
{
    last.err.code = 0;
    last.buf[0] = '\0';
    last.err.message = last.buf;
}

int atx_error_set(int code, const char *fmt, ...)
{
    char tmp[sizeof(last.buf)];
    va_list ap;

    /* Format aside first: callers often wrap the previous message. */
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    memcpy(last.buf, tmp, sizeof(tmp));
    last.err.code = code;
    last.err.message = last.buf;
    return code;
}

int atx_error_oom(void)
{
    /* No formatting: this is the out-of-memory path. */
    last.err.code = ATX_ENOMEM;
    last.err.message = "out of memory";
    return ATX_ENOMEM;
}
