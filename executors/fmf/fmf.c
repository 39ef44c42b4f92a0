/*
 * fmf metadata reader (see fmf.h).
 *
 * The semantics follow fmf (teemtee/fmf: fmf/base.py, fmf/context.py,
 * fmf/utils.py) and its documentation (docs/features.rst, docs/context.rst);
 * the code is our own. Where fmf's Python leans on Python (re, str(), int()),
 * the nearest libc equivalent is used: regular expressions are translated
 * from Python syntax to POSIX extended ones for regcomp().
 */
#define _GNU_SOURCE 1
#include "fmf.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------------ */
/* Errors                                                                     */
/* ------------------------------------------------------------------------ */

/* Writes "<file>:<line>: <msg>" (parts left out when file is NULL or line
 * is 0) as one line into err; returns rc. */
static int fail(char *err, size_t errlen, int rc, const char *file, int line,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int fail(char *err, size_t errlen, int rc, const char *file, int line,
                const char *fmt, ...)
{
    va_list ap;
    size_t n = 0;

    if (!err || errlen == 0)
        return rc;
    err[0] = '\0';
    if (file && line > 0)
        n = (size_t)snprintf(err, errlen, "%s:%d: ", file, line);
    else if (file)
        n = (size_t)snprintf(err, errlen, "%s: ", file);
    if (n < errlen) {
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - n, fmt, ap);
        va_end(ap);
    }
    /* One line, whatever the quoted input held. */
    for (char *p = err; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return rc;
}

static int oom(char *err, size_t errlen)
{
    return fail(err, errlen, -ENOMEM, NULL, 0, "out of memory");
}

/* ------------------------------------------------------------------------ */
/* Growable string                                                            */
/* ------------------------------------------------------------------------ */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_putn(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *s)
{
    sb_putn(b, s, strlen(s));
}

static void sb_putc(sbuf *b, char c)
{
    sb_putn(b, &c, 1);
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    sb_putn(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* The buffer's string (never NULL unless out of memory), ownership passes. */
static char *sb_take(sbuf *b)
{
    if (b->oom) {
        free(b->p);
        return NULL;
    }
    if (!b->p)
        return strdup("");
    return b->p;
}

static void sb_release(sbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* ------------------------------------------------------------------------ */
/* Python-flavoured regular expressions on top of regcomp()                  */
/* ------------------------------------------------------------------------ */

/*
 * fmf hands patterns to Python's re module. They are translated to POSIX
 * extended syntax: \d \s \w and friends become bracket classes, (?:...) and
 * (?P<name>...) become plain groups (group numbers are mapped back for
 * replacements), lazy quantifiers become greedy ones (the same strings
 * match; a substitution may take a longer match), a '{' that is not a
 * quantifier is literal. Lookarounds and other (?...) forms are refused.
 */
typedef struct pyre {
    regex_t re;
    bool compiled;
    size_t ngroups;      /* Python's groups */
    size_t *gmap;        /* Python group i (1-based) -> POSIX group; [0] unused */
    char **gnames;       /* name of Python group i or NULL */
} pyre;

static bool re_special(char c)
{
    return strchr(".[]()*+?{}|^$\\", c) != NULL;
}

static void re_literal(sbuf *o, char c)
{
    if (c == '{' || c == '}') {
        sb_putc(o, '[');
        sb_putc(o, c);
        sb_putc(o, ']');
    } else {
        if (re_special(c))
            sb_putc(o, '\\');
        sb_putc(o, c);
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The character of a simple escape (\n, \t, \xHH...) at p (after the
 * backslash); sets *used. -1 if it is not one. */
static int simple_escape(const char *p, size_t *used)
{
    *used = 1;
    switch (*p) {
    case 'n': return '\n';
    case 't': return '\t';
    case 'r': return '\r';
    case 'f': return '\f';
    case 'v': return '\v';
    case 'a': return '\a';
    case 'x':
        if (hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
            *used = 3;
            return hexval(p[1]) * 16 + hexval(p[2]);
        }
        return -2;
    default:
        return -1;
    }
}

/* A bracket expression: Python's [...] rebuilt the POSIX way (']' first,
 * '-' last, '^' not first). *pp points after '['. */
static int re_bracket(const char **pp, sbuf *o, char *msg, size_t msglen)
{
    const char *p = *pp;
    bool neg = false, has_rb = false, has_dash = false, has_caret = false,
         has_lb = false;
    sbuf body = { 0 };
    size_t items = 0;

    if (*p == '^') {
        neg = true;
        p++;
    }
    for (bool first = true; *p && (*p != ']' || first); first = false) {
        int c;
        const char *cls = NULL;
        size_t used;

        if (*p == '\\') {
            p++;
            if (!*p)
                break;
            switch (*p) {
            case 'd': cls = "0-9"; break;
            case 's': cls = "[:space:]"; break;
            case 'w': cls = "[:alnum:]_"; break;
            case 'D': case 'S': case 'W':
                sb_release(&body);
                snprintf(msg, msglen, "\\%c inside [...] is not supported", *p);
                return -1;
            default:
                c = simple_escape(p, &used);
                if (c == -2) {
                    sb_release(&body);
                    snprintf(msg, msglen, "bad \\x escape");
                    return -1;
                }
                if (c < 0) {
                    if (isalnum((unsigned char)*p)) {
                        sb_release(&body);
                        snprintf(msg, msglen, "bad escape \\%c", *p);
                        return -1;
                    }
                    c = (unsigned char)*p;
                    used = 1;
                }
                p += used - 1;
                break;
            }
            p++;
            if (cls) {
                sb_puts(&body, cls);
                items++;
                continue;
            }
        } else {
            c = (unsigned char)*p++;
        }
        /* A range? */
        if (*p == '-' && p[1] && p[1] != ']') {
            int hi;
            p++;
            if (*p == '\\') {
                p++;
                hi = simple_escape(p, &used);
                if (hi < 0) {
                    hi = (unsigned char)*p;
                    used = 1;
                }
                p += used;
            } else {
                hi = (unsigned char)*p++;
            }
            if (hi < c) {
                sb_release(&body);
                snprintf(msg, msglen, "bad character range");
                return -1;
            }
            sb_putc(&body, (char)c);
            sb_putc(&body, '-');
            sb_putc(&body, (char)hi);
            items++;
            continue;
        }
        switch (c) {
        case ']': has_rb = true; break;
        case '-': has_dash = true; break;
        case '^': has_caret = true; break;
        case '[': has_lb = true; break;
        default:
            sb_putc(&body, (char)c);
            items++;
            break;
        }
    }
    if (*p != ']') {
        sb_release(&body);
        snprintf(msg, msglen, "unterminated character set");
        return -1;
    }
    *pp = p + 1;
    if (!neg && has_caret && !has_rb && !has_lb && !has_dash && items == 0) {
        sb_puts(o, "\\^");
        sb_release(&body);
        return 0;
    }
    sb_putc(o, '[');
    if (neg)
        sb_putc(o, '^');
    if (has_rb)
        sb_putc(o, ']');
    else if (has_dash && has_caret && items == 0 && !has_lb && !neg) {
        /* Only '-' and '^': "-^" keeps both literal. */
        sb_puts(o, "-^]");
        sb_release(&body);
        return 0;
    }
    if (body.p)
        sb_puts(o, body.p);
    if (has_lb)
        sb_putc(o, '[');
    if (has_caret)
        sb_putc(o, '^');
    if (has_dash)
        sb_putc(o, '-');
    sb_putc(o, ']');
    sb_release(&body);
    return 0;
}

/* Digits at p as a number, saturating at 10^9. */
static unsigned long re_count(const char *p, size_t n)
{
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++)
        v = v >= 100000000UL ? 1000000000UL : v * 10 + (unsigned long)(p[i] - '0');
    return v;
}

/* Is p at a Python quantifier "{m}", "{m,}", "{,n}", "{m,n}"? Returns its
 * length (0 if not), the POSIX spelling in out and the largest count. */
static size_t re_brace(const char *p, char *out, size_t outlen, unsigned long *most)
{
    const char *q = p + 1;
    size_t a = 0, b = 0;

    while (isdigit((unsigned char)q[a]))
        a++;
    if (q[a] == '}') {
        if (a == 0)
            return 0;
        *most = re_count(q, a);
        snprintf(out, outlen, "{%lu}", *most);
        return a + 2;
    }
    if (q[a] != ',')
        return 0;
    while (isdigit((unsigned char)q[a + 1 + b]))
        b++;
    if (q[a + 1 + b] != '}' || (a == 0 && b == 0))
        return 0;
    *most = re_count(q, a) > re_count(q + a + 1, b) ? re_count(q, a) : re_count(q + a + 1, b);
    if (b)
        snprintf(out, outlen, "{%lu,%lu}", re_count(q, a), re_count(q + a + 1, b));
    else
        snprintf(out, outlen, "{%lu,}", re_count(q, a));
    return a + b + 3;
}

static void pyre_free(pyre *r)
{
    if (r->compiled)
        regfree(&r->re);
    for (size_t i = 0; r->gnames && i <= r->ngroups; i++)
        free(r->gnames[i]);
    free(r->gnames);
    free(r->gmap);
    memset(r, 0, sizeof(*r));
}

static int pyre_addgroup(pyre *r, size_t posix, const char *name, size_t namelen)
{
    size_t *gm = realloc(r->gmap, (r->ngroups + 2) * sizeof(*gm));
    if (!gm)
        return -1;
    r->gmap = gm;
    char **gn = realloc(r->gnames, (r->ngroups + 2) * sizeof(*gn));
    if (!gn)
        return -1;
    r->gnames = gn;
    if (r->ngroups == 0) {
        r->gmap[0] = 0;
        r->gnames[0] = NULL;
    }
    r->ngroups++;
    r->gmap[r->ngroups] = posix;
    r->gnames[r->ngroups] = name ? strndup(name, namelen) : NULL;
    if (name && !r->gnames[r->ngroups])
        return -1;
    return 0;
}

/* Python group number of the group called name (len bytes), 0 if none. */
static size_t pyre_named(const pyre *r, const char *name, size_t len)
{
    for (size_t i = 1; i <= r->ngroups; i++)
        if (r->gnames[i] && strlen(r->gnames[i]) == len && !memcmp(r->gnames[i], name, len))
            return i;
    return 0;
}

/* A quantifier at p ("*", "+", "?", "{m,n}")? Its length, its POSIX
 * spelling in out, and how many copies of its operand regcomp builds. */
static size_t re_quant(const char *p, char *out, size_t outlen, size_t *copies)
{
    size_t n;
    unsigned long most;

    if (*p == '*' || *p == '+' || *p == '?') {
        snprintf(out, outlen, "%c", *p);
        *copies = *p == '+' ? 2 : 1;
        return 1;
    }
    if (*p == '{' && (n = re_brace(p, out, outlen, &most)) != 0) {
        *copies = (size_t)most + 1;
        return n;
    }
    return 0;
}

/* glibc's regcomp copies a repeated operand once per repetition, and
 * nested repetitions multiply: keep the compiled size bounded. */
#define RE_MAX_COST 20000
#define RE_MAX_GROUPS 64

/* Compile a Python pattern. Returns 0, or -1 with a reason in msg. */
static int pyre_compile(pyre *r, const char *pat, bool icase, char *msg, size_t msglen)
{
    sbuf o = { 0 };
    size_t posix = 0;
    const char *p = pat;
    /* Size estimate: of the current group so far, and of the last atom
     * (0: nothing a quantifier could apply to). */
    size_t cost = 0, last = 0, saved[RE_MAX_GROUPS];
    int depth = 0;
    int rc;

    memset(r, 0, sizeof(*r));
    if (strncmp(p, "(?i)", 4) == 0) {
        icase = true;
        p += 4;
    }
    while (*p) {
        char c = *p, q[64];
        size_t used, copies, qn;
        int e;

        if ((qn = re_quant(p, q, sizeof(q), &copies)) != 0) {
            size_t more;
            char q2[64];
            if (!last) {
                snprintf(msg, msglen, "nothing to repeat");
                goto bad;
            }
            sb_puts(&o, q);
            p += qn;
            if (*p == '?' || *p == '+')
                p++;    /* lazy or possessive: POSIX only has greedy */
            if (re_quant(p, q2, sizeof(q2), &more) != 0) {
                snprintf(msg, msglen, "multiple repeat");
                goto bad;
            }
            if (last > RE_MAX_COST / copies)
                goto too_big;
            cost += last * (copies - 1);
            last *= copies;
            if (cost > RE_MAX_COST)
                goto too_big;
            continue;
        }
        if (c == '\\') {
            p++;
            c = *p;
            if (!c) {
                snprintf(msg, msglen, "bad escape (end of pattern)");
                goto bad;
            }
            switch (c) {
            case 'd': sb_puts(&o, "[0-9]"); break;
            case 'D': sb_puts(&o, "[^0-9]"); break;
            case 's': sb_puts(&o, "[[:space:]]"); break;
            case 'S': sb_puts(&o, "[^[:space:]]"); break;
            case 'w': sb_puts(&o, "[[:alnum:]_]"); break;
            case 'W': sb_puts(&o, "[^[:alnum:]_]"); break;
            case 'b': sb_puts(&o, "\\b"); break;
            case 'B': sb_puts(&o, "\\B"); break;
            case 'A': sb_putc(&o, '^'); break;
            case 'Z': sb_putc(&o, '$'); break;
            default:
                if (c >= '1' && c <= '9') {
                    size_t g = (size_t)(c - '0');
                    if (isdigit((unsigned char)p[1]) && g * 10 + (size_t)(p[1] - '0') <= r->ngroups) {
                        g = g * 10 + (size_t)(p[1] - '0');
                        p++;
                    }
                    if (g > r->ngroups || r->gmap[g] > 9) {
                        snprintf(msg, msglen, "invalid group reference %zu", g);
                        goto bad;
                    }
                    sb_printf(&o, "\\%zu", r->gmap[g]);
                    break;
                }
                e = simple_escape(p, &used);
                if (e == -2 || (e < 0 && isalnum((unsigned char)c))) {
                    snprintf(msg, msglen, "bad escape \\%c", c);
                    goto bad;
                }
                if (e < 0) {
                    e = (unsigned char)c;
                    used = 1;
                }
                re_literal(&o, (char)e);
                p += used - 1;
                break;
            }
            p++;
            /* anchors cannot be repeated; everything else is one atom */
            last = strchr("bBAZ", c) ? 0 : 1;
            cost += 1;
            continue;
        }
        if (c == '[') {
            p++;
            if (re_bracket(&p, &o, msg, msglen) < 0)
                goto bad;
            last = 1;
            cost += 1;
            continue;
        }
        if (c == '(') {
            if (depth >= RE_MAX_GROUPS) {
                snprintf(msg, msglen, "too many nested groups");
                goto bad;
            }
            if (p[1] == '?') {
                if (p[2] == ':') {
                    posix++;
                    sb_putc(&o, '(');
                    p += 3;
                    saved[depth++] = cost;
                    cost = 0;
                    last = 0;
                    continue;
                }
                if (p[2] == 'P' && p[3] == '<') {
                    const char *end = strchr(p + 4, '>');
                    if (!end || end == p + 4) {
                        snprintf(msg, msglen, "bad group name");
                        goto bad;
                    }
                    posix++;
                    if (pyre_addgroup(r, posix, p + 4, (size_t)(end - (p + 4))) < 0)
                        goto nomem;
                    sb_putc(&o, '(');
                    p = end + 1;
                    saved[depth++] = cost;
                    cost = 0;
                    last = 0;
                    continue;
                }
                if (p[2] == 'P' && p[3] == '=') {
                    const char *end = strchr(p + 4, ')');
                    size_t g = end ? pyre_named(r, p + 4, (size_t)(end - (p + 4))) : 0;
                    if (!g || r->gmap[g] > 9) {
                        snprintf(msg, msglen, "unknown group name in (?P=...)");
                        goto bad;
                    }
                    sb_printf(&o, "\\%zu", r->gmap[g]);
                    p = end + 1;
                    last = 1;
                    cost += 1;
                    continue;
                }
                snprintf(msg, msglen, "unsupported construct (?%c", p[2] ? p[2] : ' ');
                goto bad;
            }
            posix++;
            if (pyre_addgroup(r, posix, NULL, 0) < 0)
                goto nomem;
            sb_putc(&o, '(');
            p++;
            saved[depth++] = cost;
            cost = 0;
            last = 0;
            continue;
        }
        if (c == ')') {
            if (depth == 0) {
                snprintf(msg, msglen, "unbalanced parenthesis");
                goto bad;
            }
            sb_putc(&o, ')');
            p++;
            last = cost ? cost : 1;
            cost = saved[--depth] + last;
            if (cost > RE_MAX_COST)
                goto too_big;
            continue;
        }
        if (c == '|') {
            sb_putc(&o, '|');
            p++;
            last = 0;
            continue;
        }
        if (c == '^' || c == '$') {
            sb_putc(&o, c);
            p++;
            last = 0;
            continue;
        }
        if (c == '{' || c == '}')
            re_literal(&o, c);      /* not a quantifier (that was handled above) */
        else
            sb_putc(&o, c);
        p++;
        last = 1;
        cost += 1;
    }
    if (depth != 0) {
        snprintf(msg, msglen, "missing ), unterminated subpattern");
        goto bad;
    }
    if (o.oom)
        goto nomem;
    rc = regcomp(&r->re, o.p ? o.p : "", REG_EXTENDED | (icase ? REG_ICASE : 0));
    if (rc != 0) {
        char why[128];
        regerror(rc, &r->re, why, sizeof(why));
        snprintf(msg, msglen, "%s", why);
        goto bad;
    }
    r->compiled = true;
    sb_release(&o);
    return 0;
too_big:
    snprintf(msg, msglen, "the regular expression is too large");
    goto bad;
nomem:
    snprintf(msg, msglen, "out of memory");
bad:
    sb_release(&o);
    pyre_free(r);
    return -1;
}

/* re.search(): does the pattern match anywhere in s? */
static bool pyre_search(const pyre *r, const char *s)
{
    return regexec(&r->re, s, 0, NULL, 0) == 0;
}

/* re.match("^pattern$", s), i.e. the whole of s. */
static bool pyre_fullmatch(const pyre *r, const char *s)
{
    regmatch_t m[1];
    size_t len = strlen(s);

    /* POSIX is leftmost-longest: if a whole-string match exists starting at
     * 0, the leftmost match starting at 0 is the longest one. */
    if (regexec(&r->re, s, 1, m, 0) != 0)
        return false;
    return m[0].rm_so == 0 && (size_t)m[0].rm_eo == len;
}

/* Expand a Python replacement template for one match. */
static int pyre_expand(const pyre *r, const char *subj, const regmatch_t *m, size_t nm,
                       const char *repl, sbuf *o, char *msg, size_t msglen)
{
    for (const char *p = repl; *p; p++) {
        size_t g = 0, used;
        int e;

        if (*p != '\\') {
            sb_putc(o, *p);
            continue;
        }
        p++;
        if (!*p) {
            snprintf(msg, msglen, "bad escape (end of replacement)");
            return -1;
        }
        if (*p == 'g' && p[1] == '<') {
            const char *end = strchr(p + 2, '>');
            if (!end) {
                snprintf(msg, msglen, "missing > in \\g<...>");
                return -1;
            }
            size_t n = (size_t)(end - (p + 2));
            if (n > 0 && strspn(p + 2, "0123456789") == n)
                g = (size_t)strtoul(p + 2, NULL, 10);
            else if ((g = pyre_named(r, p + 2, n)) == 0) {
                snprintf(msg, msglen, "unknown group name in \\g<%.*s>", (int)n, p + 2);
                return -1;
            }
            p = end;
        } else if (isdigit((unsigned char)*p)) {
            g = (size_t)(*p - '0');
            if (isdigit((unsigned char)p[1])) {
                g = g * 10 + (size_t)(p[1] - '0');
                p++;
            }
            if (g == 0) {
                sb_putc(o, '\0');       /* "\0" is an octal escape: NUL ends the C string */
                continue;
            }
        } else if (*p == '\\') {
            sb_putc(o, '\\');
            continue;
        } else {
            e = simple_escape(p, &used);
            if (e >= 0) {
                sb_putc(o, (char)e);
                p += used - 1;
                continue;
            }
            if (isalpha((unsigned char)*p)) {
                snprintf(msg, msglen, "bad escape \\%c in replacement", *p);
                return -1;
            }
            sb_putc(o, '\\');
            sb_putc(o, *p);
            continue;
        }
        if (g > r->ngroups) {
            snprintf(msg, msglen, "invalid group reference %zu", g);
            return -1;
        }
        size_t pg = g == 0 ? 0 : r->gmap[g];
        if (pg < nm && m[pg].rm_so >= 0)
            sb_putn(o, subj + m[pg].rm_so, (size_t)(m[pg].rm_eo - m[pg].rm_so));
    }
    return 0;
}

/* re.sub(pattern, repl, subj): every non-overlapping match replaced.
 * Returns a new string in *out, or -1 (msg set). */
static int pyre_sub(const pyre *r, const char *subj, const char *repl, char **out,
                    char *msg, size_t msglen)
{
    size_t len = strlen(subj), pos = 0, nm = r->re.re_nsub + 1;
    regmatch_t *m = calloc(nm, sizeof(*m));
    sbuf o = { 0 };

    if (!m) {
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    while (pos <= len) {
        m[0].rm_so = (regoff_t)pos;
        m[0].rm_eo = (regoff_t)len;
        if (regexec(&r->re, subj, nm, m, REG_STARTEND) != 0)
            break;
        size_t so = (size_t)m[0].rm_so, eo = (size_t)m[0].rm_eo;
        sb_putn(&o, subj + pos, so - pos);
        if (pyre_expand(r, subj, m, nm, repl, &o, msg, msglen) < 0) {
            free(m);
            sb_release(&o);
            return -1;
        }
        pos = eo;
        if (so == eo) {
            /* An empty match: step over one character. */
            if (pos < len)
                sb_putc(&o, subj[pos]);
            pos++;
        }
    }
    if (pos < len)
        sb_puts(&o, subj + pos);
    free(m);
    *out = sb_take(&o);
    if (!*out) {
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Python's str() and == of json values                                      */
/* ------------------------------------------------------------------------ */

/* Python's repr() of a float: the shortest text that reads back the same. */
static void fmt_double(double d, char *buf, size_t len)
{
    int prec, exp10;
    char tmp[40];

    if (isnan(d)) {
        snprintf(buf, len, "nan");
        return;
    }
    if (isinf(d)) {
        snprintf(buf, len, d < 0 ? "-inf" : "inf");
        return;
    }
    for (prec = 1; prec < 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, d);
    exp10 = atoi(strchr(tmp, 'e') + 1);
    if (exp10 < -4 || exp10 >= 16) {
        snprintf(buf, len, "%s", tmp);
        return;
    }
    snprintf(buf, len, "%.*f", prec - 1 - exp10 > 0 ? prec - 1 - exp10 : 0, d);
    if (!strchr(buf, '.') && strlen(buf) + 2 < len)
        strcat(buf, ".0");
}

static void py_repr(sbuf *o, const json_object *v);

static void py_repr_str(sbuf *o, const char *s)
{
    char q = strchr(s, '\'') && !strchr(s, '"') ? '"' : '\'';

    sb_putc(o, q);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\\' || *p == (unsigned char)q) {
            sb_putc(o, '\\');
            sb_putc(o, (char)*p);
        } else if (*p == '\n') {
            sb_puts(o, "\\n");
        } else if (*p == '\r') {
            sb_puts(o, "\\r");
        } else if (*p == '\t') {
            sb_puts(o, "\\t");
        } else if (*p < 0x20 || *p == 0x7f) {
            sb_printf(o, "\\x%02x", *p);
        } else {
            sb_putc(o, (char)*p);
        }
    }
    sb_putc(o, q);
}

/* Python's str(): strings as they are, the rest as Python would print. */
static void py_str(sbuf *o, const json_object *v)
{
    if (json_object_get_type(v) == json_type_string)
        sb_puts(o, json_object_get_string((json_object *)v));
    else
        py_repr(o, v);
}

static void py_repr(sbuf *o, const json_object *v)
{
    char num[40];
    bool first = true;

    switch (json_object_get_type(v)) {
    case json_type_null:
        sb_puts(o, "None");
        break;
    case json_type_boolean:
        sb_puts(o, json_object_get_boolean(v) ? "True" : "False");
        break;
    case json_type_int:
        sb_printf(o, "%" PRId64, json_object_get_int64(v));
        break;
    case json_type_double:
        fmt_double(json_object_get_double(v), num, sizeof(num));
        sb_puts(o, num);
        break;
    case json_type_string:
        py_repr_str(o, json_object_get_string((json_object *)v));
        break;
    case json_type_array:
        sb_putc(o, '[');
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            if (i)
                sb_puts(o, ", ");
            py_repr(o, json_object_array_get_idx(v, i));
        }
        sb_putc(o, ']');
        break;
    case json_type_object:
        sb_putc(o, '{');
        for (struct lh_entry *e = json_object_get_object(v)->head; e; e = e->next) {
            if (!first)
                sb_puts(o, ", ");
            first = false;
            py_repr_str(o, (const char *)lh_entry_k(e));
            sb_puts(o, ": ");
            py_repr(o, (const json_object *)lh_entry_v(e));
        }
        sb_putc(o, '}');
        break;
    }
}

/* str(v) as a new string, NULL when out of memory. */
static char *py_str_dup(const json_object *v)
{
    sbuf o = { 0 };
    py_str(&o, v);
    return sb_take(&o);
}

static const char *py_type(const json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_null: return "NoneType";
    case json_type_boolean: return "bool";
    case json_type_int: return "int";
    case json_type_double: return "float";
    case json_type_string: return "str";
    case json_type_array: return "list";
    case json_type_object: return "dict";
    }
    return "?";
}

static bool is_num(const json_object *v)
{
    json_type t = json_object_get_type(v);
    return t == json_type_int || t == json_type_double;
}

/* Python's ==: numbers (bools included) by value, containers deeply. */
static bool py_eq(const json_object *a, const json_object *b)
{
    json_type ta = json_object_get_type(a), tb = json_object_get_type(b);
    bool na = ta == json_type_int || ta == json_type_double || ta == json_type_boolean;
    bool nb = tb == json_type_int || tb == json_type_double || tb == json_type_boolean;

    if (na && nb) {
        if (ta != json_type_double && tb != json_type_double)
            return json_object_get_int64(a) == json_object_get_int64(b);
        return json_object_get_double(a) == json_object_get_double(b);
    }
    if (ta != tb)
        return false;
    switch (ta) {
    case json_type_null:
        return true;
    case json_type_string:
        return json_object_get_string_len(a) == json_object_get_string_len(b) &&
               !memcmp(json_object_get_string((json_object *)a),
                       json_object_get_string((json_object *)b),
                       (size_t)json_object_get_string_len(a));
    case json_type_array:
        if (json_object_array_length(a) != json_object_array_length(b))
            return false;
        for (size_t i = 0; i < json_object_array_length(a); i++)
            if (!py_eq(json_object_array_get_idx(a, i), json_object_array_get_idx(b, i)))
                return false;
        return true;
    case json_type_object:
        if (json_object_object_length(a) != json_object_object_length(b))
            return false;
        for (struct lh_entry *e = json_object_get_object(a)->head; e; e = e->next) {
            json_object *bv;
            if (!json_object_object_get_ex(b, (const char *)lh_entry_k(e), &bv) ||
                !py_eq((const json_object *)lh_entry_v(e), bv))
                return false;
        }
        return true;
    default:
        return false;
    }
}

/* A deep copy; JSON null (NULL) stays NULL. *ok is cleared when out of memory. */
static json_object *jcopy(const json_object *v, bool *ok)
{
    json_object *d = NULL;

    if (!v)
        return NULL;
    if (json_object_deep_copy((json_object *)v, &d, NULL) != 0) {
        *ok = false;
        return NULL;
    }
    return d;
}

/* ------------------------------------------------------------------------ */
/* YAML to json                                                               */
/* ------------------------------------------------------------------------ */

typedef struct anchor {
    char *name;
    json_object *val;      /* NULL for null, or while in progress */
    json_object *lines;
    size_t weight;
    bool done;
} anchor;

typedef struct yload {
    yaml_parser_t p;
    const char *name;
    const char *buf;
    size_t len;
    char *err;
    size_t errlen;
    anchor *anchors;
    size_t nanchors, capanchors;
    size_t alias_left;
    size_t values_left;    /* values this file may still create */
    bool v11;              /* a %YAML 1.1 document */
    bool want_lines;
} yload;

#define TAG_PREFIX "tag:yaml.org,2002:"

static int y_fail(yload *y, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int y_fail(yload *y, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return fail(y->err, y->errlen, -EINVAL, y->name, line, "%s", msg);
}

/* libyaml's own error, with its 0-based mark made 1-based. */
static int y_parser_fail(yload *y)
{
    yaml_parser_t *p = &y->p;
    size_t line;

    if (p->error == YAML_MEMORY_ERROR)
        return oom(y->err, y->errlen);
    if (p->error == YAML_READER_ERROR) {
        /* Reader errors carry a byte offset, not a mark. */
        line = 1;
        for (size_t i = 0; i < p->problem_offset && i < y->len; i++)
            if (y->buf[i] == '\n')
                line++;
        return y_fail(y, (int)line, "%s", p->problem ? p->problem : "cannot read the input");
    }
    line = p->problem_mark.line + 1;
    if (p->context)
        return y_fail(y, (int)line, "%s (%s, line %zu)", p->problem ? p->problem : "syntax error",
                      p->context, p->context_mark.line + 1);
    return y_fail(y, (int)line, "%s", p->problem ? p->problem : "syntax error");
}

static int y_next(yload *y, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&y->p, ev))
        return y_parser_fail(y);
    return 0;
}

static bool all_digits(const char *s, size_t n, const char *set)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!strchr(set, s[i]) || s[i] == '\0')
            return false;
    return true;
}

/* Parse digits (underscores allowed) in base; false on overflow or none. */
static bool parse_uint(const char *s, size_t n, int base, uint64_t *out)
{
    uint64_t v = 0;
    bool any = false;

    for (size_t i = 0; i < n; i++) {
        int d;
        if (s[i] == '_')
            continue;
        d = hexval(s[i]);
        if (d < 0 || d >= base)
            return false;
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
            return false;
        v = v * (uint64_t)base + (uint64_t)d;
        any = true;
    }
    *out = v;
    return any;
}

/* A YAML int (core schema of 1.2 as ruamel.yaml reads it, or 1.1). */
static json_object *y_int(const char *s, size_t n, bool v11, bool *matched)
{
    bool neg = false;
    int base = 10;
    const char *d = s;
    size_t dn = n;
    uint64_t u;

    *matched = false;
    if (dn && (*d == '-' || *d == '+')) {
        neg = *d == '-';
        d++;
        dn--;
    }
    if (dn > 2 && d[0] == '0' && (d[1] == 'b' || d[1] == 'x' || d[1] == 'o')) {
        if (d[1] == 'o' && v11)
            return NULL;
        base = d[1] == 'b' ? 2 : d[1] == 'x' ? 16 : 8;
        d += 2;
        dn -= 2;
        if (!all_digits(d, dn, base == 2 ? "01_" : base == 8 ? "01234567_"
                                                             : "0123456789abcdefABCDEF_"))
            return NULL;
    } else if (!all_digits(d, dn, "0123456789_") || d[0] == '_') {
        return NULL;
    } else if (v11 && dn > 1 && d[0] == '0') {
        /* YAML 1.1: a leading 0 is octal. */
        if (!all_digits(d, dn, "01234567_"))
            return NULL;
        base = 8;
    }
    *matched = true;
    if (!parse_uint(d, dn, base, &u)) {
        /* Past int64 (Python has big ints): keep the magnitude as a float. */
        char *t = strndup(d, dn);
        double v = 0;
        if (!t)
            return NULL;
        for (char *p = t; *p; p++)
            if (*p != '_')
                v = v * base + hexval(*p);
        free(t);
        return json_object_new_double(neg ? -v : v);
    }
    if (neg && u > (uint64_t)INT64_MAX + 1)
        return json_object_new_double(-(double)u);
    if (!neg && u > (uint64_t)INT64_MAX)
        return json_object_new_double((double)u);
    return json_object_new_int64(neg ? (int64_t)(0 - u) : (int64_t)u);
}

static json_object *new_double(double v)
{
    char num[40];

    if (isnan(v) || isinf(v))
        return json_object_new_double(v);
    fmt_double(v, num, sizeof(num));
    return json_object_new_double_s(v, num);
}

/* A YAML float; *matched says whether s has float syntax. */
static json_object *y_float(const char *s, size_t n, bool v11, bool *matched)
{
    size_t i = 0, digits = 0, frac = 0;
    bool sign = false, dot = false;
    char *t, *w;
    double v;

    *matched = false;
    if (n >= 4 && (!strncmp(s + n - 4, ".inf", 4) || !strncmp(s + n - 4, ".Inf", 4) ||
                   !strncmp(s + n - 4, ".INF", 4))) {
        if (n == 4 || (n == 5 && (s[0] == '-' || s[0] == '+'))) {
            *matched = true;
            return json_object_new_double(s[0] == '-' ? -INFINITY : INFINITY);
        }
        return NULL;
    }
    if (n == 4 && (!strncmp(s, ".nan", 4) || !strncmp(s, ".NaN", 4) || !strncmp(s, ".NAN", 4))) {
        *matched = true;
        return json_object_new_double(NAN);
    }
    if (i < n && (s[i] == '-' || s[i] == '+')) {
        sign = true;
        i++;
    }
    if (i < n && s[i] == '.') {
        /* ".5": no sign allowed before it */
        if (sign)
            return NULL;
        dot = true;
        i++;
        while (i < n && (isdigit((unsigned char)s[i]) || s[i] == '_')) {
            frac++;
            i++;
        }
        if (!frac)
            return NULL;
    } else {
        if (i >= n || !isdigit((unsigned char)s[i]))
            return NULL;
        while (i < n && (isdigit((unsigned char)s[i]) || s[i] == '_')) {
            digits++;
            i++;
        }
        if (i < n && s[i] == '.') {
            dot = true;
            i++;
            while (i < n && (isdigit((unsigned char)s[i]) || s[i] == '_'))
                i++;
        }
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t ed = 0;
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+'))
            i++;
        else if (v11 || (!digits && dot))
            return NULL;        /* 1.1 and ".5e3" want a signed exponent */
        while (i < n && isdigit((unsigned char)s[i])) {
            ed++;
            i++;
        }
        if (!ed)
            return NULL;
        if (!dot && v11)
            return NULL;
    } else if (!dot) {
        return NULL;
    }
    if (i != n)
        return NULL;
    *matched = true;
    t = malloc(n + 1);
    if (!t)
        return NULL;
    w = t;
    for (size_t k = 0; k < n; k++)
        if (s[k] != '_')
            *w++ = s[k];
    *w = '\0';
    v = strtod(t, NULL);
    free(t);
    return new_double(v);
}

static bool y_is_null(const char *s, size_t n)
{
    return n == 0 || (n == 1 && s[0] == '~') ||
           (n == 4 && (!memcmp(s, "null", 4) || !memcmp(s, "Null", 4) || !memcmp(s, "NULL", 4)));
}

/* 1 true, 0 false, -1 not a bool. */
static int y_bool(const char *s, size_t n, bool v11)
{
    static const char *const t12[] = { "true", "True", "TRUE" };
    static const char *const f12[] = { "false", "False", "FALSE" };
    static const char *const t11[] = { "yes", "Yes", "YES", "on", "On", "ON" };
    static const char *const f11[] = { "no", "No", "NO", "off", "Off", "OFF" };

    for (size_t i = 0; i < ARRAY_SIZE(t12); i++) {
        if (strlen(t12[i]) == n && !memcmp(s, t12[i], n))
            return 1;
        if (strlen(f12[i]) == n && !memcmp(s, f12[i], n))
            return 0;
    }
    if (!v11)
        return -1;
    for (size_t i = 0; i < ARRAY_SIZE(t11); i++) {
        if (strlen(t11[i]) == n && !memcmp(s, t11[i], n))
            return 1;
        if (strlen(f11[i]) == n && !memcmp(s, f11[i], n))
            return 0;
    }
    return -1;
}

/*
 * A scalar's value. Quoted and block scalars are strings; plain ones are
 * resolved as YAML 1.2's core schema (what fmf's ruamel.yaml does), or 1.1
 * (yes/no/on/off, octal 0777) under a "%YAML 1.1" directive. Explicit
 * standard tags are honoured; timestamps stay strings. Sets *isnull for
 * null (json-c's NULL).
 */
static int y_scalar(yload *y, const yaml_event_t *ev, json_object **out, bool *isnull)
{
    const char *s = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    int line = (int)ev->start_mark.line + 1;
    bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    bool matched;
    int b;

    *isnull = false;
    *out = NULL;
    if (tag && strcmp(tag, "!") != 0) {
        const char *t = tag + strlen(TAG_PREFIX);
        if (strncmp(tag, TAG_PREFIX, strlen(TAG_PREFIX)) != 0)
            return y_fail(y, line, "unsupported tag '%s'", tag);
        if (!strcmp(t, "str") || !strcmp(t, "timestamp") || !strcmp(t, "binary")) {
            plain = false;
        } else if (!strcmp(t, "null")) {
            *isnull = true;
            return 0;
        } else if (!strcmp(t, "bool")) {
            if ((b = y_bool(s, n, y->v11)) < 0)
                return y_fail(y, line, "'%.*s' is not a bool", (int)(n > 64 ? 64 : n), s);
            *out = json_object_new_boolean(b);
            goto done;
        } else if (!strcmp(t, "int")) {
            *out = y_int(s, n, y->v11, &matched);
            if (!matched)
                return y_fail(y, line, "'%.*s' is not an int", (int)(n > 64 ? 64 : n), s);
            goto done;
        } else if (!strcmp(t, "float")) {
            *out = y_float(s, n, y->v11, &matched);
            if (!matched) {
                json_object *i = y_int(s, n, y->v11, &matched);
                if (!matched)
                    return y_fail(y, line, "'%.*s' is not a float", (int)(n > 64 ? 64 : n), s);
                *out = i ? new_double(json_object_get_double(i)) : NULL;
                json_object_put(i);
            }
            goto done;
        } else {
            return y_fail(y, line, "unsupported tag '%s'", tag);
        }
    } else if (tag) {
        plain = false;          /* "!" : a string */
    }
    if (plain) {
        if (y_is_null(s, n)) {
            *isnull = true;
            return 0;
        }
        if ((b = y_bool(s, n, y->v11)) >= 0) {
            *out = json_object_new_boolean(b);
            goto done;
        }
        *out = y_int(s, n, y->v11, &matched);
        if (matched)
            goto done;
        *out = y_float(s, n, y->v11, &matched);
        if (matched)
            goto done;
    }
    *out = json_object_new_string_len(s, (int)n);
done:
    if (!*out)
        return oom(y->err, y->errlen);
    return 0;
}

static anchor *y_anchor_find(yload *y, const char *name)
{
    for (size_t i = y->nanchors; i-- > 0;)
        if (!strcmp(y->anchors[i].name, name))
            return &y->anchors[i];
    return NULL;
}

/* Registers name; returns its index or -1. */
static long y_anchor_add(yload *y, const char *name)
{
    if (y->nanchors == y->capanchors) {
        size_t cap = y->capanchors ? y->capanchors * 2 : 8;
        anchor *a = realloc(y->anchors, cap * sizeof(*a));
        if (!a)
            return -1;
        y->anchors = a;
        y->capanchors = cap;
    }
    anchor *a = &y->anchors[y->nanchors];
    memset(a, 0, sizeof(*a));
    a->name = strdup(name);
    if (!a->name)
        return -1;
    return (long)y->nanchors++;
}

static void y_anchor_set(yload *y, long idx, json_object *val, json_object *lines, size_t weight)
{
    anchor *a;

    if (idx < 0)
        return;
    a = &y->anchors[idx];
    a->val = json_object_get(val);
    a->lines = json_object_get(lines);
    a->weight = weight;
    a->done = true;
}

static int y_node(yload *y, yaml_event_t *ev, int depth, json_object **out, json_object **lines,
                  size_t *weight);

/* The text of a mapping key (a scalar), as a new string. */
static int y_key(yload *y, yaml_event_t *ev, char **key, int *line, json_object **keyval)
{
    int l = (int)ev->start_mark.line + 1;
    json_object *v = NULL, *lines = NULL;
    size_t w;
    int rc;

    *line = l;
    *keyval = NULL;
    if (ev->type == YAML_SEQUENCE_START_EVENT || ev->type == YAML_MAPPING_START_EVENT)
        return y_fail(y, l, "a mapping key must be a scalar");
    if (ev->type == YAML_SCALAR_EVENT && ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
        !ev->data.scalar.tag) {
        /* Plain keys keep their text: "1", "true", "1.0" as written. */
        const char *s = (const char *)ev->data.scalar.value;
        size_t n = ev->data.scalar.length;
        if (y_is_null(s, n))
            return y_fail(y, l, "a mapping key must not be null");
        if (memchr(s, '\0', n))
            return y_fail(y, l, "a mapping key must not hold a NUL character");
        if (ev->data.scalar.anchor) {
            long idx = y_anchor_add(y, (const char *)ev->data.scalar.anchor);
            json_object *sv = json_object_new_string_len(s, (int)n);
            if (idx < 0 || !sv) {
                json_object_put(sv);
                return oom(y->err, y->errlen);
            }
            y_anchor_set(y, idx, sv, NULL, 1);
            json_object_put(sv);
        }
        *key = strndup(s, n);
        return *key ? 0 : oom(y->err, y->errlen);
    }
    rc = y_node(y, ev, 0, &v, &lines, &w);
    json_object_put(lines);
    if (rc < 0)
        return rc;
    switch (json_object_get_type(v)) {
    case json_type_null:
        return y_fail(y, l, "a mapping key must not be null");
    case json_type_array:
    case json_type_object:
        json_object_put(v);
        return y_fail(y, l, "a mapping key must be a scalar");
    default:
        break;
    }
    if (json_object_get_type(v) == json_type_string &&
        strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v)) {
        json_object_put(v);
        return y_fail(y, l, "a mapping key must not hold a NUL character");
    }
    *key = strdup(json_object_get_string(v));
    *keyval = v;
    return *key ? 0 : oom(y->err, y->errlen);
}

/* Adds the keys of src missing from dst (a "<<" merge). */
static int y_merge_into(yload *y, json_object *dst, json_object *dlines, json_object *src,
                        json_object *slines, int line)
{
    if (json_object_get_type(src) != json_type_object)
        return y_fail(y, line, "a merge key (<<) needs a mapping or a list of mappings");
    for (struct lh_entry *e = json_object_get_object(src)->head; e; e = e->next) {
        const char *k = (const char *)lh_entry_k(e);
        json_object *lv = NULL;
        bool ok = true;
        if (json_object_object_get_ex(dst, k, NULL))
            continue;
        json_object *c = jcopy((json_object *)lh_entry_v(e), &ok);
        if (!ok || json_object_object_add(dst, k, c) != 0)
            return oom(y->err, y->errlen);
        if (dlines && slines && json_object_object_get_ex(slines, k, &lv)) {
            json_object *lc = jcopy(lv, &ok);
            if (!ok || json_object_object_add(dlines, k, lc) != 0)
                return oom(y->err, y->errlen);
        }
    }
    return 0;
}

static int y_mapping(yload *y, yaml_event_t *start, int depth, json_object **out,
                     json_object **lines, size_t *weight)
{
    json_object *obj = json_object_new_object();
    json_object *lmap = y->want_lines ? json_object_new_object() : NULL;
    json_object *merges = NULL;    /* values of "<<" keys, in order */
    long aidx = -1;
    size_t w = 1;
    int rc = 0;

    if (!obj || (y->want_lines && !lmap)) {
        rc = oom(y->err, y->errlen);
        goto out;
    }
    if (start->data.mapping_start.anchor &&
        (aidx = y_anchor_add(y, (const char *)start->data.mapping_start.anchor)) < 0) {
        rc = oom(y->err, y->errlen);
        goto out;
    }
    for (;;) {
        yaml_event_t kev, vev;
        json_object *v = NULL, *vl = NULL, *kv = NULL;
        char *key = NULL;
        int kline;
        size_t vw = 0;
        bool is_merge;

        if ((rc = y_next(y, &kev)) < 0)
            goto out;
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            break;
        }
        is_merge = kev.type == YAML_SCALAR_EVENT &&
                   kev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                   kev.data.scalar.length == 2 && !memcmp(kev.data.scalar.value, "<<", 2) &&
                   (!kev.data.scalar.tag ||
                    !strcmp((const char *)kev.data.scalar.tag, TAG_PREFIX "merge"));
        rc = y_key(y, &kev, &key, &kline, &kv);
        yaml_event_delete(&kev);
        json_object_put(kv);
        if (rc < 0)
            goto out;
        if ((rc = y_next(y, &vev)) < 0) {
            free(key);
            goto out;
        }
        rc = y_node(y, &vev, depth + 1, &v, &vl, &vw);
        yaml_event_delete(&vev);
        if (rc < 0) {
            free(key);
            goto out;
        }
        w += vw;
        if (is_merge) {
            if (!merges && !(merges = json_object_new_array())) {
                free(key);
                json_object_put(v);
                json_object_put(vl);
                rc = oom(y->err, y->errlen);
                goto out;
            }
            json_object *pair = json_object_new_array();
            if (!pair) {
                free(key);
                json_object_put(v);
                json_object_put(vl);
                rc = oom(y->err, y->errlen);
                goto out;
            }
            json_object_array_add(pair, v);
            json_object_array_add(pair, vl);
            json_object_array_add(pair, json_object_new_int(kline));
            json_object_array_add(merges, pair);
            free(key);
            continue;
        }
        if (json_object_object_get_ex(obj, key, NULL)) {
            rc = y_fail(y, kline, "duplicate key '%s'", key);
            free(key);
            json_object_put(v);
            json_object_put(vl);
            goto out;
        }
        if (json_object_object_add(obj, key, v) != 0) {
            free(key);
            json_object_put(v);
            json_object_put(vl);
            rc = oom(y->err, y->errlen);
            goto out;
        }
        if (lmap) {
            json_object *entry = json_object_new_array_ext(2);
            if (!entry) {
                free(key);
                json_object_put(vl);
                rc = oom(y->err, y->errlen);
                goto out;
            }
            json_object_array_add(entry, json_object_new_int(kline));
            json_object_array_add(entry, vl);
            json_object_object_add(lmap, key, entry);
        } else {
            json_object_put(vl);
        }
        free(key);
    }
    /* "<<": keys of the merged mappings that the mapping does not set itself;
     * an earlier mapping wins over a later one. */
    for (size_t i = 0; merges && i < json_object_array_length(merges); i++) {
        json_object *pair = json_object_array_get_idx(merges, i);
        json_object *mv = json_object_array_get_idx(pair, 0);
        json_object *ml = json_object_array_get_idx(pair, 1);
        int mline = json_object_get_int(json_object_array_get_idx(pair, 2));

        if (json_object_get_type(mv) == json_type_array) {
            for (size_t k = 0; k < json_object_array_length(mv); k++)
                if ((rc = y_merge_into(y, obj, lmap, json_object_array_get_idx(mv, k), NULL,
                                       mline)) < 0)
                    goto out;
        } else if ((rc = y_merge_into(y, obj, lmap, mv, ml, mline)) < 0) {
            goto out;
        }
    }
    y_anchor_set(y, aidx, obj, lmap, w);
    *out = obj;
    *lines = lmap;
    *weight = w;
    obj = lmap = NULL;
out:
    json_object_put(merges);
    json_object_put(obj);
    json_object_put(lmap);
    return rc;
}

static int y_sequence(yload *y, yaml_event_t *start, int depth, json_object **out,
                      size_t *weight)
{
    json_object *arr = json_object_new_array();
    long aidx = -1;
    size_t w = 1;
    int rc = 0;

    if (!arr)
        return oom(y->err, y->errlen);
    if (start->data.sequence_start.anchor &&
        (aidx = y_anchor_add(y, (const char *)start->data.sequence_start.anchor)) < 0) {
        json_object_put(arr);
        return oom(y->err, y->errlen);
    }
    for (;;) {
        yaml_event_t ev;
        json_object *v = NULL, *vl = NULL;
        size_t vw = 0;

        if ((rc = y_next(y, &ev)) < 0)
            break;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        rc = y_node(y, &ev, depth + 1, &v, &vl, &vw);
        yaml_event_delete(&ev);
        json_object_put(vl);
        if (rc < 0)
            break;
        w += vw;
        if (json_object_array_add(arr, v) != 0) {
            json_object_put(v);
            rc = oom(y->err, y->errlen);
            break;
        }
    }
    if (rc < 0) {
        json_object_put(arr);
        return rc;
    }
    y_anchor_set(y, aidx, arr, NULL, w);
    *out = arr;
    *weight = w;
    return 0;
}

/* One node starting with ev (which the caller deletes). depth counts the
 * collections around it. */
static int y_node(yload *y, yaml_event_t *ev, int depth, json_object **out, json_object **lines,
                  size_t *weight)
{
    int line = (int)ev->start_mark.line + 1;
    const char *tag = NULL;

    *out = NULL;
    *lines = NULL;
    *weight = 1;
    if (y->values_left == 0)
        return y_fail(y, line, "more than %u values in one file", FMF_MAX_VALUES);
    y->values_left--;
    switch (ev->type) {
    case YAML_ALIAS_EVENT: {
        anchor *a = y_anchor_find(y, (const char *)ev->data.alias.anchor);
        bool ok = true;
        if (!a)
            return y_fail(y, line, "unknown alias '*%s'", (const char *)ev->data.alias.anchor);
        if (!a->done)
            return y_fail(y, line, "alias '*%s' refers to a node that contains it",
                          a->name);
        if (a->weight > y->alias_left)
            return y_fail(y, line, "aliases expand to more than %u values", FMF_MAX_ALIAS_NODES);
        y->alias_left -= a->weight;
        *out = jcopy(a->val, &ok);
        *lines = jcopy(a->lines, &ok);
        *weight = a->weight;
        if (!ok) {
            json_object_put(*out);
            json_object_put(*lines);
            *out = *lines = NULL;
            return oom(y->err, y->errlen);
        }
        return 0;
    }
    case YAML_SCALAR_EVENT: {
        bool isnull;
        int rc = y_scalar(y, ev, out, &isnull);
        if (rc < 0)
            return rc;
        if (ev->data.scalar.anchor) {
            long idx = y_anchor_add(y, (const char *)ev->data.scalar.anchor);
            if (idx < 0) {
                json_object_put(*out);
                *out = NULL;
                return oom(y->err, y->errlen);
            }
            y_anchor_set(y, idx, *out, NULL, 1);
        }
        return 0;
    }
    case YAML_SEQUENCE_START_EVENT:
        tag = (const char *)ev->data.sequence_start.tag;
        if (tag && strcmp(tag, TAG_PREFIX "seq") != 0)
            return y_fail(y, line, "unsupported tag '%s'", tag);
        if (depth >= FMF_MAX_YAML_DEPTH)
            return y_fail(y, line, "nested deeper than %d levels", FMF_MAX_YAML_DEPTH);
        return y_sequence(y, ev, depth, out, weight);
    case YAML_MAPPING_START_EVENT:
        tag = (const char *)ev->data.mapping_start.tag;
        if (tag && strcmp(tag, TAG_PREFIX "map") != 0)
            return y_fail(y, line, "unsupported tag '%s'", tag);
        if (depth >= FMF_MAX_YAML_DEPTH)
            return y_fail(y, line, "nested deeper than %d levels", FMF_MAX_YAML_DEPTH);
        return y_mapping(y, ev, depth, out, lines, weight);
    default:
        return y_fail(y, line, "unexpected YAML event");
    }
}

/*
 * Parse one file's text. *out: the top-level mapping, or NULL for an empty
 * document; *lines (if wanted): for each key of each mapping, [line, lines
 * of its value (a mapping) or null].
 */
static int y_load(const char *buf, size_t len, const char *name, bool want_lines,
                  json_object **out, json_object **lines, char *err, size_t errlen)
{
    yload y;
    yaml_event_t ev;
    json_object *doc = NULL, *dlines = NULL;
    int rc = 0;
    bool have_doc = false;

    memset(&y, 0, sizeof(y));
    y.name = name;
    y.buf = buf;
    y.len = len;
    y.err = err;
    y.errlen = errlen;
    y.alias_left = FMF_MAX_ALIAS_NODES;
    y.values_left = FMF_MAX_VALUES;
    y.want_lines = want_lines;
    if (!yaml_parser_initialize(&y.p))
        return oom(err, errlen);
    yaml_parser_set_input_string(&y.p, (const unsigned char *)buf, len);

    for (bool done = false; !done && rc == 0;) {
        if ((rc = y_next(&y, &ev)) < 0)
            break;
        switch (ev.type) {
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_END_EVENT:
            break;
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (have_doc) {
                rc = y_fail(&y, (int)ev.start_mark.line + 1,
                            "expected a single document, found another one");
                break;
            }
            have_doc = true;
            y.v11 = ev.data.document_start.version_directive &&
                    ev.data.document_start.version_directive->major == 1 &&
                    ev.data.document_start.version_directive->minor == 1;
            break;
        default: {
            size_t w;
            int line = (int)ev.start_mark.line + 1;
            rc = y_node(&y, &ev, 0, &doc, &dlines, &w);
            if (rc == 0 && doc && json_object_get_type(doc) != json_type_object)
                rc = y_fail(&y, line, "the top level must be a mapping, not a %s",
                            json_object_get_type(doc) == json_type_array ? "list" : "scalar");
            break;
        }
        }
        yaml_event_delete(&ev);
    }
    for (size_t i = 0; i < y.nanchors; i++) {
        free(y.anchors[i].name);
        json_object_put(y.anchors[i].val);
        json_object_put(y.anchors[i].lines);
    }
    free(y.anchors);
    yaml_parser_delete(&y.p);
    if (rc < 0) {
        json_object_put(doc);
        json_object_put(dlines);
        return rc;
    }
    *out = doc;
    if (lines)
        *lines = dlines;
    else
        json_object_put(dlines);
    return 0;
}

int fmf_parse_buffer(const char *data, size_t len, const char *name, struct json_object **out,
                     char *err, size_t errlen)
{
    json_object *doc = NULL;
    int rc;

    if (!out || (!data && len))
        return fail(err, errlen, -EINVAL, NULL, 0, "invalid arguments");
    if (len > FMF_MAX_FILE_SIZE)
        return fail(err, errlen, -EFBIG, name, 0, "larger than %u bytes", FMF_MAX_FILE_SIZE);
    rc = y_load(data ? data : "", len, name ? name : "<input>", false, &doc, NULL, err, errlen);
    if (rc < 0)
        return rc;
    *out = doc;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Merging (the key suffixes + +< - -~ ~)                                    */
/* ------------------------------------------------------------------------ */

/* Where merged keys came from, for error messages. */
typedef struct blame {
    const char *node;            /* node name, or NULL */
    const json_object *src;      /* key -> [file index, line], or NULL */
    char *const *files;          /* file names by index */
    const char *file;            /* otherwise this file and line */
    int line;
} blame;

static void blame_at(const blame *b, const char *key, const char **file, int *line)
{
    json_object *at;

    *file = b->file;
    *line = b->line;
    if (b->src && key && json_object_object_get_ex(b->src, key, &at)) {
        *file = b->files[json_object_get_int(json_object_array_get_idx(at, 0))];
        *line = json_object_get_int(json_object_array_get_idx(at, 1));
    }
}

static int merge_fail(const blame *b, const char *key, char *err, size_t errlen,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int merge_fail(const blame *b, const char *key, char *err, size_t errlen,
                      const char *fmt, ...)
{
    char why[512];
    const char *file;
    int line;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    blame_at(b, key, &file, &line);
    return fail(err, errlen, -EINVAL, file, line, "%s%scannot merge key '%s': %s",
                b->node ? b->node : "", b->node ? ": " : "", key, why);
}

/* The blame for keys nested under key (same place as key itself). */
static blame blame_nested(const blame *b, const char *key)
{
    blame n = { .node = b->node, .files = b->files };
    blame_at(b, key, &n.file, &n.line);
    return n;
}

static int merge_special(json_object *dst, const json_object *src, const blame *b,
                         char *err, size_t errlen);

static int set_key(json_object *dst, const char *key, json_object *v, char *err, size_t errlen)
{
    if (json_object_object_add(dst, key, v) != 0) {
        json_object_put(v);
        return oom(err, errlen);
    }
    return 0;
}

/* Python's a + b (or a - b) of two numbers. */
static json_object *num_op(const json_object *a, const json_object *b, bool sub)
{
    if (json_object_get_type(a) == json_type_int && json_object_get_type(b) == json_type_int) {
        int64_t x = json_object_get_int64(a), y = json_object_get_int64(b), r;
        if (!(sub ? __builtin_sub_overflow(x, y, &r) : __builtin_add_overflow(x, y, &r)))
            return json_object_new_int64(r);
    }
    double x = json_object_get_double(a), y = json_object_get_double(b);
    return new_double(sub ? x - y : x + y);
}

static int merge_plus(json_object *dst, const char *base, const char *key, const json_object *val,
                      bool prepend, const blame *b, char *err, size_t errlen)
{
    json_object *cur, *res = NULL;
    bool ok = true;
    json_type tc, tv = json_object_get_type(val);
    blame nb = blame_nested(b, key);

    if (!json_object_object_get_ex(dst, base, &cur)) {
        if (tv == json_type_object) {
            /* Nested keys may carry suffixes too: merge into an empty one. */
            if (!(res = json_object_new_object()))
                return oom(err, errlen);
            int rc = merge_special(res, val, &nb, err, errlen);
            if (rc < 0) {
                json_object_put(res);
                return rc;
            }
            return set_key(dst, base, res, err, errlen);
        }
        res = jcopy(val, &ok);
        return ok ? set_key(dst, base, res, err, errlen) : oom(err, errlen);
    }
    tc = json_object_get_type(cur);
    if (tc == json_type_array && tv == json_type_object) {
        /* Every dictionary of the list gets the merge. */
        for (size_t i = 0; i < json_object_array_length(cur); i++) {
            json_object *item = json_object_array_get_idx(cur, i);
            if (json_object_get_type(item) != json_type_object)
                return merge_fail(b, key, err, errlen, "item %zu of the list is a %s, not a dict",
                                  i, py_type(item));
            int rc = merge_special(item, val, &nb, err, errlen);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    if (tc == json_type_object && tv == json_type_array) {
        /* A list of copies of the dictionary, each merged with one item. */
        if (!(res = json_object_new_array()))
            return oom(err, errlen);
        for (size_t i = 0; i < json_object_array_length(val); i++) {
            json_object *item = json_object_array_get_idx(val, i), *c;
            int rc;
            if (json_object_get_type(item) != json_type_object) {
                json_object_put(res);
                return merge_fail(b, key, err, errlen, "item %zu of the list is a %s, not a dict",
                                  i, py_type(item));
            }
            c = jcopy(cur, &ok);
            if (!ok || json_object_array_add(res, c) != 0) {
                json_object_put(c);
                json_object_put(res);
                return oom(err, errlen);
            }
            if ((rc = merge_special(c, item, &nb, err, errlen)) < 0) {
                json_object_put(res);
                return rc;
            }
        }
        return set_key(dst, base, res, err, errlen);
    }
    if (tc == json_type_object && tv == json_type_object)
        return merge_special(cur, val, &nb, err, errlen);
    if (is_num(cur) && is_num(val)) {
        res = num_op(cur, val, false);
    } else if (tc == json_type_string && tv == json_type_string) {
        sbuf s = { 0 };
        const json_object *first = prepend ? val : cur, *second = prepend ? cur : val;
        sb_putn(&s, json_object_get_string((json_object *)first),
                (size_t)json_object_get_string_len(first));
        sb_putn(&s, json_object_get_string((json_object *)second),
                (size_t)json_object_get_string_len(second));
        if (s.oom) {
            sb_release(&s);
            return oom(err, errlen);
        }
        res = json_object_new_string_len(s.p ? s.p : "", (int)s.len);
        sb_release(&s);
    } else if (tc == json_type_array && tv == json_type_array) {
        const json_object *first = prepend ? val : cur, *second = prepend ? cur : val;
        if (!(res = json_object_new_array()))
            return oom(err, errlen);
        for (int k = 0; k < 2; k++) {
            const json_object *from = k ? second : first;
            for (size_t i = 0; i < json_object_array_length(from); i++) {
                json_object *c = jcopy(json_object_array_get_idx(from, i), &ok);
                if (!ok || json_object_array_add(res, c) != 0) {
                    json_object_put(c);
                    json_object_put(res);
                    return oom(err, errlen);
                }
            }
        }
    } else {
        return merge_fail(b, key, err, errlen, "cannot add a %s to a %s", py_type(val),
                          py_type(cur));
    }
    if (!res)
        return oom(err, errlen);
    return set_key(dst, base, res, err, errlen);
}

/* Compile a regex for a merge, reporting a bad one against key. */
static int merge_regex(pyre *r, const char *pat, const blame *b, const char *key,
                       char *err, size_t errlen)
{
    char why[200];

    if (pyre_compile(r, pat, false, why, sizeof(why)) < 0)
        return merge_fail(b, key, err, errlen, "bad regular expression '%s': %s", pat, why);
    return 0;
}

static int merge_minus(json_object *dst, const char *base, const char *key, const json_object *val,
                       const blame *b, char *err, size_t errlen)
{
    json_object *cur, *res = NULL;
    json_type tc, tv = json_object_get_type(val);
    bool ok = true;

    if (!json_object_object_get_ex(dst, base, &cur))
        return 0;       /* nothing inherited to reduce */
    tc = json_object_get_type(cur);
    if (is_num(cur) && is_num(val)) {
        res = num_op(cur, val, true);
    } else if (tc == json_type_string && tv == json_type_string) {
        /* The regular expression's matches are removed. */
        pyre r;
        char why[200], *s = NULL;
        int rc = merge_regex(&r, json_object_get_string((json_object *)val), b, key, err, errlen);
        if (rc < 0)
            return rc;
        rc = pyre_sub(&r, json_object_get_string(cur), "", &s, why, sizeof(why));
        pyre_free(&r);
        if (rc < 0)
            return merge_fail(b, key, err, errlen, "%s", why);
        res = json_object_new_string(s);
        free(s);
    } else if (tc == json_type_array && tv == json_type_array) {
        if (!(res = json_object_new_array()))
            return oom(err, errlen);
        for (size_t i = 0; i < json_object_array_length(cur); i++) {
            json_object *item = json_object_array_get_idx(cur, i), *c;
            bool drop = false;
            for (size_t k = 0; k < json_object_array_length(val) && !drop; k++)
                drop = py_eq(item, json_object_array_get_idx(val, k));
            if (drop)
                continue;
            c = jcopy(item, &ok);
            if (!ok || json_object_array_add(res, c) != 0) {
                json_object_put(c);
                json_object_put(res);
                return oom(err, errlen);
            }
        }
    } else if (tc == json_type_object && tv == json_type_array) {
        for (size_t k = 0; k < json_object_array_length(val); k++) {
            json_object *item = json_object_array_get_idx(val, k);
            if (json_object_get_type(item) == json_type_string)
                json_object_object_del(cur, json_object_get_string(item));
        }
        return 0;
    } else {
        return merge_fail(b, key, err, errlen, "cannot remove a %s from a %s", py_type(val),
                          py_type(cur));
    }
    if (!res)
        return oom(err, errlen);
    return set_key(dst, base, res, err, errlen);
}

/* The patterns of a "-~" or "~" value: a string or a list of strings. */
static int merge_strings(const json_object *val, const char ***out, size_t *n, const blame *b,
                         const char *key, char *err, size_t errlen)
{
    size_t count = json_object_get_type(val) == json_type_array ? json_object_array_length(val) : 1;
    const char **v;

    if (json_object_get_type(val) != json_type_string &&
        json_object_get_type(val) != json_type_array)
        return merge_fail(b, key, err, errlen, "expected a string or a list of strings, got a %s",
                          py_type(val));
    v = calloc(count ? count : 1, sizeof(*v));
    if (!v)
        return oom(err, errlen);
    for (size_t i = 0; i < count; i++) {
        const json_object *s = json_object_get_type(val) == json_type_array
                             ? json_object_array_get_idx(val, i) : val;
        if (json_object_get_type(s) != json_type_string) {
            free(v);
            return merge_fail(b, key, err, errlen, "expected a list of strings, found a %s",
                              py_type(s));
        }
        v[i] = json_object_get_string((json_object *)s);
    }
    *out = v;
    *n = count;
    return 0;
}

static int merge_minus_regexp(json_object *dst, const char *base, const char *key,
                              const json_object *val, const blame *b, char *err, size_t errlen)
{
    json_object *cur;
    const char **pats = NULL;
    size_t np = 0, ok_n = 0;
    pyre *res = NULL;
    int rc = 0;
    json_type tc;

    if (!json_object_object_get_ex(dst, base, &cur))
        return 0;
    tc = json_object_get_type(cur);
    if (tc != json_type_array && tc != json_type_string && tc != json_type_object)
        return merge_fail(b, key, err, errlen, "cannot remove matches from a %s", py_type(cur));
    if ((rc = merge_strings(val, &pats, &np, b, key, err, errlen)) < 0)
        return rc;
    if (!(res = calloc(np ? np : 1, sizeof(*res)))) {
        free(pats);
        return oom(err, errlen);
    }
    for (; ok_n < np; ok_n++)
        if ((rc = merge_regex(&res[ok_n], pats[ok_n], b, key, err, errlen)) < 0)
            goto out;

    if (tc == json_type_string) {
        for (size_t i = 0; i < np; i++)
            if (pyre_search(&res[i], json_object_get_string(cur))) {
                rc = set_key(dst, base, json_object_new_string(""), err, errlen);
                break;
            }
    } else if (tc == json_type_object) {
        const char **drop = calloc(json_object_object_length(cur) + 1, sizeof(*drop));
        size_t nd = 0;
        if (!drop) {
            rc = oom(err, errlen);
            goto out;
        }
        for (struct lh_entry *e = json_object_get_object(cur)->head; e; e = e->next)
            for (size_t i = 0; i < np; i++)
                if (pyre_search(&res[i], (const char *)lh_entry_k(e))) {
                    drop[nd++] = (const char *)lh_entry_k(e);
                    break;
                }
        /* Deleting frees the key: copy the names first. */
        for (size_t i = 0; i < nd; i++) {
            char *k = strdup(drop[i]);
            drop[i] = k;
        }
        for (size_t i = 0; i < nd; i++) {
            if (drop[i])
                json_object_object_del(cur, drop[i]);
            free((char *)drop[i]);
        }
        free(drop);
    } else {
        json_object *keep = json_object_new_array();
        if (!keep) {
            rc = oom(err, errlen);
            goto out;
        }
        for (size_t k = 0; k < json_object_array_length(cur); k++) {
            json_object *item = json_object_array_get_idx(cur, k);
            char *s = py_str_dup(item);
            bool hit = false, ok = true;
            if (!s) {
                json_object_put(keep);
                rc = oom(err, errlen);
                goto out;
            }
            for (size_t i = 0; i < np && !hit; i++)
                hit = pyre_search(&res[i], s);
            free(s);
            if (hit)
                continue;
            json_object *c = jcopy(item, &ok);
            if (!ok || json_object_array_add(keep, c) != 0) {
                json_object_put(c);
                json_object_put(keep);
                rc = oom(err, errlen);
                goto out;
            }
        }
        rc = set_key(dst, base, keep, err, errlen);
    }
out:
    for (size_t i = 0; i < ok_n; i++)
        pyre_free(&res[i]);
    free(res);
    free(pats);
    return rc;
}

/* "<d>pattern<d>replacement<d>" split into its parts (pattern and
 * replacement are new strings). */
static int split_subst(const char *spec, char **pat, char **repl)
{
    size_t n = strlen(spec);
    const char *mid;
    char d;

    if (n < 3)
        return -1;
    d = spec[0];
    if (spec[n - 1] != d)
        return -1;
    mid = memchr(spec + 1, d, n - 2);
    if (!mid || memchr(mid + 1, d, (size_t)(spec + n - 1 - (mid + 1))))
        return -1;
    *pat = strndup(spec + 1, (size_t)(mid - spec - 1));
    *repl = strndup(mid + 1, (size_t)(spec + n - 1 - (mid + 1)));
    if (!*pat || !*repl) {
        free(*pat);
        free(*repl);
        return -2;
    }
    return 0;
}

static int merge_regexp(json_object *dst, const char *base, const char *key, const json_object *val,
                        const blame *b, char *err, size_t errlen)
{
    json_object *cur;
    const char **specs = NULL;
    size_t ns = 0;
    int rc;
    json_type tc;

    if (!json_object_object_get_ex(dst, base, &cur))
        return 0;
    tc = json_object_get_type(cur);
    if (tc != json_type_array && tc != json_type_string)
        return merge_fail(b, key, err, errlen, "cannot substitute in a %s", py_type(cur));
    if ((rc = merge_strings(val, &specs, &ns, b, key, err, errlen)) < 0)
        return rc;
    for (size_t i = 0; i < ns && rc == 0; i++) {
        char *pat = NULL, *repl = NULL, why[200];
        pyre r;
        int sr = split_subst(specs[i], &pat, &repl);

        if (sr == -2) {
            rc = oom(err, errlen);
            break;
        }
        if (sr < 0) {
            rc = merge_fail(b, key, err, errlen,
                            "'%s' is not <d>pattern<d>replacement<d> (one delimiter, three times)",
                            specs[i]);
            break;
        }
        if ((rc = merge_regex(&r, pat, b, key, err, errlen)) < 0) {
            free(pat);
            free(repl);
            break;
        }
        json_object_object_get_ex(dst, base, &cur);
        if (json_object_get_type(cur) == json_type_string) {
            char *s = NULL;
            if (pyre_sub(&r, json_object_get_string(cur), repl, &s, why, sizeof(why)) < 0)
                rc = merge_fail(b, key, err, errlen, "%s", why);
            else
                rc = set_key(dst, base, json_object_new_string(s), err, errlen);
            free(s);
        } else {
            json_object *out = json_object_new_array();
            for (size_t k = 0; out && rc == 0 && k < json_object_array_length(cur); k++) {
                json_object *item = json_object_array_get_idx(cur, k);
                char *s = NULL;
                if (json_object_get_type(item) != json_type_string) {
                    rc = merge_fail(b, key, err, errlen, "item %zu of the list is a %s, not a str",
                                    k, py_type(item));
                    break;
                }
                if (pyre_sub(&r, json_object_get_string(item), repl, &s, why, sizeof(why)) < 0) {
                    rc = merge_fail(b, key, err, errlen, "%s", why);
                    break;
                }
                json_object_array_add(out, json_object_new_string(s));
                free(s);
            }
            if (!out)
                rc = oom(err, errlen);
            if (rc == 0)
                rc = set_key(dst, base, out, err, errlen);
            else
                json_object_put(out);
        }
        pyre_free(&r);
        free(pat);
        free(repl);
    }
    free(specs);
    return rc;
}

static bool ends_with(const char *s, size_t n, const char *suf)
{
    size_t k = strlen(suf);
    return n >= k && !memcmp(s + n - k, suf, k);
}

/* key with every trailing character from set removed (Python's rstrip). */
static char *rstrip_dup(const char *key, const char *set)
{
    size_t n = strlen(key);
    while (n > 0 && strchr(set, key[n - 1]))
        n--;
    return strndup(key, n);
}

/* One key of a merge: its suffix says how. */
static int merge_one(json_object *dst, const char *key, const json_object *val, const blame *b,
                     char *err, size_t errlen)
{
    size_t n = strlen(key);
    char *base = NULL;
    int rc;

    if (ends_with(key, n, "+")) {
        if (!(base = rstrip_dup(key, "+")))
            return oom(err, errlen);
        rc = merge_plus(dst, base, key, val, false, b, err, errlen);
    } else if (ends_with(key, n, "+<")) {
        if (!(base = rstrip_dup(key, "+<")))
            return oom(err, errlen);
        rc = merge_plus(dst, base, key, val, true, b, err, errlen);
    } else if (ends_with(key, n, "-~")) {
        if (!(base = rstrip_dup(key, "-~")))
            return oom(err, errlen);
        rc = merge_minus_regexp(dst, base, key, val, b, err, errlen);
    } else if (ends_with(key, n, "-")) {
        if (!(base = rstrip_dup(key, "-")))
            return oom(err, errlen);
        rc = merge_minus(dst, base, key, val, b, err, errlen);
    } else if (ends_with(key, n, "~")) {
        if (!(base = rstrip_dup(key, "~")))
            return oom(err, errlen);
        rc = merge_regexp(dst, base, key, val, b, err, errlen);
    } else {
        bool ok = true;
        json_object *c = jcopy(val, &ok);
        rc = ok ? set_key(dst, key, c, err, errlen) : oom(err, errlen);
    }
    free(base);
    return rc;
}

static int merge_special(json_object *dst, const json_object *src, const blame *b,
                         char *err, size_t errlen)
{
    if (json_object_get_type(src) != json_type_object)
        return 0;
    for (struct lh_entry *e = json_object_get_object(src)->head; e; e = e->next) {
        int rc = merge_one(dst, (const char *)lh_entry_k(e), (const json_object *)lh_entry_v(e),
                           b, err, errlen);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* A node's own keys into its data: a key that does not merge is left out
 * and the others still merge. 0; 1 when a key failed (the first failure in
 * err); -ENOMEM. */
static int merge_keys(json_object *dst, const json_object *src, const blame *b, char *err,
                      size_t errlen)
{
    char later[8];      /* the messages of later failures are not kept */
    int bad = 0;

    for (struct lh_entry *e = json_object_get_object(src)->head; e; e = e->next) {
        int rc = merge_one(dst, (const char *)lh_entry_k(e), (const json_object *)lh_entry_v(e),
                           b, bad ? later : err, bad ? sizeof(later) : errlen);
        if (rc == -ENOMEM)
            return oom(err, errlen);
        if (rc < 0)
            bad = 1;
    }
    return bad;
}

int fmf_merge(struct json_object *data, const struct json_object *src, char *err, size_t errlen)
{
    blame b = { 0 };

    if (json_object_get_type(data) != json_type_object ||
        json_object_get_type(src) != json_type_object)
        return fail(err, errlen, -EINVAL, NULL, 0, "fmf_merge needs two objects");
    return merge_special(data, src, &b, err, errlen);
}

/* ------------------------------------------------------------------------ */
/* Context conditions                                                         */
/* ------------------------------------------------------------------------ */

enum cop {
    OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE,
    OP_MEQ, OP_MNE, OP_MLT, OP_MLE, OP_MGT, OP_MGE,
    OP_MATCH, OP_NMATCH,
};

/* In fmf's order: the first one that lets the expression parse wins. */
static const struct {
    const char *text;
    enum cop op;
} cops[] = {
    { "==", OP_EQ }, { "!=", OP_NE }, { "<", OP_LT }, { "<=", OP_LE }, { ">", OP_GT },
    { ">=", OP_GE }, { "~=", OP_MEQ }, { "~!=", OP_MNE }, { "~<", OP_MLT },
    { "~<=", OP_MLE }, { "~>", OP_MGT }, { "~>=", OP_MGE }, { "~", OP_MATCH },
    { "!~", OP_NMATCH },
};

enum { CE_BOOL, CE_DEFINED, CE_UNDEFINED, CE_CMP };

typedef struct cexpr {
    int kind;
    bool bval;
    size_t group;        /* or-group index */
    char *dim;
    enum cop op;
    char **vals;
    size_t nvals;
} cexpr;

typedef struct crule {
    cexpr *e;
    size_t n, cap;
    size_t ngroups;
} crule;

#define CANNOT (-1)

static void crule_free(crule *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->e[i].dim);
        for (size_t k = 0; k < r->e[i].nvals; k++)
            free(r->e[i].vals[k]);
        free(r->e[i].vals);
    }
    free(r->e);
    memset(r, 0, sizeof(*r));
}

/* Python's \w for str patterns, approximately: non-ASCII counts as a letter. */
static bool is_word(unsigned char c)
{
    return isalnum(c) || c == '_' || c >= 0x80;
}

/* Finds the next standalone word w (like \bw\b) in s[from, to). */
static const char *find_word(const char *s, const char *from, const char *to, const char *w)
{
    size_t n = strlen(w);
    for (const char *p = from; p + n <= to; p++)
        if (!memcmp(p, w, n) && (p == s || !is_word((unsigned char)p[-1])) &&
            (p + n == to || !is_word((unsigned char)p[n])))
            return p;
    return NULL;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static void strip(const char **a, const char **b)
{
    while (*a < *b && is_space(**a))
        (*a)++;
    while (*b > *a && is_space((*b)[-1]))
        (*b)--;
}

static bool is_dim_char(unsigned char c)
{
    return is_word(c) || c == '-';
}

/* One expression s[0, n) (already stripped). */
static int cexpr_parse(const char *s, size_t n, cexpr *e, char *err, size_t errlen)
{
    size_t d = 0;

    memset(e, 0, sizeof(*e));
    if ((n == 4 && !memcmp(s, "true", 4)) || (n == 5 && !memcmp(s, "false", 5))) {
        e->kind = CE_BOOL;
        e->bval = s[0] == 't';
        return 0;
    }
    while (d < n && is_dim_char((unsigned char)s[d]))
        d++;
    if (d == 0)
        goto bad;
    /* "dimension operator values" */
    for (size_t i = 0; i < ARRAY_SIZE(cops); i++) {
        size_t p = d, ol = strlen(cops[i].text), q;
        while (p < n && is_space(s[p]))
            p++;
        if (p + ol > n || memcmp(s + p, cops[i].text, ol) != 0)
            continue;
        p += ol;
        q = p;
        while (q < n && is_space(s[q]))
            q++;
        /* The values must not start with '=' (unless spaces came first). */
        if (!((q < n && s[q] != '=') || q > p))
            continue;
        e->kind = CE_CMP;
        e->op = cops[i].op;
        if (!(e->dim = strndup(s, d)))
            return oom(err, errlen);
        for (const char *v = s + p, *end = s + n; v <= end;) {
            const char *comma = memchr(v, ',', (size_t)(end - v));
            const char *ve = comma ? comma : end, *vs = v;
            char **nv;
            strip(&vs, &ve);
            nv = realloc(e->vals, (e->nvals + 1) * sizeof(*nv));
            if (!nv)
                return oom(err, errlen);
            e->vals = nv;
            if (!(e->vals[e->nvals] = strndup(vs, (size_t)(ve - vs))))
                return oom(err, errlen);
            e->nvals++;
            if (!comma)
                break;
            v = comma + 1;
        }
        return 0;
    }
    /* "dimension is [not] defined" */
    {
        size_t p = d;
        while (p < n && is_space(s[p]))
            p++;
        if (n - p == strlen("is defined") && !memcmp(s + p, "is defined", n - p))
            e->kind = CE_DEFINED;
        else if (n - p == strlen("is not defined") && !memcmp(s + p, "is not defined", n - p))
            e->kind = CE_UNDEFINED;
        else
            goto bad;
        if (!(e->dim = strndup(s, d)))
            return oom(err, errlen);
        return 0;
    }
bad:
    return fail(err, errlen, -2, NULL, 0, "cannot parse expression '%.*s'", (int)n, s);
}

/* Parse a rule: or-groups of and-groups of expressions, all of it first (a
 * syntax error anywhere makes the whole rule invalid). */
static int crule_parse(const char *expr, crule *r, char *err, size_t errlen)
{
    sbuf t = { 0 };
    size_t n = strlen(expr);
    int rc = 0;

    memset(r, 0, sizeof(*r));
    /* A single '=' means '==' */
    for (size_t i = 0; i < n; i++) {
        char c = expr[i];
        if (c == '=' && (i == 0 || !strchr("=!~<>", expr[i - 1])) &&
            (i + 1 >= n || expr[i + 1] != '=')) {
            sb_puts(&t, "==");
            continue;
        }
        sb_putc(&t, c);
    }
    if (t.oom) {
        sb_release(&t);
        return oom(err, errlen);
    }
    const char *s = t.p ? t.p : "", *end = s + t.len;
    for (const char *og = s; og <= end;) {
        const char *oe = find_word(s, og, end, "or");
        const char *ogend = oe ? oe : end;

        for (const char *ag = og; ag <= ogend;) {
            const char *ae = find_word(s, ag, ogend, "and");
            const char *a = ag, *b = ae ? ae : ogend;
            strip(&a, &b);
            if (a == b) {
                rc = fail(err, errlen, -2, NULL, 0, "empty expression in '%s'", expr);
                goto out;
            }
            if (r->n == r->cap) {
                size_t cap = r->cap ? r->cap * 2 : 4;
                cexpr *ne = realloc(r->e, cap * sizeof(*ne));
                if (!ne) {
                    rc = oom(err, errlen);
                    goto out;
                }
                r->e = ne;
                r->cap = cap;
            }
            rc = cexpr_parse(a, (size_t)(b - a), &r->e[r->n], err, errlen);
            r->e[r->n].group = r->ngroups;
            r->n++;
            if (rc < 0)
                goto out;
            if (!ae)
                break;
            ag = ae + 3;
        }
        r->ngroups++;
        if (!oe)
            break;
        og = oe + 2;
    }
out:
    sb_release(&t);
    if (rc < 0) {
        crule_free(r);
        return rc < -2 ? rc : -2;
    }
    return 0;
}

/* Split a value into name and version parts at ':', '-' and '.'. */
typedef struct vparts {
    const char **p;
    size_t *len;
    size_t n;
} vparts;

static int vparts_split(const char *s, vparts *v)
{
    size_t cap = 1;

    for (const char *c = s; *c; c++)
        cap += strchr(":-.", *c) != NULL;
    v->p = calloc(cap, sizeof(*v->p));
    v->len = calloc(cap, sizeof(*v->len));
    v->n = 0;
    if (!v->p || !v->len) {
        free(v->p);
        free(v->len);
        return -1;
    }
    for (const char *c = s;;) {
        size_t k = strcspn(c, ":-.");
        v->p[v->n] = c;
        v->len[v->n++] = k;
        if (!c[k])
            break;
        c += k + 1;
    }
    return 0;
}

static void vparts_free(vparts *v)
{
    free(v->p);
    free(v->len);
}

static bool part_eq(const char *a, size_t an, const char *b, size_t bn, bool icase)
{
    if (an != bn)
        return false;
    for (size_t i = 0; i < an; i++)
        if (icase ? tolower((unsigned char)a[i]) != tolower((unsigned char)b[i]) : a[i] != b[i])
            return false;
    return true;
}

/* Python's int() of a version part: its digits (no underscores, no leading
 * zeros) into buf, or false if it is not an int. */
static bool part_int(const char *s, size_t n, char *buf, size_t buflen, size_t *dn)
{
    const char *a = s, *b = s + n;
    size_t k = 0;
    bool prev_digit = false;

    strip(&a, &b);
    if (a < b && *a == '+')
        a++;
    if (a >= b)
        return false;
    for (const char *c = a; c < b; c++) {
        if (*c == '_') {
            if (!prev_digit || c + 1 >= b || !isdigit((unsigned char)c[1]))
                return false;
            prev_digit = false;
            continue;
        }
        if (!isdigit((unsigned char)*c))
            return false;
        prev_digit = true;
        if (k == 0 && *c == '0')
            continue;
        if (k + 1 >= buflen)
            return false;       /* absurdly long: compare as text */
        buf[k++] = *c;
    }
    buf[k] = '\0';
    *dn = k;
    return true;
}

/* fmf's ContextValue.compare() of two version parts: -1, 0, 1. */
static int part_cmp(const char *a, size_t an, const char *b, size_t bn, bool icase)
{
    char x[128], y[128];
    size_t xn, yn;
    int c;

    if (part_int(a, an, x, sizeof(x), &xn) && part_int(b, bn, y, sizeof(y), &yn)) {
        if (xn != yn)
            return xn < yn ? -1 : 1;
        c = memcmp(x, y, xn);
        return (c > 0) - (c < 0);
    }
    for (size_t i = 0; i < an && i < bn; i++) {
        unsigned char p = (unsigned char)a[i], q = (unsigned char)b[i];
        if (icase) {
            p = (unsigned char)tolower(p);
            q = (unsigned char)tolower(q);
        }
        if (p != q)
            return p < q ? -1 : 1;
    }
    return (an > bn) - (an < bn);
}

/*
 * fmf's ContextValue.version_cmp(): the left side (context) against the
 * right side (rule), whose number of parts sets the precision. Sets *res
 * (-1, 0, 1; unordered: 0 equal, 1 not) or returns CANNOT.
 */
static int version_cmp(const vparts *l, const vparts *r, bool minor, bool ordered, bool icase,
                       int *res)
{
    size_t common;
    long leftover;

    if (l->n == 0 || r->n == 0)
        return CANNOT;
    if (!part_eq(l->p[0], l->len[0], r->p[0], r->len[0], icase)) {
        if (ordered)
            return CANNOT;      /* different names have no order */
        *res = 1;
        return 0;
    }
    if (minor && r->n > 1) {
        /* The right side cares about the major version. */
        if (l->n < 2)
            return CANNOT;
        if (!part_eq(l->p[1], l->len[1], r->p[1], r->len[1], icase)) {
            if (!ordered) {
                *res = 1;
                return 0;
            }
            if (r->n > 2)
                return CANNOT;  /* minors of different majors */
        }
    }
    common = l->n < r->n ? l->n : r->n;
    for (size_t i = 1; i < common; i++) {
        int c = part_cmp(l->p[i], l->len[i], r->p[i], r->len[i], icase);
        if (c != 0) {
            *res = c;
            return 0;
        }
    }
    leftover = (long)r->n - (long)l->n;
    if (leftover <= 0) {
        *res = 0;
        return 0;
    }
    if (minor)
        return CANNOT;
    if (!ordered) {
        *res = 1;
        return 0;
    }
    if (l->n == 1)
        return CANNOT;          /* no version on the left at all */
    *res = -1;
    return 0;
}

/* One operator on one context value and one rule value: 1, 0, CANNOT, or
 * -2 (bad regular expression, err set). */
static int cop_eval(enum cop op, const char *left, const char *right, bool icase,
                    char *err, size_t errlen)
{
    vparts l, r;
    int res = 0, rc;
    bool neg = op == OP_NE || op == OP_MNE || op == OP_NMATCH;

    if (op == OP_MATCH || op == OP_NMATCH) {
        pyre re;
        char why[200];
        if (pyre_compile(&re, right, false, why, sizeof(why)) < 0)
            return fail(err, errlen, -2, NULL, 0, "bad regular expression '%s': %s", right, why);
        rc = pyre_search(&re, left);
        pyre_free(&re);
        return neg ? !rc : rc;
    }
    if (vparts_split(left, &l) < 0)
        return fail(err, errlen, -2, NULL, 0, "out of memory");
    if (vparts_split(right, &r) < 0) {
        vparts_free(&l);
        return fail(err, errlen, -2, NULL, 0, "out of memory");
    }
    switch (op) {
    case OP_EQ: case OP_NE:
        rc = version_cmp(&l, &r, false, false, icase, &res);
        res = res == 0;
        break;
    case OP_MEQ: case OP_MNE:
        rc = version_cmp(&l, &r, true, false, icase, &res);
        res = res == 0;
        break;
    case OP_LT: case OP_LE: case OP_GT: case OP_GE:
    case OP_MLT: case OP_MLE: case OP_MGT: case OP_MGE: {
        bool minor = op >= OP_MLT;
        enum cop base = minor ? (enum cop)(op - OP_MLT + OP_LT) : op;
        rc = version_cmp(&l, &r, minor, true, icase, &res);
        res = base == OP_LT ? res < 0 : base == OP_LE ? res <= 0 : base == OP_GT ? res > 0
                                                                               : res >= 0;
        break;
    }
    default:
        rc = CANNOT;
        break;
    }
    vparts_free(&l);
    vparts_free(&r);
    if (rc == CANNOT)
        return CANNOT;
    return neg ? !res : res;
}

/* The context's values of a dimension as strings (new array); *defined
 * says whether the dimension exists. */
static int ctx_values(const json_object *ctx, const char *dim, char ***out, size_t *n,
                      bool *defined)
{
    json_object *v;
    size_t count;

    *out = NULL;
    *n = 0;
    *defined = false;
    if (!ctx || !json_object_object_get_ex(ctx, dim, &v))
        return 0;
    *defined = true;
    if (!v)
        return 0;
    count = json_object_get_type(v) == json_type_array ? json_object_array_length(v) : 1;
    if (!(*out = calloc(count ? count : 1, sizeof(**out))))
        return -1;
    for (size_t i = 0; i < count; i++) {
        json_object *item = json_object_get_type(v) == json_type_array
                          ? json_object_array_get_idx(v, i) : v;
        if (!((*out)[i] = py_str_dup(item))) {
            for (size_t k = 0; k < i; k++)
                free((*out)[k]);
            free(*out);
            *out = NULL;
            return -1;
        }
    }
    *n = count;
    return 0;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* One expression: 1, 0, CANNOT, or -2. */
static int cexpr_eval(const cexpr *e, const json_object *ctx, bool icase, char *err, size_t errlen)
{
    char **vals;
    size_t nv;
    bool defined, decided = false;

    if (e->kind == CE_BOOL)
        return e->bval;
    if (ctx_values(ctx, e->dim, &vals, &nv, &defined) < 0)
        return fail(err, errlen, -2, NULL, 0, "out of memory");
    if (e->kind == CE_DEFINED || e->kind == CE_UNDEFINED) {
        strv_free(vals, nv);
        return e->kind == CE_DEFINED ? defined : !defined;
    }
    /* Any pair of values may make it true; undecidable pairs do not count. */
    for (size_t i = 0; i < nv; i++)
        for (size_t k = 0; k < e->nvals; k++) {
            int r = cop_eval(e->op, vals[i], e->vals[k], icase, err, errlen);
            if (r == -2 || r == 1) {
                strv_free(vals, nv);
                return r;
            }
            if (r == 0)
                decided = true;
        }
    strv_free(vals, nv);
    return decided ? 0 : CANNOT;
}

/* The rule: 1, 0, CANNOT or -2. 'and' binds tighter than 'or'; both are
 * lazy; CannotDecide and False is False, CannotDecide or True is True. */
static int crule_eval(const crule *r, const json_object *ctx, bool icase, char *err, size_t errlen)
{
    int final = 0;
    bool any_group = false;

    for (size_t i = 0; i < r->n;) {
        size_t g = r->e[i].group;
        int and_out = 1;
        bool first = true;

        for (; i < r->n && r->e[i].group == g; i++) {
            int res;
            if (and_out == 0)
                continue;       /* already false: the rest is not evaluated */
            res = cexpr_eval(&r->e[i], ctx, icase, err, errlen);
            if (res == -2)
                return -2;
            if (first)
                and_out = res;
            else if (and_out == 0 || res == 0)
                and_out = 0;
            else if (and_out == 1 && res == 1)
                and_out = 1;
            else
                and_out = CANNOT;
            first = false;
        }
        if (and_out == 1)
            return 1;
        if (!any_group)
            final = and_out;
        else if (and_out == CANNOT || final == CANNOT)
            final = CANNOT;
        else
            final = 0;
        any_group = true;
    }
    return final;
}

int fmf_condition_ex(const char *expr, const struct json_object *context, unsigned flags,
                     char *err, size_t errlen)
{
    crule r;
    int rc;

    if (err && errlen)
        err[0] = '\0';
    if (!expr)
        return fail(err, errlen, -2, NULL, 0, "no condition");
    if ((rc = crule_parse(expr, &r, err, errlen)) < 0)
        return -2;
    rc = crule_eval(&r, context, (flags & FMF_CASE_INSENSITIVE) != 0, err, errlen);
    crule_free(&r);
    return rc;
}

int fmf_condition(const char *expr, const struct json_object *context, char *err, size_t errlen)
{
    return fmf_condition_ex(expr, context, 0, err, errlen);
}

/* ------------------------------------------------------------------------ */
/* Filters                                                                    */
/* ------------------------------------------------------------------------ */

/* The data values of a key as Python strings. */
static int filter_values(const json_object *data, const char *key, char ***out, size_t *n)
{
    bool defined;
    return ctx_values(data, key, out, n, &defined);
}

/* One literal "key: a, -b" against data: 1, 0, or negative (err set). */
static int filter_literal(const char *dim, const char *value, const json_object *data,
                          char *err, size_t errlen)
{
    char **vals = NULL;
    size_t nv = 0;
    int result = 0;
    const char *end = value + strlen(value);

    if (filter_values(data, dim, &vals, &nv) < 0)
        return oom(err, errlen);
    for (const char *a = value; a <= end && !result;) {
        const char *comma = memchr(a, ',', (size_t)(end - a));
        const char *as = a, *ae = comma ? comma : end;
        bool negative;
        bool hit = false;
        char *atom, why[200];
        pyre re;

        strip(&as, &ae);
        negative = as < ae && *as == '-';
        if (negative)
            as++;
        if (!(atom = strndup(as, (size_t)(ae - as)))) {
            strv_free(vals, nv);
            return oom(err, errlen);
        }
        if (pyre_compile(&re, atom, false, why, sizeof(why)) < 0) {
            int rc = fail(err, errlen, -EINVAL, NULL, 0, "bad regular expression '%s': %s",
                          atom, why);
            free(atom);
            strv_free(vals, nv);
            return rc;
        }
        free(atom);
        for (size_t i = 0; i < nv && !hit; i++)
            hit = pyre_fullmatch(&re, vals[i]);
        pyre_free(&re);
        result = negative ? !hit : hit;
        if (!comma)
            break;
        a = comma + 1;
    }
    strv_free(vals, nv);
    return result;
}

typedef struct flit {
    char *dim;
    char *value;
    size_t clause;
} flit;

int fmf_filter(const char *expr, const struct json_object *data, char *err, size_t errlen)
{
    flit *lits = NULL;
    size_t nl = 0, nclauses = 0;
    const char *s, *end;
    int rc = 0;

    if (err && errlen)
        err[0] = '\0';
    if (!expr)
        return 1;
    s = expr;
    end = expr + strlen(expr);
    strip(&s, &end);
    if (s == end)
        return 1;
    if (json_object_get_type(data) != json_type_object)
        return fail(err, errlen, -EINVAL, NULL, 0, "filter data must be an object");

    /* Parse: clauses by '|', literals by '&', "key: values". */
    for (const char *c = s; c <= end;) {
        const char *bar = memchr(c, '|', (size_t)(end - c));
        const char *ce = bar ? bar : end;
        for (const char *l = c; l <= ce;) {
            const char *amp = memchr(l, '&', (size_t)(ce - l));
            const char *ls = l, *le = amp ? amp : ce, *colon, *ds, *de, *vs, *ve;
            flit *nlits;

            strip(&ls, &le);
            colon = memchr(ls, ':', (size_t)(le - ls));
            if (!colon) {
                rc = fail(err, errlen, -EINVAL, NULL, 0, "invalid filter '%.*s': expected key: value",
                          (int)(le - ls), ls);
                goto out;
            }
            ds = ls;
            de = colon;
            vs = colon + 1;
            ve = le;
            strip(&ds, &de);
            strip(&vs, &ve);
            if (!(nlits = realloc(lits, (nl + 1) * sizeof(*lits)))) {
                rc = oom(err, errlen);
                goto out;
            }
            lits = nlits;
            lits[nl].dim = strndup(ds, (size_t)(de - ds));
            lits[nl].value = strndup(vs, (size_t)(ve - vs));
            lits[nl].clause = nclauses;
            nl++;
            if (!lits[nl - 1].dim || !lits[nl - 1].value) {
                rc = oom(err, errlen);
                goto out;
            }
            if (!amp)
                break;
            l = amp + 1;
        }
        nclauses++;
        if (!bar)
            break;
        c = bar + 1;
    }
    /* fmf evaluates every clause before combining them: a key missing from
     * the data anywhere in the filter makes the node not match. */
    for (size_t i = 0; i < nl; i++)
        if (!json_object_object_get_ex(data, lits[i].dim, NULL)) {
            rc = 0;
            goto out;
        }
    rc = 0;
    for (size_t i = 0; i < nl;) {
        size_t c = lits[i].clause;
        int all = 1;
        for (; i < nl && lits[i].clause == c; i++) {
            int r = filter_literal(lits[i].dim, lits[i].value, data, err, errlen);
            if (r < 0) {
                rc = r;
                goto out;
            }
            all = all && r;
        }
        if (all)
            rc = 1;
    }
out:
    for (size_t i = 0; i < nl; i++) {
        free(lits[i].dim);
        free(lits[i].value);
    }
    free(lits);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Adjust                                                                     */
/* ------------------------------------------------------------------------ */

/* Adds key, without its merge suffix, to *touched. */
static int adjust_touch(json_object **touched, const char *key)
{
    char *base = rstrip_dup(key, "+<-~");

    if (!base || (!*touched && !(*touched = json_object_new_object())) ||
        json_object_object_add(*touched, base, NULL) != 0) {
        free(base);
        return -ENOMEM;
    }
    free(base);
    return 0;
}

/* Applies data's `adjust` rules, then removes `adjust`. b tells where the
 * rules were defined. With touched, the names of the keys that rules which
 * applied set (suffixes stripped) go in *touched (made when first needed). */
static int adjust_apply(json_object *data, const json_object *ctx, unsigned flags, const blame *b,
                        json_object **touched, char *err, size_t errlen)
{
    json_object *rules, *list = NULL;
    const char *file;
    int line, rc = 0;

    if (!json_object_object_get_ex(data, "adjust", &rules))
        return 0;
    blame_at(b, "adjust", &file, &line);
    if (json_object_get_type(rules) == json_type_object) {
        if (!(list = json_object_new_array()))
            return oom(err, errlen);
        json_object_array_add(list, json_object_get(rules));
    } else if (json_object_get_type(rules) == json_type_array) {
        list = json_object_get(rules);
    } else {
        return fail(err, errlen, -EINVAL, file, line,
                    "%s%sinvalid adjust rules: expected a dict or a list of dicts, got a %s",
                    b->node ? b->node : "", b->node ? ": " : "", py_type(rules));
    }
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *rule = json_object_array_get_idx(list, i), *when, *cont, *apply;
        bool go_on = true;
        int res;
        char why[512];

        if (json_object_get_type(rule) != json_type_object) {
            rc = fail(err, errlen, -EINVAL, file, line, "%s%sadjust rule %zu is a %s, not a dict",
                      b->node ? b->node : "", b->node ? ": " : "", i + 1, py_type(rule));
            break;
        }
        if (json_object_object_get_ex(rule, "continue", &cont)) {
            if (json_object_get_type(cont) != json_type_boolean) {
                rc = fail(err, errlen, -EINVAL, file, line,
                          "%s%sadjust rule %zu: 'continue' must be true or false",
                          b->node ? b->node : "", b->node ? ": " : "", i + 1);
                break;
            }
            go_on = json_object_get_boolean(cont);
        }
        if (!json_object_object_get_ex(rule, "when", &when)) {
            res = 1;
        } else if (json_object_get_type(when) == json_type_boolean) {
            res = json_object_get_boolean(when);
        } else if (json_object_get_type(when) == json_type_string) {
            res = fmf_condition_ex(json_object_get_string(when), ctx, flags, why, sizeof(why));
            if (res == -2) {
                rc = fail(err, errlen, -EINVAL, file, line, "%s%sadjust rule %zu: %s",
                          b->node ? b->node : "", b->node ? ": " : "", i + 1, why);
                break;
            }
        } else {
            rc = fail(err, errlen, -EINVAL, file, line,
                      "%s%sadjust rule %zu: 'when' must be a string, not a %s",
                      b->node ? b->node : "", b->node ? ": " : "", i + 1, py_type(when));
            break;
        }
        if (res != 1)
            continue;   /* false, or cannot decide: skipped */
        if (!(apply = json_object_new_object())) {
            rc = oom(err, errlen);
            break;
        }
        for (struct lh_entry *e = json_object_get_object(rule)->head; e; e = e->next) {
            const char *k = (const char *)lh_entry_k(e);
            if (!strcmp(k, "when") || !strcmp(k, "because") || !strcmp(k, "continue"))
                continue;
            json_object_object_add(apply, k, json_object_get((json_object *)lh_entry_v(e)));
            if (touched && (rc = adjust_touch(touched, k)) < 0)
                break;
        }
        if (rc < 0) {
            json_object_put(apply);
            rc = oom(err, errlen);
            break;
        }
        {
            blame rb = { .node = b->node, .file = file, .line = line };
            rc = merge_special(data, apply, &rb, err, errlen);
        }
        json_object_put(apply);
        if (rc < 0 || !go_on)
            break;
    }
    json_object_put(list);
    if (rc == 0)
        json_object_object_del(data, "adjust");
    return rc;
}

int fmf_adjust(struct json_object *data, const struct json_object *context, unsigned flags,
               char *err, size_t errlen)
{
    blame b = { 0 };

    if (err && errlen)
        err[0] = '\0';
    if (json_object_get_type(data) != json_type_object)
        return fail(err, errlen, -EINVAL, NULL, 0, "fmf_adjust needs an object");
    return adjust_apply(data, context, flags, &b, NULL, err, errlen);
}

/* ------------------------------------------------------------------------ */
/* The tree                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct tnode {
    fmf_node pub;                /* first: fmf_node pointers are tnode pointers */
    struct tnode *parent;
    struct tnode **kids;
    size_t nkids, capkids;
    json_object *kidx;           /* segment -> index in kids, while growing */
    char *seg;                   /* last name segment ("" for the root) */
    char *name;
    json_object *own;            /* the node's own keys, as written */
    json_object *src;            /* own key -> [file index, line] */
    int file_idx;                /* -1: none */
    int line;
    int depth;
    bool updated;                /* some file defined it (fmf's _updated) */
    int inherit;                 /* directive, 1 by default */
    int select;                  /* directive, -1 unset */
    char *error;                 /* its own metadata error (pub.error may be inherited) */
    json_object *adjusted;       /* keys adjust rules set, or NULL */
    const char *adj_file;        /* where its adjust key is */
    int adj_line;
} tnode;

struct fmf_tree {
    char *root;
    tnode *top;
    char **files;                /* absolute file names, by index */
    char **dirs;                 /* their folders */
    size_t nfiles, capfiles;
    const fmf_node **sel;        /* selected, in climb order */
    size_t nsel;
    const fmf_node **byname;     /* every node, sorted by name */
    size_t nall;
    size_t nnodes;
    unsigned flags;
    char **links;                /* real paths of symlinked folders entered */
    size_t nlinks, caplinks;
    char *err;
    size_t errlen;
};

static void tnode_free(tnode *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->nkids; i++)
        tnode_free(n->kids[i]);
    free(n->kids);
    json_object_put(n->kidx);
    json_object_put(n->own);
    json_object_put(n->src);
    json_object_put(n->pub.data);
    json_object_put(n->adjusted);
    free(n->error);
    free(n->seg);
    free(n->name);
    free(n);
}

void fmf_tree_free(fmf_tree *t)
{
    if (!t)
        return;
    tnode_free(t->top);
    for (size_t i = 0; i < t->nfiles; i++) {
        free(t->files[i]);
        free(t->dirs[i]);
    }
    free(t->files);
    free(t->dirs);
    for (size_t i = 0; i < t->nlinks; i++)
        free(t->links[i]);
    free(t->links);
    free(t->sel);
    free(t->byname);
    free(t->root);
    free(t);
}

static tnode *tnode_new(fmf_tree *t, tnode *parent, const char *seg, size_t seglen)
{
    tnode *n = calloc(1, sizeof(*n));

    if (!n)
        return NULL;
    n->parent = parent;
    n->file_idx = -1;
    n->inherit = 1;
    n->select = -1;
    n->depth = parent ? parent->depth + 1 : 0;
    n->seg = strndup(seg, seglen);
    n->own = json_object_new_object();
    n->src = json_object_new_object();
    if (!parent)
        n->name = strdup("/");
    else if (asprintf(&n->name, "%s/%.*s", strcmp(parent->name, "/") ? parent->name : "",
                      (int)seglen, seg) < 0)
        n->name = NULL;
    if (!n->seg || !n->own || !n->src || !n->name) {
        tnode_free(n);
        return NULL;
    }
    n->pub.name = n->name;
    t->nnodes++;
    return n;
}

/* The child seg of n, created if needed. file/line: where it is mentioned. */
static int tnode_child(fmf_tree *t, tnode *n, const char *seg, size_t seglen, tnode **out,
                       const char *file, int line)
{
    json_object *idx;
    char *key = strndup(seg, seglen);
    tnode *c;

    if (!key)
        return oom(t->err, t->errlen);
    if (n->kidx && json_object_object_get_ex(n->kidx, key, &idx)) {
        *out = n->kids[json_object_get_int(idx)];
        free(key);
        return 0;
    }
    if (n->depth + 1 > FMF_MAX_NODE_DEPTH) {
        free(key);
        return fail(t->err, t->errlen, -EINVAL, file, line, "nodes nested deeper than %d levels",
                    FMF_MAX_NODE_DEPTH);
    }
    if (t->nnodes >= FMF_MAX_NODES) {
        free(key);
        return fail(t->err, t->errlen, -EINVAL, file, line, "more than %d nodes in the tree",
                    FMF_MAX_NODES);
    }
    if (!n->kidx && !(n->kidx = json_object_new_object())) {
        free(key);
        return oom(t->err, t->errlen);
    }
    if (n->nkids == n->capkids) {
        size_t cap = n->capkids ? n->capkids * 2 : 4;
        tnode **k = realloc(n->kids, cap * sizeof(*k));
        if (!k) {
            free(key);
            return oom(t->err, t->errlen);
        }
        n->kids = k;
        n->capkids = cap;
    }
    if (!(c = tnode_new(t, n, seg, seglen)) ||
        json_object_object_add(n->kidx, key, json_object_new_int((int)n->nkids)) != 0) {
        tnode_free(c);
        free(key);
        return oom(t->err, t->errlen);
    }
    free(key);
    n->kids[n->nkids++] = c;
    *out = c;
    return 0;
}

static int tree_add_file(fmf_tree *t, const char *path)
{
    char *slash;

    if (t->nfiles == t->capfiles) {
        size_t cap = t->capfiles ? t->capfiles * 2 : 16;
        char **f = realloc(t->files, cap * sizeof(*f));
        if (!f)
            return -1;
        t->files = f;
        char **d = realloc(t->dirs, cap * sizeof(*d));
        if (!d)
            return -1;
        t->dirs = d;
        t->capfiles = cap;
    }
    t->files[t->nfiles] = strdup(path);
    t->dirs[t->nfiles] = strdup(path);
    if (!t->files[t->nfiles] || !t->dirs[t->nfiles]) {
        free(t->files[t->nfiles]);
        free(t->dirs[t->nfiles]);
        return -1;
    }
    slash = strrchr(t->dirs[t->nfiles], '/');
    if (slash && slash != t->dirs[t->nfiles])
        *slash = '\0';
    else if (slash)
        slash[1] = '\0';
    return (int)t->nfiles++;
}

/* Directives ("/": {inherit: bool, select: bool}). */
static int tnode_directives(fmf_tree *t, tnode *n, json_object *d, const char *file, int line)
{
    if (json_object_get_type(d) != json_type_object)
        return fail(t->err, t->errlen, -EINVAL, file, line,
                    "%s: fmf directives ('/') must be a dict, not a %s", n->name, py_type(d));
    for (struct lh_entry *e = json_object_get_object(d)->head; e; e = e->next) {
        const char *k = (const char *)lh_entry_k(e);
        json_object *v = (json_object *)lh_entry_v(e);
        if (strcmp(k, "inherit") && strcmp(k, "select"))
            return fail(t->err, t->errlen, -EINVAL, file, line, "%s: unknown fmf directive '%s'",
                        n->name, k);
        if (json_object_get_type(v) != json_type_boolean)
            return fail(t->err, t->errlen, -EINVAL, file, line,
                        "%s: fmf directive '%s' must be true or false, not a %s", n->name, k,
                        py_type(v));
        if (!strcmp(k, "inherit"))
            n->inherit = json_object_get_boolean(v);
        else
            n->select = json_object_get_boolean(v);
    }
    return 0;
}

/* Line of key in a lines map, or fallback. */
static int key_line(const json_object *lines, const char *key, int fallback,
                    json_object **sublines)
{
    json_object *entry;

    *sublines = NULL;
    if (!lines || !json_object_object_get_ex(lines, key, &entry))
        return fallback;
    *sublines = json_object_array_get_idx(entry, 1);
    return json_object_get_int(json_object_array_get_idx(entry, 0));
}

/* fmf's Tree.update(): own keys replace earlier ones, "/child" keys grow
 * children, "/" holds directives. */
static int tnode_update(fmf_tree *t, tnode *n, json_object *data, json_object *lines, int fidx,
                        int line)
{
    const char *file = t->files[fidx];
    json_object *dir;
    int rc;

    n->updated = true;
    if (!data)
        return 0;
    if (json_object_get_type(data) != json_type_object)
        return fail(t->err, t->errlen, -EINVAL, file, line, "%s: must be a mapping, not a %s",
                    n->name, py_type(data));
    if (json_object_object_get_ex(data, "/", &dir)) {
        json_object *sub;
        if ((rc = tnode_directives(t, n, dir, file, key_line(lines, "/", line, &sub))) < 0)
            return rc;
    }
    for (struct lh_entry *e = json_object_get_object(data)->head; e; e = e->next) {
        const char *key = (const char *)lh_entry_k(e);
        json_object *val = (json_object *)lh_entry_v(e), *sub;
        int kl = key_line(lines, key, line, &sub);

        if (!strcmp(key, "/"))
            continue;
        if (key[0] == '/') {
            const char *seg = key + strspn(key, "/");
            const char *slash = strchr(seg, '/');
            size_t seglen = slash ? (size_t)(slash - seg) : strlen(seg);
            tnode *c;

            if (seglen == 0)
                return fail(t->err, t->errlen, -EINVAL, file, kl, "%s: invalid node name '%s'",
                            n->name, key);
            if ((rc = tnode_child(t, n, seg, seglen, &c, file, kl)) < 0)
                return rc;
            c->file_idx = fidx;
            c->line = kl;
            if (slash) {
                /* "/a/b: v" is "/a: {/b: v}" */
                json_object *wrap = json_object_new_object(), *wl = json_object_new_object(),
                            *entry = json_object_new_array();
                if (!wrap || !wl || !entry) {
                    json_object_put(wrap);
                    json_object_put(wl);
                    json_object_put(entry);
                    return oom(t->err, t->errlen);
                }
                json_object_object_add(wrap, slash, json_object_get(val));
                json_object_array_add(entry, json_object_new_int(kl));
                json_object_array_add(entry, json_object_get(sub));
                json_object_object_add(wl, slash, entry);
                rc = tnode_update(t, c, wrap, wl, fidx, kl);
                json_object_put(wrap);
                json_object_put(wl);
            } else {
                rc = tnode_update(t, c, val, sub, fidx, kl);
            }
            if (rc < 0)
                return rc;
            continue;
        }
        json_object *at = json_object_new_array_ext(2);
        if (!at)
            return oom(t->err, t->errlen);
        json_object_array_add(at, json_object_new_int(fidx));
        json_object_array_add(at, json_object_new_int(kl));
        if (json_object_object_add(n->own, key, json_object_get(val)) != 0 ||
            json_object_object_add(n->src, key, at) != 0)
            return oom(t->err, t->errlen);
    }
    return 0;
}

static char *path_join(const char *a, const char *b)
{
    char *p;
    if (asprintf(&p, "%s%s%s", a, a[0] && a[strlen(a) - 1] == '/' ? "" : "/", b) < 0)
        return NULL;
    return p;
}

/* Reads a whole file of at most FMF_MAX_FILE_SIZE bytes (NUL-terminated).
 * On failure returns a negative errno and the reason in why. */
static int read_file(const char *path, char **buf, size_t *len, char *why, size_t whylen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    size_t cap, n = 0;
    char *b;
    int e;

    if (fd < 0) {
        e = errno;
        snprintf(why, whylen, "%s", strerror_r(e, (char[128]){ 0 }, 128));
        return -e;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        snprintf(why, whylen, "not a regular file");
        return -EINVAL;
    }
    if ((uintmax_t)st.st_size > FMF_MAX_FILE_SIZE)
        goto too_big;
    cap = (size_t)st.st_size + 1;
    if (!(b = malloc(cap))) {
        close(fd);
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    for (;;) {
        ssize_t r;
        if (n + 1 >= cap) {
            /* The file grew since fstat. */
            char *nb;
            if (cap > FMF_MAX_FILE_SIZE) {
                free(b);
                goto too_big;
            }
            if (!(nb = realloc(b, cap * 2))) {
                free(b);
                close(fd);
                snprintf(why, whylen, "out of memory");
                return -ENOMEM;
            }
            b = nb;
            cap *= 2;
        }
        r = read(fd, b + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            e = errno;
            free(b);
            close(fd);
            snprintf(why, whylen, "%s", strerror_r(e, (char[128]){ 0 }, 128));
            return -e;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    b[n] = '\0';
    *buf = b;
    *len = n;
    return 0;
too_big:
    close(fd);
    snprintf(why, whylen, "larger than %u bytes", FMF_MAX_FILE_SIZE);
    return -EFBIG;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* fmf's Tree.grow() for one folder. */
static int tree_grow(fmf_tree *t, tnode *n, const char *path)
{
    DIR *d = opendir(path);
    char **files = NULL, **dirs = NULL;
    size_t nf = 0, nd = 0, capf = 0, capd = 0;
    struct dirent *de;
    char why[128];
    int rc = 0;

    if (!d) {
        int e = errno;
        if (!n->parent)
            return fail(t->err, t->errlen, -e, path, 0, "cannot open the tree root: %s",
                        strerror_r(e, why, sizeof(why)));
        return 0;       /* an inaccessible folder is skipped, as fmf does */
    }
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        char *full;
        size_t len = strlen(de->d_name);

        if (de->d_name[0] == '.')
            continue;   /* hidden (and . ..) */
        if (!(full = path_join(path, de->d_name))) {
            rc = oom(t->err, t->errlen);
            break;
        }
        if (stat(full, &st) < 0) {
            free(full);
            continue;   /* a dangling link */
        }
        free(full);
        if (S_ISREG(st.st_mode) && len > 4 && !strcmp(de->d_name + len - 4, ".fmf")) {
            if (nf == capf) {
                capf = capf ? capf * 2 : 8;
                char **f = realloc(files, capf * sizeof(*f));
                if (!f) {
                    rc = oom(t->err, t->errlen);
                    break;
                }
                files = f;
            }
            if (!(files[nf] = strdup(de->d_name))) {
                rc = oom(t->err, t->errlen);
                break;
            }
            nf++;
        } else if (S_ISDIR(st.st_mode)) {
            if (nd == capd) {
                capd = capd ? capd * 2 : 8;
                char **f = realloc(dirs, capd * sizeof(*f));
                if (!f) {
                    rc = oom(t->err, t->errlen);
                    break;
                }
                dirs = f;
            }
            if (!(dirs[nd] = strdup(de->d_name))) {
                rc = oom(t->err, t->errlen);
                break;
            }
            nd++;
        }
    }
    closedir(d);
    if (rc < 0)
        goto out;
    if (nf > 1)
        qsort(files, nf, sizeof(*files), cmp_str);
    if (nd > 1)
        qsort(dirs, nd, sizeof(*dirs), cmp_str);
    /* main.fmf first: the folder's own data comes before its children's. */
    for (size_t i = 0; i < nf; i++)
        if (!strcmp(files[i], "main.fmf")) {
            char *m = files[i];
            memmove(files + 1, files, i * sizeof(*files));
            files[0] = m;
            break;
        }
    for (size_t i = 0; i < nf && rc == 0; i++) {
        char *full = path_join(path, files[i]), *buf = NULL;
        json_object *data = NULL, *lines = NULL;
        size_t len = 0;
        int fidx;
        tnode *target = n;

        if (!full || (fidx = tree_add_file(t, full)) < 0) {
            free(full);
            rc = oom(t->err, t->errlen);
            break;
        }
        free(full);
        full = t->files[fidx];
        if ((rc = read_file(full, &buf, &len, why, sizeof(why))) < 0) {
            fail(t->err, t->errlen, rc, full, 0, "cannot read: %s", why);
            break;
        }
        rc = y_load(buf, len, full, true, &data, &lines, t->err, t->errlen);
        free(buf);
        if (rc < 0)
            break;
        if (strcmp(files[i], "main.fmf") != 0)
            rc = tnode_child(t, n, files[i], strlen(files[i]) - 4, &target, full, 1);
        if (rc == 0) {
            target->file_idx = fidx;
            target->line = 1;
            rc = tnode_update(t, target, data, lines, fidx, 1);
        }
        json_object_put(data);
        json_object_put(lines);
    }
    for (size_t i = 0; i < nd && rc == 0; i++) {
        char *full = path_join(path, dirs[i]), *sub = NULL;
        struct stat st, lst;
        tnode *c;

        if (!full) {
            rc = oom(t->err, t->errlen);
            break;
        }
        /* A symlinked folder is entered once (no loops). */
        if (lstat(full, &lst) == 0 && S_ISLNK(lst.st_mode)) {
            char *real = realpath(full, NULL);
            bool seen = !real;
            for (size_t k = 0; real && k < t->nlinks && !seen; k++)
                seen = !strcmp(t->links[k], real);
            if (seen) {
                free(real);
                free(full);
                continue;
            }
            if (t->nlinks == t->caplinks) {
                size_t cap = t->caplinks ? t->caplinks * 2 : 8;
                char **l = realloc(t->links, cap * sizeof(*l));
                if (!l) {
                    free(real);
                    free(full);
                    rc = oom(t->err, t->errlen);
                    break;
                }
                t->links = l;
                t->caplinks = cap;
            }
            t->links[t->nlinks++] = real;
        }
        /* A folder with its own .fmf is a separate tree. */
        if (!(sub = path_join(full, ".fmf"))) {
            free(full);
            rc = oom(t->err, t->errlen);
            break;
        }
        if (stat(sub, &st) == 0 && S_ISDIR(st.st_mode)) {
            free(sub);
            free(full);
            continue;
        }
        free(sub);
        if ((rc = tnode_child(t, n, dirs[i], strlen(dirs[i]), &c, full, 0)) == 0)
            rc = tree_grow(t, c, full);
        free(full);
    }
out:
    for (size_t i = 0; i < nf; i++)
        free(files[i]);
    for (size_t i = 0; i < nd; i++)
        free(dirs[i]);
    free(files);
    free(dirs);
    return rc;
}

static int cmp_kids(const void *a, const void *b)
{
    return strcmp((*(tnode *const *)a)->seg, (*(tnode *const *)b)->seg);
}

/* Drops folders without metadata (no file, no children left), sorts the
 * children by name and settles each node's file and folder. */
static void tree_settle(fmf_tree *t, tnode *n)
{
    size_t keep = 0;

    json_object_put(n->kidx);
    n->kidx = NULL;
    if (n->file_idx < 0 && n->parent) {
        n->file_idx = n->parent->file_idx;
        n->line = n->parent->line;
    }
    n->pub.file = n->file_idx >= 0 ? t->files[n->file_idx] : NULL;
    n->pub.dir = n->file_idx >= 0 ? t->dirs[n->file_idx] : t->root;
    n->pub.line = n->file_idx >= 0 ? n->line : 0;
    for (size_t i = 0; i < n->nkids; i++) {
        tnode *c = n->kids[i];
        tree_settle(t, c);
        if (c->nkids == 0 && !c->updated) {
            tnode_free(c);
            t->nnodes--;
            continue;
        }
        n->kids[keep++] = c;
    }
    n->nkids = keep;
    if (n->nkids > 1)
        qsort(n->kids, n->nkids, sizeof(*n->kids), cmp_kids);
}

/* A metadata error of node n (the first one stays). */
static int node_fail(fmf_tree *t, tnode *n, const char *why)
{
    if (n->pub.error)
        return 0;
    if (!(n->error = strdup(why)))
        return oom(t->err, t->errlen);
    n->pub.error = n->error;
    return 0;
}

/* Inheritance, top down: a copy of the parent's data (and its error), then
 * the node's own keys merged in. */
static int tree_inherit(fmf_tree *t, tnode *n)
{
    blame b = { .node = n->name, .src = n->src, .files = t->files,
                .file = n->pub.file, .line = n->pub.line };
    bool ok = true;
    char why[1024];
    int rc;

    if (n->parent && n->inherit) {
        n->pub.data = jcopy(n->parent->pub.data, &ok);
        n->pub.error = n->parent->pub.error;
    } else {
        n->pub.data = json_object_new_object();
    }
    if (!ok || !n->pub.data)
        return oom(t->err, t->errlen);
    if ((rc = merge_keys(n->pub.data, n->own, &b, why, sizeof(why))) < 0)
        return oom(t->err, t->errlen);
    if (rc > 0 && (rc = node_fail(t, n, why)) < 0)
        return rc;
    for (size_t i = 0; i < n->nkids; i++)
        if ((rc = tree_inherit(t, n->kids[i])) < 0)
            return rc;
    return 0;
}

/* Where the rules in `adjust` come from: the nearest node (this one or an
 * ancestor it inherits from) that sets adjust itself. */
static const tnode *adjust_origin(const tnode *n)
{
    for (const tnode *p = n; p; p = p->inherit ? p->parent : NULL)
        for (struct lh_entry *e = json_object_get_object(p->src)->head; e; e = e->next) {
            const char *k = (const char *)lh_entry_k(e);
            if (!strncmp(k, "adjust", 6) && (k[6] == '\0' || strchr("+-~<", k[6])))
                return p;
        }
    return n;
}

static int tree_adjust(fmf_tree *t, tnode *n, const json_object *ctx)
{
    const tnode *o = adjust_origin(n);
    json_object *at;
    blame b = { .node = n->name, .src = NULL, .files = t->files, .file = o->pub.file,
                .line = o->pub.line };
    char why[1024];
    int rc;

    /* Point at the adjust key itself when we know it. */
    for (struct lh_entry *e = json_object_get_object(o->src)->head; e; e = e->next) {
        const char *k = (const char *)lh_entry_k(e);
        if (!strncmp(k, "adjust", 6) && (k[6] == '\0' || strchr("+-~<", k[6]))) {
            at = (json_object *)lh_entry_v(e);
            b.file = t->files[json_object_get_int(json_object_array_get_idx(at, 0))];
            b.line = json_object_get_int(json_object_array_get_idx(at, 1));
        }
    }
    n->adj_file = b.file;
    n->adj_line = b.line;
    rc = adjust_apply(n->pub.data, ctx, t->flags, &b, &n->adjusted, why, sizeof(why));
    if (rc == -ENOMEM)
        return oom(t->err, t->errlen);
    if (rc < 0) {
        /* The rules before the bad one stay applied. */
        json_object_object_del(n->pub.data, "adjust");
        if ((rc = node_fail(t, n, why)) < 0)
            return rc;
    }
    for (size_t i = 0; i < n->nkids; i++)
        if ((rc = tree_adjust(t, n->kids[i], ctx)) < 0)
            return rc;
    return 0;
}

/* Selected nodes in climb order, and all nodes for lookup by name. */
static void tree_collect(fmf_tree *t, tnode *n)
{
    bool selected = n->select >= 0 ? n->select : n->nkids == 0;

    if (selected)
        t->sel[t->nsel++] = &n->pub;
    t->byname[t->nall++] = &n->pub;
    for (size_t i = 0; i < n->nkids; i++)
        tree_collect(t, n->kids[i]);
}

static int cmp_node_name(const void *a, const void *b)
{
    return strcmp((*(const fmf_node *const *)a)->name, (*(const fmf_node *const *)b)->name);
}

/* .fmf/version: an integer, as Python's int() reads it. */
static int read_version(fmf_tree *t)
{
    char *path = path_join(t->root, ".fmf/version"), *buf = NULL, digits[32], why[160];
    size_t len = 0, dn;
    int rc;

    if (!path)
        return oom(t->err, t->errlen);
    rc = read_file(path, &buf, &len, why, sizeof(why));
    if (rc < 0) {
        fail(t->err, t->errlen, rc, path, 1, "cannot read the format version: %s", why);
        free(path);
        return rc;
    }
    if (strlen(buf) != len || !part_int(buf, len, digits, sizeof(digits), &dn)) {
        const char *a = buf, *b = buf + strlen(buf);
        strip(&a, &b);
        rc = fail(t->err, t->errlen, -EINVAL, path, 1,
                  "invalid format version '%.*s': expected an integer", (int)(b - a > 40 ? 40 : b - a),
                  a);
    }
    free(buf);
    free(path);
    return rc;
}

int fmf_tree_load_ex(const char *root, const struct json_object *context, unsigned flags,
                     fmf_tree **out, char *err, size_t errlen)
{
    fmf_tree *t;
    char why[128];
    struct stat st;
    int rc;

    if (err && errlen)
        err[0] = '\0';
    if (!root || !out)
        return fail(err, errlen, -EINVAL, NULL, 0, "invalid arguments");
    if (context && json_object_get_type(context) != json_type_object)
        return fail(err, errlen, -EINVAL, NULL, 0, "the context must be an object");
    if (!(t = calloc(1, sizeof(*t))))
        return oom(err, errlen);
    t->err = err;
    t->errlen = errlen;
    t->flags = flags;
    if (!(t->root = realpath(root, NULL))) {
        int e = errno;
        rc = fail(err, errlen, -e, root, 0, "cannot open the tree root: %s",
                  strerror_r(e, why, sizeof(why)));
        goto bad;
    }
    if (stat(t->root, &st) < 0 || !S_ISDIR(st.st_mode)) {
        rc = fail(err, errlen, -ENOTDIR, root, 0, "the tree root is not a folder");
        goto bad;
    }
    if ((rc = read_version(t)) < 0)
        goto bad;
    if (!(t->top = tnode_new(t, NULL, "", 0))) {
        rc = oom(err, errlen);
        goto bad;
    }
    if ((rc = tree_grow(t, t->top, t->root)) < 0)
        goto bad;
    tree_settle(t, t->top);
    if ((rc = tree_inherit(t, t->top)) < 0)
        goto bad;
    if ((rc = tree_adjust(t, t->top, context)) < 0)
        goto bad;
    t->sel = calloc(t->nnodes, sizeof(*t->sel));
    t->byname = calloc(t->nnodes, sizeof(*t->byname));
    if (!t->sel || !t->byname) {
        rc = oom(err, errlen);
        goto bad;
    }
    tree_collect(t, t->top);
    if (t->nall > 1)
        qsort(t->byname, t->nall, sizeof(*t->byname), cmp_node_name);
    t->err = NULL;
    t->errlen = 0;
    *out = t;
    return 0;
bad:
    fmf_tree_free(t);
    return rc < 0 ? rc : -EINVAL;
}

int fmf_tree_load(const char *root, const struct json_object *context, fmf_tree **out,
                  char *err, size_t errlen)
{
    return fmf_tree_load_ex(root, context, 0, out, err, errlen);
}

size_t fmf_tree_count(const fmf_tree *t)
{
    return t ? t->nsel : 0;
}

const fmf_node *fmf_tree_node(const fmf_tree *t, size_t i)
{
    return t && i < t->nsel ? t->sel[i] : NULL;
}

const fmf_node *fmf_tree_find(const fmf_tree *t, const char *name)
{
    fmf_node key = { .name = name };
    const fmf_node *kp = &key, *const *hit;

    if (!t || !name)
        return NULL;
    hit = bsearch(&kp, t->byname, t->nall, sizeof(*t->byname), cmp_node_name);
    return hit ? *hit : NULL;
}

const char *fmf_tree_root(const fmf_tree *t)
{
    return t ? t->root : NULL;
}

/* Whether k is key, or key with a merge suffix. */
static bool is_key_or_merge(const char *k, const char *key)
{
    static const char *const suffixes[] = { "", "+", "+<", "-", "-~", "~" };
    size_t n = strlen(key);

    if (strncmp(k, key, n) != 0)
        return false;
    for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++)
        if (!strcmp(k + n, suffixes[i]))
            return true;
    return false;
}

void fmf_node_where(const fmf_tree *t, const fmf_node *pub, const char *key, const char **file,
                    int *line)
{
    const tnode *n = (const tnode *)pub;

    *file = pub ? pub->file : NULL;
    *line = pub ? pub->line : 0;
    if (!t || !n || !key)
        return;
    if (n->adjusted && json_object_object_get_ex(n->adjusted, key, NULL)) {
        *file = n->adj_file;
        *line = n->adj_line;
        return;
    }
    for (const tnode *p = n; p; p = p->inherit ? p->parent : NULL) {
        const json_object *at = NULL;
        for (struct lh_entry *e = json_object_get_object(p->src)->head; e; e = e->next)
            if (is_key_or_merge((const char *)lh_entry_k(e), key))
                at = (const json_object *)lh_entry_v(e);
        if (at) {
            *file = t->files[json_object_get_int(json_object_array_get_idx(at, 0))];
            *line = json_object_get_int(json_object_array_get_idx(at, 1));
            return;
        }
    }
}

int fmf_node_is_test(const fmf_node *n)
{
    json_object *v;

    if (!n || json_object_get_type(n->data) != json_type_object)
        return 0;
    if (!json_object_object_get_ex(n->data, "test", NULL))
        return 0;
    if (json_object_object_get_ex(n->data, "enabled", &v) &&
        json_object_get_type(v) == json_type_boolean && !json_object_get_boolean(v))
        return 0;
    if (json_object_object_get_ex(n->data, "manual", &v) &&
        json_object_get_type(v) == json_type_boolean && json_object_get_boolean(v))
        return 0;
    if (json_object_object_get_ex(n->data, "story", NULL))
        return 0;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* tmt's test duration                                                        */
/* ------------------------------------------------------------------------ */

/* Bytes of the whitespace character at p (what Python's \s takes: its
 * str.isspace(), in UTF-8), 0 if there is none. */
static size_t dur_space(const unsigned char *p, const unsigned char *end)
{
    uint32_t c;
    size_t n;

    if (p >= end)
        return 0;
    if (*p < 0x80)
        return *p == ' ' || (*p >= '\t' && *p <= '\r') || (*p >= 0x1c && *p <= 0x1f);
    if ((*p & 0xe0) == 0xc0 && end - p >= 2 && (p[1] & 0xc0) == 0x80) {
        c = (uint32_t)(*p & 0x1f) << 6 | (p[1] & 0x3f);
        n = c >= 0x80 ? 2 : 0;
    } else if ((*p & 0xf0) == 0xe0 && end - p >= 3 && (p[1] & 0xc0) == 0x80 &&
               (p[2] & 0xc0) == 0x80) {
        c = (uint32_t)(*p & 0x0f) << 12 | (uint32_t)(p[1] & 0x3f) << 6 | (p[2] & 0x3f);
        n = c >= 0x800 ? 3 : 0;
    } else {
        return 0;
    }
    if (c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
        c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000)
        return n;
    return 0;
}

static const unsigned char *dur_skip_space(const unsigned char *p, const unsigned char *end)
{
    size_t n;
    while ((n = dur_space(p, end)) > 0)
        p += n;
    return p;
}

static bool dur_digit(const unsigned char *p, const unsigned char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

/* A factor's digits as a double, rounded as Python's float() does, whatever
 * the process's locale. */
static double dur_factor(const unsigned char *p, size_t n, bool *ok)
{
    locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    char *text = strndup((const char *)p, n);
    double d = 0;

    *ok = c && text;
    if (*ok)
        d = strtod_l(text, NULL, c);
    free(text);
    if (c)
        freelocale(c);
    return d;
}

/* tmt's grammar (see fmf.h): 1 and the seconds in *out, 0 when the text
 * is not a duration, -1 when it is one too long to keep, -ENOMEM. */
static int dur_eval(const unsigned char *p, const unsigned char *end, int64_t *out)
{
    uint64_t total = 0;
    double factor = 1.0, secs;
    bool too_long = false, terms = false;

    if (p == end)
        return 0;
    while (p < end) {
        bool unit = false;

        if (terms && (p = dur_skip_space(p, end)) == end)
            break;
        /* An amount may say "+", as sleep's arguments may: "5m +5m" adds. */
        if (*p == '+' && dur_digit(p + 1, end))
            p++;
        if (*p == '*') {
            const unsigned char *q = p = dur_skip_space(p + 1, end);
            bool ok;
            if (!dur_digit(p, end))
                return 0;
            while (dur_digit(p, end))
                p++;
            if (p < end && *p == '.' && dur_digit(p + 1, end))
                for (p++; dur_digit(p, end); p++)
                    ;
            factor *= dur_factor(q, (size_t)(p - q), &ok);
            if (!ok)
                return -ENOMEM;
        } else if (dur_digit(p, end)) {
            uint64_t amount = 0, mult = 1;
            const unsigned char *u;
            for (; dur_digit(p, end); p++)
                too_long |= __builtin_mul_overflow(amount, 10, &amount) ||
                            __builtin_add_overflow(amount, (uint64_t)(*p - '0'), &amount);
            u = dur_skip_space(p, end);
            if (u < end && (*u == 's' || *u == 'm' || *u == 'h' || *u == 'd')) {
                mult = *u == 's' ? 1 : *u == 'm' ? 60 : *u == 'h' ? 3600 : 86400;
                p = u + 1;
                unit = true;
            }
            too_long |= __builtin_mul_overflow(amount, mult, &amount) ||
                        __builtin_add_overflow(total, amount, &total);
        } else {
            return 0;
        }
        terms = true;
        /* What may follow a term: whitespace, the next factor, the end; a
         * digit after a unit ("1h30m"). */
        if (p < end && *p != '*' && !dur_space(p, end) && !(unit && dur_digit(p, end)))
            return 0;
    }
    if (too_long)
        return -1;
    secs = (double)(total ? total : FMF_DEFAULT_DURATION) * factor;
    if (!(secs <= (double)FMF_MAX_DURATION))
        return isnan(secs) ? 0 : -1;
    /* Rounded up (exact: far below 2^53). */
    *out = (int64_t)secs + ((double)(int64_t)secs < secs);
    return 1;
}

int fmf_duration(const struct json_object *value, int64_t *seconds, char *err, size_t errlen)
{
    json_type type = json_object_get_type(value);
    char *text;
    int64_t secs = FMF_DEFAULT_DURATION;
    int rc = 1;

    if (err && errlen)
        err[0] = '\0';
    if (!seconds)
        return fail(err, errlen, -EINVAL, NULL, 0, "fmf_duration needs somewhere to put it");
    if (!value) {
        *seconds = secs;
        return 0;
    }
    if (type != json_type_string && type != json_type_int)
        return fail(err, errlen, -EINVAL, NULL, 0, "invalid duration: a %s, not a string",
                    py_type(value));
    if (!(text = py_str_dup(value)))
        return oom(err, errlen);
    if (type == json_type_string)
        rc = dur_eval((const unsigned char *)json_object_get_string((json_object *)value),
                      (const unsigned char *)json_object_get_string((json_object *)value) +
                          json_object_get_string_len(value), &secs);
    else
        rc = dur_eval((const unsigned char *)text, (const unsigned char *)text + strlen(text),
                      &secs);
    if (rc == 1 && secs == 0)
        rc = fail(err, errlen, -EINVAL, NULL, 0, "duration '%.80s' comes to 0 seconds", text);
    else if (rc == 0)
        rc = fail(err, errlen, -EINVAL, NULL, 0,
                  "invalid duration '%.80s': expected amounts (90, 90s, 5m, 1h, 2d) and "
                  "factors (*2, *1.5)", text);
    else if (rc == -1)
        rc = fail(err, errlen, -EINVAL, NULL, 0, "duration '%.80s' is longer than %" PRId64
                  " seconds", text, (int64_t)FMF_MAX_DURATION);
    else if (rc < 0)
        rc = oom(err, errlen);
    free(text);
    if (rc < 0)
        return rc;
    *seconds = secs;
    return 0;
}
