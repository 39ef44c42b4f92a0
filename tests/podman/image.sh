# The podman test image, for tests that use containers (source after
# tests/lib.sh): rootful podman with runc and cgroupfs (ENVIRONMENT.md), and
# a busybox image built here from busybox-static. Sets CONTAINERS_CONF and
# IMG. If podman cannot run a container, the test fails with the reason; it
# never skips.
command -v podman >/dev/null || fail "podman is not installed (apt-get install -y podman runc)"
[ -x /bin/busybox ] || fail "/bin/busybox is missing (apt-get install -y busybox-static)"

cat > "$T/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
export CONTAINERS_CONF="$T/containers.conf"

# The image: busybox and its applet links, an os-release to read labels
# from, a bash that is busybox's sh, and an init of its own (its command,
# PID 1 under a provisioner with init: true): it idles and ends on SIGTERM,
# which busybox's reboot sends it. The tag changes when its content does.
IMG=localhost/atx-test-busybox:2
if ! podman image exists "$IMG" 2>/dev/null; then
    root="$T/image-root"
    mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/var/tmp" "$root/proc" "$root/sys" "$root/dev"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
    done
    printf '%s\n' 'NAME="BusyBox (atx tests)"' 'ID=busybox' 'VERSION_ID="1"' > "$root/etc/os-release"
    mkdir -p "$root/sbin"
    # fmf tests run under bash: busybox's ash stands in.
    printf '%s\n' '#!/bin/sh' 'exec /bin/sh "$@"' > "$root/bin/bash"
    chmod 755 "$root/bin/bash"
    printf '%s\n' '#!/bin/sh' "trap 'exit 0' TERM INT HUP" \
        'while :; do sleep 3600 & wait $!; done' > "$root/sbin/atx-init"
    chmod 755 "$root/sbin/atx-init"
    tar -C "$root" -c . | podman import --change 'CMD ["/sbin/atx-init"]' - "$IMG" >/dev/null 2>"$T/import.err" ||
        fail "cannot build the test image: $(tail -n 1 "$T/import.err")"
fi
podman run --rm --network=none "$IMG" true 2>"$T/podman.err" ||
    fail "podman cannot run a container here: $(tail -n 1 "$T/podman.err")"
pass "podman runs $IMG"

