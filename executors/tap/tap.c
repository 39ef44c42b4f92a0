/*
 * TAP 13 (testanything.org): a plan line `1..N`, test points
 * `ok|not ok [N] [- description] [# SKIP|TODO reason]`, YAML diagnostics
 * indented between `---` and `...` after a point, `Bail out!`, comments.
 * Lines that are none of these (a test's other output) are passed over;
 * indented subtests are too.
 */
#define _GNU_SOURCE 1
#include "tap.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct pending {
    bool have;
    tap_point p;
    char *desc, *directive;
    char *diag;
    size_t diag_len, diag_cap;
} pending;

/* The pending point to fn; fn's word whether to stop. */
static int flush(pending *pd, tap_point_fn fn, void *ud)
{
    int stop;

    if (!pd->have)
        return 0;
    pd->p.description = pd->desc ? pd->desc : "";
    pd->p.directive = pd->directive;
    /* A NUL byte ends the strings handed on: one first leaves none. */
    pd->p.diagnostics = pd->diag_len && pd->diag[0] ? pd->diag : NULL;
    stop = fn(ud, &pd->p);
    free(pd->desc);
    free(pd->directive);
    free(pd->diag);
    memset(pd, 0, sizeof(*pd));
    return stop;
}

static void diag_add(pending *pd, const char *line, size_t len)
{
    if (pd->diag_len + len + 2 > pd->diag_cap) {
        size_t cap = pd->diag_cap ? pd->diag_cap * 2 : 256;
        while (cap < pd->diag_len + len + 2)
            cap *= 2;
        if (cap > (1u << 20))
            return; /* diagnostics beyond 1 MiB are dropped */
        char *d = realloc(pd->diag, cap);
        if (!d)
            return;
        pd->diag = d;
        pd->diag_cap = cap;
    }
    memcpy(pd->diag + pd->diag_len, line, len);
    pd->diag_len += len;
    pd->diag[pd->diag_len++] = '\n';
    pd->diag[pd->diag_len] = '\0';
}

static char *dup_trim(const char *s, size_t len)
{
    while (len && isspace((unsigned char)*s)) {
        s++;
        len--;
    }
    while (len && isspace((unsigned char)s[len - 1]))
        len--;
    return strndup(s, len);
}

/* The decimal number at s (before end), saturated at LONG_MAX; the end of
 * its digits. The stream is not NUL-terminated: strtol() would read on. */
static const char *number(const char *s, const char *end, long *out)
{
    long n = 0;

    for (; s < end && isdigit((unsigned char)*s); s++)
        n = n > (LONG_MAX - 9) / 10 ? LONG_MAX : n * 10 + (*s - '0');
    *out = n;
    return s;
}

/* Split "desc # DIRECTIVE reason" at the first unescaped '#'. */
static void test_point(const char *s, size_t len, bool ok, long *count, pending *pd)
{
    const char *end = s + len;
    long num = -1;

    while (s < end && *s == ' ')
        s++;
    if (s < end && isdigit((unsigned char)*s))
        s = number(s, end, &num);
    while (s < end && *s == ' ')
        s++;
    if (s < end && *s == '-') {
        s++;
        while (s < end && *s == ' ')
            s++;
    }
    const char *hash = NULL;
    for (const char *q = s; q < end; q++) {
        if (*q == '\\' && q + 1 < end) {
            q++;
            continue;
        }
        if (*q == '#') {
            hash = q;
            break;
        }
    }
    (*count)++;
    pd->have = true;
    pd->p.number = num >= 0 ? num : *count;
    pd->p.kind = ok ? TAP_OK : TAP_NOT_OK;
    pd->desc = dup_trim(s, (size_t)((hash ? hash : end) - s));
    if (hash) {
        const char *d = hash + 1;
        while (d < end && *d == ' ')
            d++;
        size_t rest = (size_t)(end - d);
        bool skip = rest >= 4 && strncasecmp(d, "skip", 4) == 0;
        bool todo = rest >= 4 && strncasecmp(d, "todo", 4) == 0;
        if (skip || todo) {
            const char *r = d;
            while (r < end && !isspace((unsigned char)*r))
                r++;
            pd->directive = dup_trim(r, (size_t)(end - r));
            pd->p.kind = skip ? TAP_SKIP : ok ? TAP_TODO_PASSED : TAP_TODO_FAILED;
        }
    }
}

void tap_parse(const char *data, size_t len, tap_point_fn fn, void *ud, tap_summary *sum)
{
    pending pd = { 0 };
    const char *p = data, *end = data + len;
    bool in_yaml = false, plan_seen = false;
    long count = 0;

    memset(sum, 0, sizeof(*sum));
    sum->planned = -1;
    while (p < end && !sum->bailed && !sum->stopped) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t l = (size_t)((nl ? nl : end) - p);
        const char *line = p;
        p = nl ? nl + 1 : end;
        if (l && line[l - 1] == '\r')
            l--;
        if (in_yaml) {
            /* Indented YAML between "---" and "...". */
            const char *t = line;
            size_t tl = l;
            while (tl && *t == ' ') {
                t++;
                tl--;
            }
            if (tl == 3 && strncmp(t, "...", 3) == 0)
                in_yaml = false;
            else
                diag_add(&pd, line, l);
            continue;
        }
        if (l >= 5 && line[0] == ' ' && pd.have) {
            const char *t = line;
            size_t tl = l;
            while (tl && *t == ' ') {
                t++;
                tl--;
            }
            if (tl >= 3 && strncmp(t, "---", 3) == 0) {
                in_yaml = true;
                continue;
            }
        }
        if (l >= 2 && strncmp(line, "ok", 2) == 0 && (l == 2 || line[2] == ' ')) {
            if ((sum->stopped = flush(&pd, fn, ud) != 0))
                break;
            test_point(line + 2, l - 2, true, &count, &pd);
        } else if (l >= 6 && strncmp(line, "not ok", 6) == 0 && (l == 6 || line[6] == ' ')) {
            if ((sum->stopped = flush(&pd, fn, ud) != 0))
                break;
            test_point(line + 6, l - 6, false, &count, &pd);
        } else if (l >= 4 && strncmp(line, "1..", 3) == 0 && isdigit((unsigned char)line[3])) {
            if ((sum->stopped = flush(&pd, fn, ud) != 0))
                break;
            if (plan_seen) {
                snprintf(sum->problem, sizeof(sum->problem), "more than one plan line");
                continue;
            }
            plan_seen = true;
            number(line + 3, line + l, &sum->planned);
            const char *hash = memchr(line, '#', l);
            if (sum->planned == 0 && hash) {
                const char *d = hash + 1;
                while (d < line + l && *d == ' ')
                    d++;
                sum->skip_all = line + l - d >= 4 && strncasecmp(d, "skip", 4) == 0;
            }
        } else if (l >= 9 && strncmp(line, "Bail out!", 9) == 0) {
            if ((sum->stopped = flush(&pd, fn, ud) != 0))
                break;
            sum->bailed = true;
            char *why = dup_trim(line + 9, l - 9);
            snprintf(sum->bail_reason, sizeof(sum->bail_reason), "%s", why ? why : "");
            free(why);
        } else if (l && line[0] == '#' && pd.have) {
            diag_add(&pd, line, l);
        }
        /* Anything else: "TAP version 13", comments before any point,
         * indented subtests, the program's other output. */
    }
    /* A stop came right after a flush: nothing is pending then. */
    if (!sum->stopped)
        sum->stopped = flush(&pd, fn, ud) != 0;
    sum->seen = count;
    if (!sum->problem[0] && !sum->bailed && !sum->stopped) {
        if (sum->planned < 0)
            snprintf(sum->problem, sizeof(sum->problem), "no plan line (1..N): %ld test points "
                     "and the stream may have been cut short", count);
        else if (sum->planned != count)
            snprintf(sum->problem, sizeof(sum->problem), "planned %ld tests (1..%ld), %ld ran",
                     sum->planned, sum->planned, count);
    }
}
