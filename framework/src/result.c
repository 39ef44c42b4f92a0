/* The result model: reference-counted, immutable once emitted. */
#include "internal.h"

#include <stdatomic.h>
#include <string.h>

struct atx_result {
    atomic_int refs;
    char *test;
    char *subtest;
    atx_status status;
    char *word;            /* custom status word, or NULL */
    char *note;
    char *error_type;
    char **files;
    size_t nfiles, files_cap;
    int attempt;
    int final;
    int64_t started_ns, duration_ns;
    char *system_id;
    atx_labels *system_labels;
    int exit_code;
    double flake_rate;     /* -1: unknown */
    char *recent;          /* recent outcomes, oldest first, or NULL */
    int quarantined;
    struct {
        char *data;
        size_t len;
        uint64_t total;
    } out[2];
};

static const char *const status_words[] = {
    [ATX_STATUS_PASS] = "pass",   [ATX_STATUS_FAIL] = "fail",
    [ATX_STATUS_ERROR] = "error", [ATX_STATUS_SKIP] = "skip",
    [ATX_STATUS_WARN] = "warn",   [ATX_STATUS_INFO] = "info",
    [ATX_STATUS_INFRA] = "infra", [ATX_STATUS_CUSTOM] = "custom",
};

const char *atx_status_name(atx_status s)
{
    if ((unsigned)s < ATX_ARRAY_SIZE(status_words))
        return status_words[s];
    return "custom";
}

atx_status atx_status_from_word(const char *word)
{
    for (unsigned i = 0; word && i < ATX_STATUS_CUSTOM; i++)
        if (strcmp(word, status_words[i]) == 0)
            return (atx_status)i;
    return ATX_STATUS_CUSTOM;
}

int atx_status_is_failure(atx_status s)
{
    return s == ATX_STATUS_FAIL || s == ATX_STATUS_ERROR || s == ATX_STATUS_INFRA ||
           s == ATX_STATUS_CUSTOM;
}

int atx_result_new(const char *test, const char *subtest, atx_result **out)
{
    atx_result *r;

    if (!test || !*test || !out)
        return atx_error_set(ATX_EINVAL, "a result needs a test name");
    r = calloc(1, sizeof(*r));
    if (!r)
        return atx_error_oom();
    atomic_init(&r->refs, 1);
    r->attempt = 1;
    r->final = 1;
    r->exit_code = ATX_NO_EXIT_CODE;
    r->flake_rate = -1;
    if (atx_strdup_into(&r->test, test) < 0 || atx_strdup_into(&r->subtest, subtest) < 0) {
        atx_result_unref(r);
        return ATX_ENOMEM;
    }
    *out = r;
    return 0;
}

atx_result *atx_result_ref(atx_result *r)
{
    if (r)
        atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
    return r;
}

void atx_result_unref(atx_result *r)
{
    if (!r || atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(r->test);
    free(r->subtest);
    free(r->word);
    free(r->note);
    free(r->error_type);
    for (size_t i = 0; i < r->nfiles; i++)
        free(r->files[i]);
    free(r->files);
    free(r->system_id);
    free(r->recent);
    atx_labels_free(r->system_labels);
    free(r->out[0].data);
    free(r->out[1].data);
    free(r);
}

int atx_result_dup(const atx_result *src, atx_result **out)
{
    atx_result *r;
    int e;

    if (!src || !out)
        return atx_error_set(ATX_EINVAL, "no result to copy");
    e = atx_result_new(src->test, src->subtest, &r);
    if (e < 0)
        return e;
    r->status = src->status;
    r->attempt = src->attempt;
    r->final = src->final;
    r->started_ns = src->started_ns;
    r->duration_ns = src->duration_ns;
    r->exit_code = src->exit_code;
    r->flake_rate = src->flake_rate;
    r->quarantined = src->quarantined;
    if ((e = atx_strdup_into(&r->word, src->word)) < 0 ||
        (e = atx_strdup_into(&r->recent, src->recent)) < 0 ||
        (e = atx_strdup_into(&r->note, src->note)) < 0 ||
        (e = atx_strdup_into(&r->error_type, src->error_type)) < 0 ||
        (e = atx_result_set_system(r, src->system_id, src->system_labels)) < 0)
        goto fail;
    for (size_t i = 0; i < src->nfiles; i++)
        if ((e = atx_result_add_file(r, src->files[i])) < 0)
            goto fail;
    for (int s = 0; s < 2; s++)
        if (src->out[s].data &&
            (e = atx_result_set_output(r, (atx_stream)s, src->out[s].data, src->out[s].len,
                                       src->out[s].total)) < 0)
            goto fail;
    *out = r;
    return 0;
fail:
    atx_result_unref(r);
    return e;
}

int atx_result_set_status(atx_result *r, atx_status s)
{
    if (!r || (unsigned)s >= ATX_STATUS_CUSTOM)
        return atx_error_set(ATX_EINVAL, "bad status");
    r->status = s;
    free(r->word);
    r->word = NULL;
    return 0;
}

int atx_result_set_status_word(atx_result *r, const char *word)
{
    atx_status s;

    if (!r || !word || !*word)
        return atx_error_set(ATX_EINVAL, "a status word must not be empty");
    s = atx_status_from_word(word);
    if (s != ATX_STATUS_CUSTOM)
        return atx_result_set_status(r, s);
    if (atx_strdup_into(&r->word, word) < 0)
        return ATX_ENOMEM;
    r->status = ATX_STATUS_CUSTOM;
    return 0;
}

int atx_result_set_note(atx_result *r, const char *note)
{
    return r ? atx_strdup_into(&r->note, note) : ATX_EINVAL;
}

int atx_result_set_error_type(atx_result *r, const char *type)
{
    return r ? atx_strdup_into(&r->error_type, type) : ATX_EINVAL;
}

int atx_result_add_file(atx_result *r, const char *relpath)
{
    if (!r || !relpath || !*relpath)
        return atx_error_set(ATX_EINVAL, "a file needs a path");
    if (r->nfiles == r->files_cap) {
        size_t cap = r->files_cap ? r->files_cap * 2 : 4;
        char **f = realloc(r->files, cap * sizeof(*f));
        if (!f)
            return atx_error_oom();
        r->files = f;
        r->files_cap = cap;
    }
    r->files[r->nfiles] = strdup(relpath);
    if (!r->files[r->nfiles])
        return atx_error_oom();
    r->nfiles++;
    return 0;
}

int atx_result_set_attempt(atx_result *r, int attempt)
{
    if (!r || attempt < 1)
        return atx_error_set(ATX_EINVAL, "attempts count from 1");
    r->attempt = attempt;
    return 0;
}

int atx_result_set_final(atx_result *r, int final)
{
    if (!r)
        return ATX_EINVAL;
    r->final = final ? 1 : 0;
    return 0;
}

int atx_result_set_times(atx_result *r, int64_t started_ns, int64_t duration_ns)
{
    if (!r || duration_ns < 0)
        return atx_error_set(ATX_EINVAL, "durations are not negative");
    r->started_ns = started_ns;
    r->duration_ns = duration_ns;
    return 0;
}

int atx_result_set_system(atx_result *r, const char *id, const atx_labels *labels)
{
    atx_labels *copy = NULL;
    int e;

    if (!r)
        return ATX_EINVAL;
    if (labels && (e = atx_labels_dup(labels, &copy)) < 0)
        return e;
    if ((e = atx_strdup_into(&r->system_id, id)) < 0) {
        atx_labels_free(copy);
        return e;
    }
    atx_labels_free(r->system_labels);
    r->system_labels = copy;
    return 0;
}

int atx_result_set_exit_code(atx_result *r, int code)
{
    if (!r)
        return ATX_EINVAL;
    r->exit_code = code;
    return 0;
}

int atx_result_set_output(atx_result *r, atx_stream stream, const char *data, size_t len,
                          uint64_t total)
{
    char *copy;

    if (!r || (stream != ATX_STREAM_STDOUT && stream != ATX_STREAM_STDERR) || (!data && len))
        return atx_error_set(ATX_EINVAL, "bad output arguments");
    copy = malloc(len + 1);
    if (!copy)
        return atx_error_oom();
    if (len)
        memcpy(copy, data, len);
    copy[len] = '\0';
    free(r->out[stream].data);
    r->out[stream].data = copy;
    r->out[stream].len = len;
    r->out[stream].total = total < len ? len : total;
    return 0;
}

const char *atx_result_test(const atx_result *r) { return r ? r->test : NULL; }
const char *atx_result_subtest(const atx_result *r) { return r ? r->subtest : NULL; }
atx_status atx_result_status(const atx_result *r) { return r ? r->status : ATX_STATUS_ERROR; }
const char *atx_result_note(const atx_result *r) { return r ? r->note : NULL; }
const char *atx_result_error_type(const atx_result *r) { return r ? r->error_type : NULL; }
size_t atx_result_file_count(const atx_result *r) { return r ? r->nfiles : 0; }
int atx_result_attempt(const atx_result *r) { return r ? r->attempt : 0; }
int atx_result_final(const atx_result *r) { return r ? r->final : 0; }
int64_t atx_result_started(const atx_result *r) { return r ? r->started_ns : 0; }
int64_t atx_result_duration(const atx_result *r) { return r ? r->duration_ns : 0; }
const char *atx_result_system_id(const atx_result *r) { return r ? r->system_id : NULL; }
const atx_labels *atx_result_system_labels(const atx_result *r) { return r ? r->system_labels : NULL; }
int atx_result_exit_code(const atx_result *r) { return r ? r->exit_code : ATX_NO_EXIT_CODE; }

const char *atx_result_status_word(const atx_result *r)
{
    if (!r)
        return NULL;
    return r->status == ATX_STATUS_CUSTOM && r->word ? r->word : atx_status_name(r->status);
}

const char *atx_result_file(const atx_result *r, size_t i)
{
    return r && i < r->nfiles ? r->files[i] : NULL;
}

const char *atx_result_output(const atx_result *r, atx_stream stream, size_t *len,
                              uint64_t *total)
{
    if (!r || (stream != ATX_STREAM_STDOUT && stream != ATX_STREAM_STDERR)) {
        if (len)
            *len = 0;
        if (total)
            *total = 0;
        return NULL;
    }
    if (len)
        *len = r->out[stream].len;
    if (total)
        *total = r->out[stream].total;
    return r->out[stream].data;
}

static int mask_str(char **field, atx_secrets *s)
{
    char *m;
    int r = *field ? atx_secrets_mask(s, *field, strlen(*field), &m, NULL) : 0;
    if (r > 0) {
        free(*field);
        *field = m;
    }
    return r < 0 ? r : 0;
}

int atx_result_mask(atx_result *r, atx_secrets *s)
{
    int e = 0;

    if (!r || !s)
        return 0;
    if ((e = mask_str(&r->subtest, s)) < 0 || (e = mask_str(&r->word, s)) < 0 ||
        (e = mask_str(&r->note, s)) < 0 || (e = mask_str(&r->error_type, s)) < 0)
        return e;
    /* File names too: atx_secrets_mask_tree renames the files the same way. */
    for (size_t i = 0; i < r->nfiles; i++)
        if ((e = mask_str(&r->files[i], s)) < 0)
            return e;
    for (int i = 0; i < 2; i++) {
        char *m;
        size_t n;
        int k = 0;
        if (!r->out[i].data || (k = atx_secrets_mask(s, r->out[i].data, r->out[i].len, &m, &n)) <= 0) {
            if (k < 0)
                e = k;
            continue;
        }
        if (r->out[i].total == r->out[i].len || r->out[i].total < n)
            r->out[i].total = n;
        free(r->out[i].data);
        r->out[i].data = m;
        r->out[i].len = n;
    }
    return e;
}

int atx_result_set_flake_rate(atx_result *r, double rate)
{
    if (!r || !(rate == -1 || (rate >= 0 && rate <= 1)))
        return atx_error_set(ATX_EINVAL, "a flake rate is 0 to 1, or -1");
    r->flake_rate = rate;
    return 0;
}

double atx_result_flake_rate(const atx_result *r) { return r ? r->flake_rate : -1; }

int atx_result_set_recent(atx_result *r, const char *outcomes)
{
    if (!r)
        return atx_error_set(ATX_EINVAL, "no result");
    return atx_strdup_into(&r->recent, outcomes);
}

const char *atx_result_recent(const atx_result *r) { return r ? r->recent : NULL; }

int atx_result_set_quarantined(atx_result *r, int quarantined)
{
    if (!r)
        return atx_error_set(ATX_EINVAL, "no result");
    r->quarantined = quarantined ? 1 : 0;
    return 0;
}

int atx_result_quarantined(const atx_result *r) { return r ? r->quarantined : 0; }
