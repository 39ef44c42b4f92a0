/*
 * libFuzzer target for the test-control parser (executors/fmf/control.c).
 *
 * The input is a control stream; its first bytes choose how the attempt ends
 * and seed the chunk sizes. With the top bit of the first byte set, the rest
 * is cut at 0x1e bytes into pieces, and a piece starting with '{' becomes
 * `result <len>` + its JSON (up to a 0x1f byte) + the bytes after it, so that
 * mutations reach the result handling with lengths that fit. Each input is parsed twice, whole and in random
 * chunks, into two attempt directories; both must agree, and the results must
 * hold what TEST_CONTROL.md promises (one JSON object per line, no `partial`
 * or `testout`, every listed file present, a result of the test's own).
 */
#define _GNU_SOURCE 1
#include <ftw.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../executors/fmf/control.h"

static char root[256];
static char output_path[300];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void cleanup(void)
{
    rm_rf(root);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *t = getenv("TMPDIR");
    snprintf(root, sizeof(root), "%s/atx-fuzz-control-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(root))
        abort();
    atexit(cleanup);
    snprintf(output_path, sizeof(output_path), "%s/output", root);
    FILE *f = fopen(output_path, "wb");
    if (!f)
        abort();
    fputs("the test's output\n", f);
    fclose(f);
    return 0;
}

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                             \
        }                                                                        \
    } while (0)

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0, got;

    if (!f)
        return NULL;
    do {
        if (n + 4096 > cap) {
            cap = (n + 4096) * 2;
            buf = realloc(buf, cap);
            CHECK(buf);
        }
        got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
    } while (got > 0);
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Parse @data into @dir in chunks (0: at once) and finish it. */
static fmf_control *parse(const char *dir, const uint8_t *data, size_t size, uint32_t seed,
                          int whole, int exit_code, fmf_end_kind end)
{
    fmf_control *c = NULL;
    int errors = 0;

    CHECK(fmf_control_new(dir, NULL, &c) == 0);
    for (size_t off = 0; off < size;) {
        size_t n = size - off;
        if (!whole) {
            seed = seed * 1103515245u + 12345u;
            size_t pick = (seed >> 16) % 4;
            size_t max = pick == 0 ? 1 : pick == 1 ? 7 : pick == 2 ? 64 : 4096;
            n = 1 + (seed >> 8) % max;
            if (n > size - off)
                n = size - off;
        }
        int r = fmf_control_feed(c, (const char *)data + off, n);
        CHECK(r <= 0);
        errors += r < 0;
        off += n;
    }
    CHECK(errors <= 1);
    CHECK((errors == 1) == (fmf_control_error(c) != NULL));
    if (seed & 1)
        (void)fmf_control_stream_end(c);
    CHECK(fmf_control_finish(c, exit_code, end, end == FMF_END_EXITED ? NULL : "ended", output_path) == 0);
    return c;
}

/* What TEST_CONTROL.md promises about an attempt's results. */
static void check_results(const char *dir, fmf_control *c)
{
    char path[1024];
    size_t len = 0, n = fmf_control_result_count(c), off = 0;
    int own = 0;

    snprintf(path, sizeof(path), "%s/results", dir);
    char *text = slurp(path, &len);
    CHECK(text);
    for (size_t i = 0; i < n; i++) {
        const char *line = fmf_control_result_line(c, i);
        size_t l = strlen(line);
        CHECK(off + l < len + 1 && memcmp(text + off, line, l) == 0 && text[off + l] == '\n');
        off += l + 1;

        json_object *o = (json_object *)fmf_control_result(c, i), *files = NULL, *v;
        CHECK(o && json_object_is_type(o, json_type_object));
        CHECK(!json_object_object_get_ex(o, "partial", &v));
        CHECK(!json_object_object_get_ex(o, "testout", &v));
        own += !json_object_object_get_ex(o, "name", &v);
        const char *const *paths = fmf_control_result_paths(c, i);
        CHECK(paths);
        size_t k = 0;
        if (json_object_object_get_ex(o, "files", &files)) {
            CHECK(json_object_is_type(files, json_type_array));
            for (; paths[k]; k++) {
                struct stat st;
                CHECK(strncmp(paths[k], "files/", 6) == 0 && !strstr(paths[k], "/../"));
                snprintf(path, sizeof(path), "%s/%s", dir, paths[k]);
                CHECK(lstat(path, &st) == 0 && S_ISREG(st.st_mode));
                json_object *name = json_object_array_get_idx(files, k);
                CHECK(json_object_is_type(name, json_type_string));
            }
            CHECK(k == json_object_array_length(files));
        }
        CHECK(k == 0 || files);
        CHECK(!paths[k]);
    }
    CHECK(off == len);
    CHECK(own >= 1);
    free(text);
}

/* The structured form (see the top): a stream with `result` lengths filled in. */
static uint8_t *unpack(const uint8_t *data, size_t size, size_t *out_len)
{
    uint8_t *out = malloc(size * 2 + 32), *o = out;

    CHECK(out);
    for (size_t i = 0; i <= size;) {
        const uint8_t *end = memchr(data + i, 0x1e, size - i);
        size_t n = end ? (size_t)(end - (data + i)) : size - i;
        const uint8_t *piece = data + i;
        if (n && piece[0] == '{') {
            const uint8_t *sep = memchr(piece, 0x1f, n);
            size_t jl = sep ? (size_t)(sep - piece) : n;
            o += sprintf((char *)o, "result %zu\n", jl);
            memcpy(o, piece, jl);
            o += jl;
            if (sep) {
                memcpy(o, sep + 1, n - jl - 1);
                o += n - jl - 1;
            }
        } else {
            memcpy(o, piece, n);
            o += n;
        }
        i += n + 1;
    }
    *out_len = (size_t)(o - out);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char a[512], b[512];
    uint32_t seed = 0;
    int exit_code = 0;
    fmf_end_kind end = FMF_END_EXITED;
    uint8_t *unpacked = NULL;

    /* Two leading bytes choose the ending, the form and the chunk sizes. */
    if (size >= 2) {
        end = (fmf_end_kind)(data[0] & 3);
        exit_code = (data[0] >> 2) & 1 ? -1 : (data[0] >> 3) & 15;
        seed = data[1] * 2654435761u;
        if (data[0] & 0x80)
            data = unpacked = unpack(data + 2, size - 2, &size);
        else {
            data += 2;
            size -= 2;
        }
    }
    snprintf(a, sizeof(a), "%s/whole", root);
    snprintf(b, sizeof(b), "%s/chunks/attempt", root);
    fmf_control *ca = parse(a, data, size, seed, 1, exit_code, end);
    fmf_control *cb = parse(b, data, size, seed | 0x80000000u, 0, exit_code, end);

    check_results(a, ca);
    check_results(b, cb);
    /* Any split gives the same outcome. */
    CHECK(fmf_control_result_count(ca) == fmf_control_result_count(cb));
    for (size_t i = 0; i < fmf_control_result_count(ca); i++) {
        CHECK(strcmp(fmf_control_result_line(ca, i), fmf_control_result_line(cb, i)) == 0);
        const char *const *pa = fmf_control_result_paths(ca, i), *const *pb = fmf_control_result_paths(cb, i);
        for (; *pa && *pb; pa++, pb++)
            CHECK(strcmp(*pa, *pb) == 0);
        CHECK(!*pa && !*pb);
    }
    const char *ea = fmf_control_error(ca), *eb = fmf_control_error(cb);
    CHECK((!ea && !eb) || (ea && eb && strcmp(ea, eb) == 0));

    fmf_control_free(ca);
    fmf_control_free(cb);
    rm_rf(a);
    snprintf(b, sizeof(b), "%s/chunks", root);
    rm_rf(b);
    free(unpacked);
    return 0;
}
