# The status aggregator against live, hanging and refusing servers
# (tests/status.sh with tests/status/server.py).
atx_script_test(status)
