# The man pages (built from their sources by tools/mkman.py): man renders
# each without a warning, and atx(1) names every option each command's
# --help lists (they stay in step).
. "$ATX_SRC/tests/lib.sh"
M="$ATX_BUILD/man"
for page in atx.1 atx-plan.5 atx-plugin.7 libatx.3; do
  [ -s "$M/$page" ] || fail "no $page"
  MANWIDTH=80 man --warnings -l "$M/$page" > "$page.txt" 2> "$page.err" || fail "man -l $page"
  [ ! -s "$page.err" ] || fail "$page: $(cat "$page.err")"
  grep -q "^NAME" "$page.txt" || fail "$page has no NAME"
  [ "$(wc -l < "$page.txt")" -gt 20 ] || fail "$page is nearly empty"
done
pass "man -l renders atx(1), atx-plan(5), atx-plugin(7) and libatx(3) without warnings"
for cmd in run list report plugins bud; do
  for opt in $("$ATX" $cmd --help | grep -oE -- '(^|[ [(,])--[a-z][a-z0-9-]*' | grep -oE -- '--[a-z0-9-]+' | sort -u); do
    # In the page's source: the rendered text may break a long option.
    grep -qF -- "${opt//-/\\-}" "$M/atx.1" || fail "atx(1) does not name $cmd's $opt"
  done
done
grep -q "atx_run_new" libatx.3.txt || fail "libatx(3) lacks atx_run_new"
grep -q "mask_env" atx-plan.5.txt || fail "atx-plan(5) lacks mask_env"
grep -q "ATX_PLUGIN_DEFINE" atx-plugin.7.txt || fail "atx-plugin(7) lacks ATX_PLUGIN_DEFINE"
pass "atx(1) names every option of every command's --help"
