# Reboots in the middle of a test over the ssh provisioner (private sshd with
# a power switch, tests/ssh/peers.sh) and on local slots.
atx_script_test(reboot)
