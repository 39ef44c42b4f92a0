/* Label sets: a sorted array of key/value pairs. Sets are small (tens). */
#include "internal.h"

#include <stdio.h>

#include <string.h>

typedef struct pair {
    char *key;
    char *value;
} pair;

struct atx_labels {
    pair *pairs;
    size_t len, cap;
};

int atx_labels_new(atx_labels **out)
{
    atx_labels *l;

    if (!out)
        return atx_error_set(ATX_EINVAL, "no output pointer");
    l = calloc(1, sizeof(*l));
    if (!l)
        return atx_error_oom();
    *out = l;
    return 0;
}

void atx_labels_free(atx_labels *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->len; i++) {
        free(l->pairs[i].key);
        free(l->pairs[i].value);
    }
    free(l->pairs);
    free(l);
}

int atx_labels_dup(const atx_labels *src, atx_labels **out)
{
    atx_labels *l;
    int r = atx_labels_new(&l);

    if (r < 0)
        return r;
    r = atx_labels_merge(l, src);
    if (r < 0) {
        atx_labels_free(l);
        return r;
    }
    *out = l;
    return 0;
}

/* Index of key, or the insertion point with *found = false. */
static size_t find(const atx_labels *l, const char *key, bool *found)
{
    size_t lo = 0, hi = l ? l->len : 0;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(l->pairs[mid].key, key);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

int atx_labels_set(atx_labels *l, const char *key, const char *value)
{
    bool found;
    size_t i;
    char *v;

    if (!l || !key || !*key || !value)
        return atx_error_set(ATX_EINVAL, "a label needs a non-empty key and a value");
    v = strdup(value);
    if (!v)
        return atx_error_oom();
    i = find(l, key, &found);
    if (found) {
        free(l->pairs[i].value);
        l->pairs[i].value = v;
        return 0;
    }
    if (l->len == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        pair *p = realloc(l->pairs, cap * sizeof(*p));
        if (!p) {
            free(v);
            return atx_error_oom();
        }
        l->pairs = p;
        l->cap = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        return atx_error_oom();
    }
    memmove(&l->pairs[i + 1], &l->pairs[i], (l->len - i) * sizeof(pair));
    l->pairs[i].key = k;
    l->pairs[i].value = v;
    l->len++;
    return 0;
}

const char *atx_labels_get(const atx_labels *l, const char *key)
{
    bool found;
    size_t i;

    if (!l || !key)
        return NULL;
    i = find(l, key, &found);
    return found ? l->pairs[i].value : NULL;
}

size_t atx_labels_count(const atx_labels *l)
{
    return l ? l->len : 0;
}

int atx_labels_at(const atx_labels *l, size_t i, const char **key, const char **value)
{
    if (!l || i >= l->len)
        return ATX_EINVAL;
    if (key)
        *key = l->pairs[i].key;
    if (value)
        *value = l->pairs[i].value;
    return 0;
}

int atx_labels_merge(atx_labels *dst, const atx_labels *src)
{
    if (!dst)
        return atx_error_set(ATX_EINVAL, "no label set");
    for (size_t i = 0; src && i < src->len; i++) {
        int r = atx_labels_set(dst, src->pairs[i].key, src->pairs[i].value);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Whether value is one of the '|'-separated alternatives in want. */
static bool value_matches(const char *want, const char *value)
{
    size_t vlen = strlen(value);

    for (const char *p = want;;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == vlen && memcmp(p, value, n) == 0)
            return true;
        if (!bar)
            return false;
        p = bar + 1;
    }
}

int atx_labels_satisfy(const atx_labels *have, const atx_labels *need, const char **missing)
{
    for (size_t i = 0; need && i < need->len; i++) {
        const char *v = atx_labels_get(have, need->pairs[i].key);
        if (!v || !value_matches(need->pairs[i].value, v)) {
            if (missing)
                *missing = need->pairs[i].key;
            return 0;
        }
    }
    return 1;
}

int atx_labels_equal(const atx_labels *a, const atx_labels *b)
{
    size_t n = atx_labels_count(a);

    if (n != atx_labels_count(b))
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(a->pairs[i].key, b->pairs[i].key) != 0 ||
            strcmp(a->pairs[i].value, b->pairs[i].value) != 0)
            return 0;
    }
    return 1;
}

void atx_labels_class(const atx_labels *l, char *buf, size_t len)
{
    const char *p = l ? atx_labels_get(l, "provider") : NULL;
    const char *a = l ? atx_labels_get(l, "arch") : NULL;
    const char *d = l ? atx_labels_get(l, "distro") : NULL;
    snprintf(buf, len, "%s/%s/%s", p ? p : "-", a ? a : "-", d ? d : "-");
}
