/*
 * libFuzzer target for the TAP reader (executors/tap/tap.c).
 *
 * The input is a TAP stream, handed over in a buffer of exactly its length
 * (no NUL after it: a read past the end is ASan's to see). It is read twice:
 * whole, and stopped by the callback after as many points as the first byte
 * says. Every point's strings must be NUL-terminated and the directive set
 * only on SKIP and TODO points; the stopped reading must have seen a prefix
 * of the whole one's points; the summary's texts must be terminated lines.
 */
#define _GNU_SOURCE 1
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../executors/tap/tap.h"

typedef struct seen {
    size_t points, stop_after;
    uint64_t sum;           /* of the numbers, to compare the two readings */
} seen;

static void check_line(const char *s, size_t cap)
{
    if (strnlen(s, cap) >= cap)
        abort();
}

static int on_point(void *ud, const tap_point *p)
{
    seen *sn = ud;

    if (!p->description || (p->kind > TAP_TODO_PASSED))
        abort();
    (void)strlen(p->description);
    if (p->directive && p->kind != TAP_SKIP && p->kind != TAP_TODO_FAILED &&
        p->kind != TAP_TODO_PASSED)
        abort();
    if (p->diagnostics && !*p->diagnostics)
        abort();
    if (p->number < 0)
        abort();
    sn->points++;
    sn->sum += (uint64_t)p->number;
    return sn->stop_after && sn->points >= sn->stop_after;
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len);
int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    seen whole = { 0 }, cut = { 0 };
    tap_summary a, b;
    char *data;

    if (len < 1)
        return 0;
    data = malloc(len - 1 ? len - 1 : 1);
    if (!data)
        return 0;
    memcpy(data, buf + 1, len - 1);
    tap_parse(data, len - 1, on_point, &whole, &a);
    if (a.stopped || a.seen != (long)whole.points)
        abort();
    check_line(a.problem, sizeof(a.problem));
    check_line(a.bail_reason, sizeof(a.bail_reason));
    if (a.problem[0] && memchr(a.problem, '\n', strlen(a.problem)))
        abort();

    cut.stop_after = buf[0] % 8 + 1;
    tap_parse(data, len - 1, on_point, &cut, &b);
    if (cut.points > whole.points || (b.stopped && cut.points != cut.stop_after) ||
        (!b.stopped && (cut.points != whole.points || cut.sum != whole.sum)))
        abort();
    if (b.stopped && b.problem[0] && !a.problem[0])
        abort(); /* a stopped reading judges no plan */
    free(data);
    return 0;
}
