# Reboots in the middle of a test in podman containers (the busybox image of
# tests/podman/image.sh, with and without its own init).
atx_script_test(reboot_podman)
set_tests_properties(reboot_podman PROPERTIES TIMEOUT 300)
