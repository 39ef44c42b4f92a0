/*
 * Merged reports: one set of reports from the journals of several runs, the
 * shards of one plan run by several CI jobs or a Slurm job array.
 *
 * Every check that can refuse the merge (a folder without a run, a test in
 * two runs) is made before any aggregator begins, so a refused merge writes
 * no report at all. Results are replayed run after run, each in its own
 * order; a run's systems get its label ("local-1 (shard 2/4)"), since every
 * shard numbers its systems from 1, and its files a prefix that leads from
 * the merged reports' folder to the run's.
 */
#include "orch.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

typedef struct named {
    const char *name;   /* borrowed from the names' arena */
    size_t src;
} named;

typedef struct names_ctx {
    atx_vec *arena;     /* char*: the names, owned */
    named **list;
    size_t len, cap;
    size_t src;
} names_ctx;

static int collect_name(void *ud, int64_t id, const char *name)
{
    names_ctx *c = ud;
    char *copy;
    (void)id;
    if (c->len == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        named **l = realloc(c->list, cap * sizeof(*l));
        if (!l)
            return atx_error_oom();
        c->list = l;
        c->cap = cap;
    }
    named *n = malloc(sizeof(*n));
    if (!n || !(copy = strdup(name)) || atx_vec_push(c->arena, copy) < 0) {
        free(n);
        return atx_error_oom();
    }
    n->name = copy;
    n->src = c->src;
    c->list[c->len++] = n;
    return 0;
}

static int cmp_named(const void *a, const void *b)
{
    const named *x = *(named *const *)a, *y = *(named *const *)b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->src > y->src) - (x->src < y->src);
}

/* A test in two runs would be reported twice: refused, naming it. */
static int check_unique(atx_run *run)
{
    atx_vec arena = { 0 };
    names_ctx c = { .arena = &arena };
    int r = 0;

    for (size_t i = 0; i < run->sources.len && r == 0; i++) {
        c.src = i;
        r = jr_each_test(((merge_src *)run->sources.items[i])->jr, collect_name, &c);
    }
    if (r == 0 && c.len > 1) {
        qsort(c.list, c.len, sizeof(*c.list), cmp_named);
        for (size_t i = 1; i < c.len; i++) {
            if (strcmp(c.list[i - 1]->name, c.list[i]->name) != 0)
                continue;
            const merge_src *a = run->sources.items[c.list[i - 1]->src],
                            *b = run->sources.items[c.list[i]->src];
            r = atx_error_set(ATX_EEXIST, "test %s is in two of the runs merged: %s and %s",
                              c.list[i]->name, a->dir, b->dir);
            break;
        }
    }
    for (size_t i = 0; i < c.len; i++)
        free(c.list[i]);
    free(c.list);
    for (size_t i = 0; i < arena.len; i++)
        free(arena.items[i]);
    atx_vec_release(&arena);
    return r;
}

/* "../b/" leads from folder @p from to folder @p to (both absolute, clean). */
static char *relative_prefix(const char *from, const char *to)
{
    size_t common = 0, ups = 0;
    char *out;

    for (size_t i = 0;; i++) {
        bool fe = from[i] == '\0' || from[i] == '/', te = to[i] == '\0' || to[i] == '/';
        if (fe && te)
            common = i;
        if (from[i] != to[i] || !from[i])
            break;
    }
    for (const char *p = from + common; *p; p++)
        ups += *p == '/';
    const char *rest = to[common] == '/' ? to + common + 1 : to + common;
    size_t len = 3 * ups + strlen(rest) + 2;
    if (!(out = malloc(len)))
        return NULL;
    out[0] = '\0';
    for (size_t i = 0; i < ups; i++)
        strcat(out, "../");
    if (*rest) {
        strcat(out, rest);
        strcat(out, "/");
    }
    return out;
}

static void free_sources(atx_run *run)
{
    for (size_t i = 0; i < run->sources.len; i++) {
        merge_src *m = run->sources.items[i];
        jr_close(m->jr);
        free(m->label);
        free(m->prefix);
        free(m->shard);
        free(m);
    }
    atx_vec_release(&run->sources);
}

/* Open each run's journal; its label, from its shard or its folder. */
static int open_sources(atx_run *run, const char *const *dirs, size_t n)
{
    int r;

    for (size_t i = 0; i < n; i++) {
        merge_src *m = calloc(1, sizeof(*m));
        char *v;
        if (!m || atx_vec_push(&run->sources, m) < 0) {
            free(m);
            return atx_error_oom();
        }
        m->dir = dirs[i];
        if ((r = jr_open(dirs[i], JR_RESUME, &m->jr)) < 0)
            return r;
        if (!(v = jr_meta_get(m->jr, "run_id")))
            return atx_error_set(ATX_EPARSE, "%s holds no run", jr_path(m->jr));
        free(v);
        m->shard = jr_meta_get(m->jr, "shard");
        const char *base = strrchr(dirs[i], '/');
        base = base && base[1] ? base + 1 : dirs[i];
        if (m->shard ? asprintf(&m->label, "shard %s", m->shard) < 0
                     : !(m->label = strdup(base)))
            return atx_error_oom();
        m->last_seq = jr_last_seq(m->jr);
    }
    /* Two runs with one label (two unsharded "results" folders): their
     * systems are told apart by the folders as given. */
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < n; k++) {
            merge_src *a = run->sources.items[i], *b = run->sources.items[k];
            if (i != k && strcmp(a->label, b->label) == 0 && !a->shard) {
                char *l = strdup(a->dir);
                if (!l)
                    return atx_error_oom();
                free(a->label);
                a->label = l;
            }
        }
    return 0;
}

static void merge_meta(atx_run *run)
{
    int64_t first = 0, last = 0;

    for (size_t i = 0; i < run->sources.len; i++) {
        merge_src *m = run->sources.items[i];
        int64_t started = 0, took = 0;
        jr_meta_int(m->jr, "started_ns", &started);
        jr_meta_int(m->jr, "duration_ns", &took);
        if (started > 0 && (first == 0 || started < first))
            first = started;
        if (started > 0 && started + took > last)
            last = started + took;
        if (i == 0)
            run->hostname = jr_meta_get(m->jr, "hostname");
        run->replay_count += jr_count_results(m->jr);
    }
    run->summary.started_ns = first;
    run->summary.duration_ns = last > first ? last - first : 0;
}

int atx_run_report_merge(atx_run *run, const char *const *dirs, size_t n, atx_summary *summary)
{
    char out[PATH_MAX], in[PATH_MAX];
    int r;

    if (!run || !dirs || n == 0)
        return atx_error_set(ATX_EINVAL, "a merge needs a run and the folders of runs");
    if (run->executed)
        return atx_error_set(ATX_ESTATE, "a run executes once");
    run->executed = true;
    run->reporting = true;
    if ((r = open_sources(run, dirs, n)) < 0 || (r = check_unique(run)) < 0)
        goto out;
    for (size_t i = 0; i < n && r == 0; i++)
        r = atx_run_tally(run, ((merge_src *)run->sources.items[i])->jr);
    if (r < 0 || (r = atx_mkdir_p(run->results_dir)) < 0)
        goto out;
    merge_meta(run);
    if (!realpath(run->results_dir, out)) {
        r = atx_error_set(-errno, "%s: %s", run->results_dir, strerror(errno));
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        merge_src *m = run->sources.items[i];
        if (!realpath(m->dir, in)) {
            r = atx_error_set(-errno, "%s: %s", m->dir, strerror(errno));
            goto out;
        }
        if (!(m->prefix = relative_prefix(out, in))) {
            r = atx_error_oom();
            goto out;
        }
        m->rb.file_prefix = *m->prefix ? m->prefix : NULL;
        m->rb.system_label = m->label;
    }
    r = atx_run_replay(run, summary);
out:
    free_sources(run);
    return r < 0 ? r : 0;
}
