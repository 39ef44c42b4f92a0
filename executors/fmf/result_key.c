/*
 * tmt's `result` test key (result_key.h): settling the test's own result,
 * folding in tmt-report-result's reports, and reading custom results.
 *
 * A custom results file comes from the system under test: it is read from
 * our copy (no links), bounded in bytes, values and depth before anything of
 * it is kept, and its results enter the attempt through the control channel
 * parser (with that parser's limits on results, files and names), as if the
 * test had reported them itself.
 */
#define _GNU_SOURCE 1
#include "result_key.h"

#include <atx/plugin/text.h>

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define TO_STRING_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

static const char *const mode_words[] = {
    [FMF_RESULT_RESPECT] = "respect", [FMF_RESULT_XFAIL] = "xfail",
    [FMF_RESULT_PASS] = "pass",       [FMF_RESULT_INFO] = "info",
    [FMF_RESULT_WARN] = "warn",       [FMF_RESULT_ERROR] = "error",
    [FMF_RESULT_FAIL] = "fail",       [FMF_RESULT_CUSTOM] = "custom",
    [FMF_RESULT_RESTRAINT] = "restraint",
};

/* tmt's outcomes, least severe first: the worst of several is the last. */
static const char *const outcomes[] = { "skip", "info", "pass", "warn", "fail", "error" };
#define N_OUTCOMES (sizeof(outcomes) / sizeof(outcomes[0]))

void fmf_result_shown(char *buf, size_t len, const char *s, size_t max)
{
    size_t n = strlen(s);
    if (max > len - 1)
        max = len - 1;
    n = atx_text_utf8_floor(s, n, n < max ? n : max);
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    buf[n] = '\0';
}

int fmf_result_mode_parse(const char *word, fmf_result_mode *out)
{
    for (size_t i = 0; word && i < sizeof(mode_words) / sizeof(mode_words[0]); i++) {
        if (strcmp(word, mode_words[i]) == 0) {
            *out = (fmf_result_mode)i;
            return 0;
        }
    }
    return -1;
}

/* Severity of an outcome; a word tmt does not know counts as an error. */
static size_t rank(const char *status)
{
    for (size_t i = 0; i < N_OUTCOMES; i++)
        if (strcmp(status, outcomes[i]) == 0)
            return i;
    return N_OUTCOMES - 1;
}

static bool is_outcome(const char *word)
{
    for (size_t i = 0; i < N_OUTCOMES; i++)
        if (strcmp(word, outcomes[i]) == 0)
            return true;
    return false;
}

static const char *jstr(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

static int set_str(json_object *o, const char *key, const char *value)
{
    json_object *s = json_object_new_string(value);
    if (!s || json_object_object_add(o, key, s) < 0) {
        json_object_put(s);
        return -ENOMEM;
    }
    return 0;
}

/* tmt keeps notes as a list; in one line they read joined by ", ". */
static int add_note(json_object *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int add_note(json_object *o, const char *fmt, ...)
{
    const char *had = jstr(o, "note");
    char *text, *note;
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (r < 0)
        return -ENOMEM;
    if (had && *had) {
        r = asprintf(&note, "%s, %s", had, text);
        free(text);
        if (r < 0)
            return -ENOMEM;
    } else {
        note = text;
    }
    r = set_str(o, "note", note);
    free(note);
    return r;
}

/* The worst status of the helper programs' reports among @c's lines. */
static size_t reports_worst(const fmf_control *c, char *worst, size_t len)
{
    size_t n = 0, best = 0;

    for (size_t i = 0, count = fmf_control_result_count(c); i < count; i++) {
        /* Parsing every line is dear; a report names its program. */
        if (!strstr(fmf_control_result_line(c, i), "-report-result\""))
            continue;
        json_object *line = (json_object *)fmf_control_result(c, i);
        const char *via = line ? jstr(line, "via") : NULL, *status;
        size_t vl = via ? strlen(via) : 0;
        if (!via || vl < 14 || strcmp(via + vl - 14, "-report-result") != 0 || !jstr(line, "name"))
            continue;
        status = jstr(line, "status");
        if (!status || !*status)
            status = "pass";
        if (!n++ || rank(status) > best) {
            best = rank(status);
            fmf_result_shown(worst, len, status, len - 1);
        }
    }
    return n;
}

int fmf_result_settle(json_object *own, fmf_result_mode mode, const fmf_control *c,
                      bool status_from_exit)
{
    char status[64], worst[64];
    const char *s = jstr(own, "status");
    int r = 0;

    fmf_result_shown(status, sizeof(status), s && *s ? s : "pass", sizeof(status) - 1);
    if (strcmp(status, "infra") == 0 || mode == FMF_RESULT_CUSTOM)
        return 0;
    /* Once the test reported results, its exit code does not count. */
    size_t n = status_from_exit ? reports_worst(c, worst, sizeof(worst)) : 0;
    if (n) {
        memcpy(status, worst, sizeof(status));
        if ((r = set_str(own, "status", status)) < 0 ||
            (mode == FMF_RESULT_RESTRAINT &&
             (r = add_note(own, "the worst of %zu reported results", n)) < 0))
            return r;
    }
    const char *now = status;
    switch (mode) {
    case FMF_RESULT_RESPECT:
    case FMF_RESULT_RESTRAINT:
    case FMF_RESULT_CUSTOM:
        return 0;
    case FMF_RESULT_XFAIL:
        if (strcmp(status, "pass") == 0) {
            now = "fail";
            r = add_note(own, "test was expected to fail");
        } else if (strcmp(status, "fail") == 0) {
            now = "pass";
            r = add_note(own, "test failed as expected");
        }
        break;
    default:
        now = mode_words[mode];
        r = add_note(own, "test result overridden: %s", now);
        break;
    }
    if (r == 0 && strcmp(now, status) != 0 && (r = set_str(own, "status", now)) == 0)
        r = add_note(own, "original test result: %s", status);
    return r;
}

/* ---- feeding results into the control parser ---- */

/* @obj as one `result` (no files). */
static int feed(fmf_control *c, json_object *obj)
{
    size_t len;
    const char *text = json_object_to_json_string_length(obj, TO_STRING_FLAGS, &len);
    char head[64];

    if (!text)
        return -ENOMEM;
    int hl = snprintf(head, sizeof(head), "result %zu\n", len);
    int r = fmf_control_feed(c, head, (size_t)hl);
    return r < 0 ? r : fmf_control_feed(c, text, len);
}

int fmf_result_feed_own(fmf_control *c, const char *status, const char *note, bool partial)
{
    json_object *o = json_object_new_object();
    int r = !o || set_str(o, "status", status) < 0 || (note && set_str(o, "note", note) < 0) ||
                    (partial &&
                     json_object_object_add(o, "partial", json_object_new_boolean(1)) < 0)
                ? -ENOMEM
                : feed(c, o);
    json_object_put(o);
    return r;
}

/* ---- reading a custom results file ---- */

typedef struct reader {
    const char *file;   /* for messages: results.yaml or results.json */
    char *err;
    size_t errlen;
    size_t values;
    yaml_parser_t p;
} reader;

static int problem(reader *rd, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int problem(reader *rd, size_t line, const char *fmt, ...)
{
    va_list ap;
    int n = line ? snprintf(rd->err, rd->errlen, "%s: line %zu: ", rd->file, line)
                 : snprintf(rd->err, rd->errlen, "%s: ", rd->file);
    if (n < 0 || (size_t)n >= rd->errlen)
        return -EINVAL;
    va_start(ap, fmt);
    vsnprintf(rd->err + n, rd->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int next_event(reader *rd, yaml_event_t *ev)
{
    if (yaml_parser_parse(&rd->p, ev))
        return 0;
    return problem(rd, rd->p.problem_mark.line + 1, "not YAML: %s",
                   rd->p.problem ? rd->p.problem : "a syntax error");
}

/* A plain scalar that YAML reads as null. */
static bool null_word(const char *v, size_t n)
{
    return n == 0 || (n == 1 && *v == '~') ||
           (n == 4 && (!memcmp(v, "null", 4) || !memcmp(v, "Null", 4) || !memcmp(v, "NULL", 4)));
}

/*
 * One value from @ev (owned by the caller) on: lists and mappings as json
 * arrays and objects, every scalar a string (or null). No aliases: a few
 * bytes of them make gigabytes.
 */
static int read_value(reader *rd, const yaml_event_t *ev, int depth, json_object **out)
{
    size_t line = ev->start_mark.line + 1;
    yaml_event_t e;
    int r = 0;

    *out = NULL;
    if (++rd->values > FMF_CUSTOM_VALUES_MAX)
        return problem(rd, line, "more than %d values", FMF_CUSTOM_VALUES_MAX);
    switch (ev->type) {
    case YAML_SCALAR_EVENT: {
        const char *v = (const char *)ev->data.scalar.value;
        size_t n = ev->data.scalar.length;
        if (ev->data.scalar.plain_implicit && null_word(v, n))
            return 0;
        return (*out = json_object_new_string_len(v, (int)n)) ? 0 : -ENOMEM;
    }
    case YAML_ALIAS_EVENT:
        return problem(rd, line, "aliases are not supported");
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        break;
    default:
        return problem(rd, line, "not YAML");
    }
    if (depth >= FMF_CUSTOM_DEPTH_MAX)
        return problem(rd, line, "nested deeper than %d", FMF_CUSTOM_DEPTH_MAX);
    bool list = ev->type == YAML_SEQUENCE_START_EVENT;
    json_object *coll = list ? json_object_new_array() : json_object_new_object();
    if (!coll)
        return -ENOMEM;
    for (;;) {
        json_object *v = NULL;
        char *key = NULL;
        if ((r = next_event(rd, &e)) < 0)
            break;
        if (e.type == YAML_SEQUENCE_END_EVENT || e.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&e);
            break;
        }
        if (!list) {
            if (e.type != YAML_SCALAR_EVENT) {
                r = problem(rd, e.start_mark.line + 1, "a key is not a plain value");
                yaml_event_delete(&e);
                break;
            }
            key = strndup((const char *)e.data.scalar.value, e.data.scalar.length);
            yaml_event_delete(&e);
            if (!key) {
                r = -ENOMEM;
                break;
            }
            if ((r = next_event(rd, &e)) < 0) {
                free(key);
                break;
            }
        }
        r = read_value(rd, &e, depth + 1, &v);
        yaml_event_delete(&e);
        if (r == 0 && (list ? json_object_array_add(coll, v)
                            : json_object_object_add(coll, key, v)) < 0) {
            json_object_put(v);
            r = -ENOMEM;
        }
        free(key);
        if (r < 0)
            break;
    }
    if (r < 0) {
        json_object_put(coll);
        return r;
    }
    *out = coll;
    return 0;
}

/* One YAML document of @len bytes (JSON is YAML too), or NULL if empty. */
static int read_yaml(reader *rd, const char *text, size_t len, json_object **out)
{
    yaml_event_t e;
    json_object *doc = NULL;
    bool had_doc = false, done = false;
    int r = 0;

    if (!yaml_parser_initialize(&rd->p))
        return -ENOMEM;
    yaml_parser_set_input_string(&rd->p, (const unsigned char *)text, len);
    while (!done && r == 0 && (r = next_event(rd, &e)) == 0) {
        switch (e.type) {
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_END_EVENT:
            break;
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (had_doc)
                r = problem(rd, e.start_mark.line + 1, "more than one document");
            had_doc = true;
            break;
        default:
            r = read_value(rd, &e, 0, &doc);
            break;
        }
        yaml_event_delete(&e);
    }
    yaml_parser_delete(&rd->p);
    if (r < 0) {
        json_object_put(doc);
        return r;
    }
    *out = doc;
    return 0;
}

/* The file's text: at most FMF_CUSTOM_FILE_MAX bytes of a regular file. */
static int read_text(reader *rd, const char *path, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    char *buf = NULL;
    size_t got = 0;

    if (fd < 0)
        return problem(rd, 0, "cannot be read: %s", strerror(errno));
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return problem(rd, 0, "not a regular file");
    }
    if ((uint64_t)st.st_size > FMF_CUSTOM_FILE_MAX) {
        close(fd);
        return problem(rd, 0, "%llu bytes, more than the %u MiB read",
                       (unsigned long long)st.st_size, FMF_CUSTOM_FILE_MAX >> 20);
    }
    if (!(buf = malloc((size_t)st.st_size + 1))) {
        close(fd);
        return -ENOMEM;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

/* ---- custom results ---- */

/* @rel below @dir with no component a link, or -errno. */
static int open_beneath(const char *dir, const char *rel)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    char *copy = strdup(rel), *save = NULL;
    const char *part = copy ? strtok_r(copy, "/", &save) : NULL;

    if (fd < 0 || !copy) {
        int e = fd < 0 ? -errno : -ENOMEM;
        if (fd >= 0)
            close(fd);
        free(copy);
        return e;
    }
    while (part) {
        const char *next = strtok_r(NULL, "/", &save);
        int sub = openat(fd, part, (next ? O_DIRECTORY : O_NONBLOCK) | O_RDONLY | O_NOFOLLOW |
                                       O_CLOEXEC);
        int e = sub < 0 ? -errno : 0;
        close(fd);
        if (sub < 0) {
            free(copy);
            return e;
        }
        fd = sub;
        part = next;
    }
    free(copy);
    return fd;
}

/* A `log` path as a name below TMT_TEST_DATA: no empty, "." or ".." parts. */
static char *log_name(const char *s)
{
    char *out = malloc(strlen(s) + 1);
    size_t o = 0;

    if (!out)
        return NULL;
    while (*s) {
        size_t n = strcspn(s, "/");
        if (n && !(n == 1 && s[0] == '.') && !(n == 2 && s[0] == '.' && s[1] == '.')) {
            if (o)
                out[o++] = '/';
            memcpy(out + o, s, n);
            o += n;
        }
        s += n + (s[n] == '/');
    }
    out[o] = '\0';
    return out;
}

/* A `note`: a string, a list of strings (joined as tmt shows them), or null. */
static int note_text(json_object *v, char **out)
{
    *out = NULL;
    if (!v)
        return 0;
    if (json_object_is_type(v, json_type_string))
        return (*out = strdup(json_object_get_string(v))) ? 0 : -ENOMEM;
    if (!json_object_is_type(v, json_type_array))
        return -EINVAL;
    size_t n = json_object_array_length(v), len = 1;
    for (size_t i = 0; i < n; i++) {
        json_object *s = json_object_array_get_idx(v, i);
        if (!json_object_is_type(s, json_type_string))
            return -EINVAL;
        len += (size_t)json_object_get_string_len(s) + 2;
    }
    if (!(*out = calloc(1, len)))
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(*out, ", ");
        strcat(*out, json_object_get_string(json_object_array_get_idx(v, i)));
    }
    return 0;
}

/* One checked result of the file, as the control channel takes it. */
typedef struct custom {
    json_object *obj;   /* name (absent: the test's own), status, note, files */
    char **logs;        /* a log's path below the data folder, or NULL if it is
                           missing (opened again when fed: never held open) */
    size_t nlogs;
} custom;

static void customs_free(custom *cs, size_t n)
{
    for (size_t i = 0; cs && i < n; i++) {
        json_object_put(cs[i].obj);
        for (size_t k = 0; k < cs[i].nlogs; k++)
            free(cs[i].logs[k]);
        free(cs[i].logs);
    }
    free(cs);
}

/*
 * Check entry @i of the file and make it a result: name "/" is the test's
 * own; other names lose their leading '/'. Logs are opened below
 * @data_dir; one that is not there is named in the note.
 */
static int make_custom(reader *rd, json_object *e, size_t i, const char *data_dir, custom *out,
                       uint64_t *bytes, size_t *nfiles)
{
    json_object *v = NULL, *logs = NULL, *files = NULL;
    const char *name = jstr(e, "name"), *res = jstr(e, "result");
    char *note = NULL, where[160], shown[128];

    if (!json_object_is_type(e, json_type_object))
        return problem(rd, 0, "result %zu is not a mapping", i + 1);
    fmf_result_shown(shown, sizeof(shown), name ? name : "", 100);
    snprintf(where, sizeof(where), "result %zu%s%s%s", i + 1, name ? " (" : "", shown,
             name ? ")" : "");
    if (!name || !*name)
        return problem(rd, 0, "%s has no name", where);
    if (!res)
        return problem(rd, 0, "%s has no result", where);
    if (!is_outcome(res)) {
        fmf_result_shown(shown, sizeof(shown), res, 40);
        return problem(rd, 0, "%s: '%s' is not a result (pass, fail, info, warn, error, skip)",
                       where, shown);
    }
    json_object_object_get_ex(e, "log", &logs);
    if (logs && !json_object_is_type(logs, json_type_array))
        return problem(rd, 0, "%s: the log is not a list of paths", where);
    size_t nlogs = logs ? json_object_array_length(logs) : 0;
    for (size_t k = 0; k < nlogs; k++)
        if (!json_object_is_type(json_object_array_get_idx(logs, k), json_type_string))
            return problem(rd, 0, "%s: the log is not a list of paths", where);
    json_object_object_get_ex(e, "note", &v);
    int r = note_text(v, &note);
    if (r == -EINVAL)
        return problem(rd, 0, "%s: the note is not a string or a list of strings", where);
    out->obj = r < 0 ? NULL : json_object_new_object();
    out->logs = nlogs ? calloc(nlogs, sizeof(char *)) : NULL;
    if (!out->obj || (nlogs && !out->logs)) {
        free(note);
        return -ENOMEM;
    }
    const char *bare = name;
    while (*bare == '/')
        bare++;
    if ((*bare && set_str(out->obj, "name", bare) < 0) || set_str(out->obj, "status", res) < 0 ||
        (note && *note && set_str(out->obj, "note", note) < 0) ||
        (name[0] != '/' && add_note(out->obj, "the name does not start with '/'") < 0)) {
        free(note);
        return -ENOMEM;
    }
    free(note);
    if (!*bare && json_object_object_add(out->obj, "partial", json_object_new_boolean(1)) < 0)
        return -ENOMEM;
    for (size_t k = 0; k < nlogs; k++) {
        const char *given = json_object_get_string(json_object_array_get_idx(logs, k));
        char *rel = log_name(given);
        struct stat st;
        if (!rel)
            return -ENOMEM;
        int fd = *rel ? open_beneath(data_dir, rel) : -ENOENT;
        bool file = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
        if (fd >= 0)
            close(fd);
        out->nlogs++;
        if (!file) {
            char what[210];
            free(rel);
            fmf_result_shown(what, sizeof(what), given, 200);
            if (add_note(out->obj, "log %s is not a file in TMT_TEST_DATA", what) < 0)
                return -ENOMEM;
            continue;
        }
        out->logs[out->nlogs - 1] = rel;
        json_object *f = json_object_new_object();
        if (!files && (!(files = json_object_new_array()) ||
                       json_object_object_add(out->obj, "files", files) < 0)) {
            json_object_put(files);
            files = NULL;
        }
        if (!f || !files || set_str(f, "name", rel) < 0 ||
            json_object_object_add(f, "length", json_object_new_int64((int64_t)st.st_size)) < 0 ||
            json_object_array_add(files, f) < 0) {
            json_object_put(f);
            return -ENOMEM;
        }
        *bytes += (uint64_t)st.st_size;
        ++*nfiles;
    }
    return 0;
}

/* Feed @cs's JSON, then the bytes of each of its files, exactly as declared
 * (one file open at a time, below @data_dir as make_custom() found it). */
static int feed_custom(fmf_control *c, const custom *cs, const char *data_dir)
{
    json_object *files = NULL;
    int r = feed(c, cs->obj);

    json_object_object_get_ex(cs->obj, "files", &files);
    for (size_t k = 0, f = 0; r == 0 && k < cs->nlogs; k++) {
        if (!cs->logs[k])
            continue;
        json_object *len = NULL;
        json_object_object_get_ex(json_object_array_get_idx(files, f++), "length", &len);
        uint64_t left = (uint64_t)json_object_get_int64(len);
        char buf[65536];
        int fd = open_beneath(data_dir, cs->logs[k]);
        while (r == 0 && left) {
            ssize_t n = fd < 0 ? 0 : read(fd, buf, left < sizeof(buf) ? (size_t)left : sizeof(buf));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                /* Shorter than it was (or gone): the declared length still follows. */
                memset(buf, 0, sizeof(buf));
                n = left < sizeof(buf) ? (ssize_t)left : (ssize_t)sizeof(buf);
            }
            r = fmf_control_feed(c, buf, (size_t)n);
            left -= (uint64_t)n;
        }
        if (fd >= 0)
            close(fd);
    }
    return r;
}

/* A JSON text's values, roughly: its brackets and commas outside strings. */
static size_t json_values(const char *s, size_t len)
{
    size_t n = 1;
    bool str = false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                str = false;
        } else if (ch == '"') {
            str = true;
        } else if (ch == '[' || ch == '{' || ch == ',') {
            n++;
        }
    }
    return n;
}

static int parse(reader *rd, const char *text, size_t len, bool json, json_object **out)
{
    if (!json)
        return read_yaml(rd, text, len, out);
    if (json_values(text, len) > FMF_CUSTOM_VALUES_MAX)
        return problem(rd, 0, "more than %d values", FMF_CUSTOM_VALUES_MAX);
    if (!text[strspn(text, " \t\r\n")])
        return 0; /* empty */
    json_tokener *tok = json_tokener_new_ex(FMF_CUSTOM_DEPTH_MAX);
    if (!tok)
        return -ENOMEM;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    *out = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error je = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (je == json_tokener_success && !text[end + strspn(text + end, " \t\r\n")])
        return 0; /* a value; null is an empty file */
    json_object_put(*out);
    *out = NULL;
    return problem(rd, 0, "not JSON: %s at byte %zu",
                   je == json_tokener_continue ? "it ends early"
                   : je != json_tokener_success ? json_tokener_error_desc(je)
                                                : "data after the value",
                   end);
}

int fmf_result_custom(fmf_control *c, const char *file, const char *data_dir, const char *why)
{
    char err[512] = "";
    const char *base = file ? strrchr(file, '/') : NULL;
    reader rd = { .file = base ? base + 1 : file, .err = err, .errlen = sizeof(err) };
    json_object *doc = NULL;
    custom *cs = NULL;
    size_t n = 0, nfiles = 0;
    uint64_t bytes = 0;
    char *text = NULL;
    size_t len = 0;
    int r;

    if (!file)
        return fmf_result_feed_own(c, "error", why && *why ? why : "no custom results", true);
    size_t fl = strlen(rd.file);
    bool json = fl >= 5 && strcmp(rd.file + fl - 5, ".json") == 0;
    if ((r = read_text(&rd, file, &text, &len)) < 0 || (r = parse(&rd, text, len, json, &doc)) < 0)
        goto out;
    if (!doc || !json_object_is_type(doc, json_type_array)) {
        r = problem(&rd, 0, "%s", doc ? "not a list of results" : "empty: no custom results");
        goto out;
    }
    n = json_object_array_length(doc);
    if (!n) {
        r = problem(&rd, 0, "an empty list: no custom results");
        goto out;
    }
    if (!(cs = calloc(n, sizeof(*cs)))) {
        r = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if ((r = make_custom(&rd, json_object_array_get_idx(doc, i), i, data_dir, &cs[i], &bytes,
                             &nfiles)) < 0)
            goto out;
    /* What the control channel would refuse halfway is refused whole here. */
    if (nfiles > FMF_CONTROL_FILES_MAX || bytes > FMF_CONTROL_FILES_BYTES_MAX) {
        r = problem(&rd, 0, "its logs are more than %d files or %llu MiB", FMF_CONTROL_FILES_MAX,
                    (unsigned long long)(FMF_CONTROL_FILES_BYTES_MAX >> 20));
        goto out;
    }
    /* The test's own result: the one named "/", else the worst of them. */
    size_t own = n, worst = 0;
    for (size_t i = 0; i < n; i++) {
        const char *st = jstr(cs[i].obj, "status");
        if (!jstr(cs[i].obj, "name"))
            own = i;
        if (rank(st) > rank(jstr(cs[worst].obj, "status")))
            worst = i;
    }
    for (size_t i = 0; i < n && r >= 0; i++)
        r = feed_custom(c, &cs[i], data_dir);
    if (r >= 0 && own == n) {
        char note[300];
        snprintf(note, sizeof(note), "the worst of the %zu results in %s (none is named '/')", n,
                 rd.file);
        r = fmf_result_feed_own(c, jstr(cs[worst].obj, "status"), note, true);
    }
out:
    customs_free(cs, n);
    json_object_put(doc);
    free(text);
    if (r == -EINVAL)
        return fmf_result_feed_own(c, "error", err, true);
    return r;
}
