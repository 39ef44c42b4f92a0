/* Secrets masked wherever test data is written: texts, files, names. */
#include "../framework/src/internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *masked(atx_secrets *s, const char *in)
{
    char *out = NULL;
    int r = atx_secrets_mask(s, in, strlen(in), &out, NULL);
    assert_true(r >= 0);
    return r ? out : strdup(in);
}

static void expect_masked(atx_secrets *s, const char *in, const char *want)
{
    char *got = masked(s, in);
    assert_string_equal(got, want);
    free(got);
}

static void texts(void **state)
{
    atx_secrets s;
    (void)state;
    atx_secrets_init(&s);
    assert_int_equal(atx_secrets_add(&s, "abcd1234"), 0);
    assert_int_equal(atx_secrets_add(&s, "abcd1234XYZW"), 0);
    assert_int_equal(atx_secrets_add(&s, "abc"), 0); /* too short: not a secret */
    expect_masked(&s, "x abcd1234XYZW y abcd1234 z abc", "x [MASKED] y [MASKED] z abc");
    expect_masked(&s, "abcd1234abcd1234", "[MASKED][MASKED]");
    expect_masked(&s, "nothing here", "nothing here");
    /* As JSON and XML write it. */
    assert_int_equal(atx_secrets_add(&s, "p\"w&1/x<y"), 0);
    expect_masked(&s, "json: \"p\\\"w&1\\/x<y\"", "json: \"[MASKED]\"");
    expect_masked(&s, "xml: a=\"p&quot;w&amp;1/x&lt;y\"", "xml: a=\"[MASKED]\"");
    expect_masked(&s, "raw: p\"w&1/x<y", "raw: [MASKED]");
    atx_secrets_free(&s);
}

static char scratch[256];

static void write_file(const char *path, const char *a, size_t pad, const char *b)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(a, f);
    for (size_t i = 0; i < pad; i++)
        fputc('.', f);
    fputs(b, f);
    fclose(f);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *p = malloc((size_t)n + 1);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    p[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void files(void **state)
{
    atx_secrets s;
    char path[512], cmd[1024];
    size_t len;
    struct stat before, after;
    (void)state;
    snprintf(scratch, sizeof(scratch), "/tmp/atx-secret-test-%d", (int)getpid());
    snprintf(cmd, sizeof(cmd), "rm -rf %s && mkdir -p %s/sub", scratch, scratch);
    assert_int_equal(system(cmd), 0);
    atx_secrets_init(&s);
    assert_int_equal(atx_secrets_add(&s, "SECRET-VALUE"), 0);

    /* Across the 1 MiB chunk the file is read in. */
    snprintf(path, sizeof(path), "%s/sub/big.txt", scratch);
    write_file(path, "head SECRET-VALUE ", (1 << 20) - 24, "SECRET-VALUE tail");
    /* None: left as it is (the same inode). */
    snprintf(path, sizeof(path), "%s/clean.txt", scratch);
    write_file(path, "nothing", 10, "");
    assert_int_equal(stat(path, &before), 0);
    /* In a name. */
    snprintf(path, sizeof(path), "%s/sub/x-SECRET-VALUE.txt", scratch);
    write_file(path, "", 0, "");
    /* Deeper than masking goes: removed, and said so. */
    snprintf(cmd, sizeof(cmd), "cd %s && mkdir -p deep/$(printf 'd/%%.0s' $(seq 70)) && "
             "echo SECRET-VALUE > deep/$(printf 'd/%%.0s' $(seq 70))leak", scratch);
    assert_int_equal(system(cmd), 0);

    assert_true(atx_secrets_mask_tree(&s, scratch) < 0);
    assert_non_null(strstr(atx_error_last()->message, "removed"));

    snprintf(path, sizeof(path), "%s/sub/big.txt", scratch);
    char *text = slurp(path, &len);
    assert_null(strstr(text, "SECRET"));
    assert_int_equal(strncmp(text, "head [MASKED] ", 14), 0);
    assert_string_equal(text + len - 13, "[MASKED] tail");
    free(text);
    snprintf(path, sizeof(path), "%s/clean.txt", scratch);
    assert_int_equal(stat(path, &after), 0);
    assert_int_equal(before.st_ino, after.st_ino);
    snprintf(path, sizeof(path), "%s/sub/x-[MASKED].txt", scratch);
    assert_int_equal(access(path, F_OK), 0);
    snprintf(cmd, sizeof(cmd), "! grep -r SECRET %s && ! ls -R %s | grep -q SECRET", scratch,
             scratch);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", scratch);
    assert_int_equal(system(cmd), 0);
    atx_secrets_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(texts),
        cmocka_unit_test(files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
