# Helpers for reporting through the ATEX test-control channel.
#   report JSON [FILE...]   a result; each FILE is sent in-band under its base name
# The JSON must not hold a "files" key when files are given: it is added here.
report() {
    json=$1
    shift
    if [ $# -gt 0 ]; then
        list=""
        for f in "$@"; do
            len=$(wc -c < "$f")
            list="$list${list:+,}{\"name\":\"$(basename "$f")\",\"length\":$len}"
        done
        case "$json" in
            "{}") json="{\"files\":[$list]}" ;;
            *) json="${json%\}},\"files\":[$list]}" ;;
        esac
    fi
    len=$(printf '%s' "$json" | wc -c)
    {
        printf 'result %d\n%s' "$len" "$json"
        for f in "$@"; do cat "$f"; done
    } >&"$ATEX_TEST_CONTROL"
}
