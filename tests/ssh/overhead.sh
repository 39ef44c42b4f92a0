# Per-test overhead on an SSH system, side by side with OpenSSH (DESIGN.md
# §9): atx over the ssh provisioner (tests through the agent on one
# channel), `ssh host true` per test with a ControlMaster connection, and a
# fresh `ssh host true` per test. Not part of `make check`; run by hand:
#   ATX=build/bin/atx ATX_SRC=. ATX_PLUGIN_DIR=build/lib/atx/plugins \
#     bash tests/ssh/overhead.sh [N]
. "$ATX_SRC/tests/lib.sh"
. "$ATX_SRC/tests/ssh/peers.sh"
export ATX_PLUGIN_PATH="$ATX_PLUGIN_DIR"
trap 'peers_stop; cleanup' EXIT
N=${1:-200}

peers_init "$T/peers"
peer_start lab1
peer_trust lab1
cat > "$T/pool.json" <<EOF
{"known_hosts": "peers/known_hosts",
 "hosts": [{"name": "lab1", "address": "127.0.0.1", "port": $PORT_lab1,
            "identity": "peers/client_key"}]}
EOF
now() { date +%s.%N; }
plan() {  # plan N: N trivial tests on the one host
  local i
  printf '{"provisioners": [{"plugin": "ssh", "pool": "%s/pool.json"}], "tests": [' "$T"
  for ((i = 1; i <= $1; i++)); do
    [ $i -gt 1 ] && printf ','
    printf '{"name": "/t/%d", "command": ["true"]}' $i
  done
  printf '], "aggregators": [{"plugin": "junit", "path": "junit.xml"}]}\n'
}
plan 1 > "$T/p1.json"
plan $((N + 1)) > "$T/pn.json"
t0=$(now); "$ATX" run -q --plan "$T/p1.json" -o "$T/o1" >/dev/null; t1=$(now)
"$ATX" run -q --plan "$T/pn.json" -o "$T/on" >/dev/null; t2=$(now)

ssh_opts=(-i "$T/peers/client_key" -o UserKnownHostsFile="$T/peers/known_hosts"
          -o BatchMode=yes -p "$PORT_lab1")
ssh "${ssh_opts[@]}" -o ControlMaster=yes -o ControlPath="$T/cm" -o ControlPersist=60 \
  -fN root@127.0.0.1
t3=$(now)
for ((i = 0; i < N; i++)); do ssh "${ssh_opts[@]}" -o ControlPath="$T/cm" root@127.0.0.1 true; done
t4=$(now)
ssh "${ssh_opts[@]}" -o ControlPath="$T/cm" -O exit root@127.0.0.1 2>/dev/null
M=$(( N < 20 ? N : 20 ))
t5=$(now)
for ((i = 0; i < M; i++)); do ssh "${ssh_opts[@]}" root@127.0.0.1 true; done
t6=$(now)

awk -v n=$N -v m=$M -v a=$t0 -v b=$t1 -v c=$t2 -v d=$t3 -v e=$t4 -v f=$t5 -v g=$t6 'BEGIN {
  atx = ((c - b) - (b - a)) / n * 1000; mux = (e - d) / n * 1000; fresh = (g - f) / m * 1000
  printf "| per test | ms |\n|---|---|\n"
  printf "| atx, ssh provisioner (%d tests through the agent) | %.2f |\n", n, atx
  printf "| ssh host true, ControlMaster | %.1f |\n", mux
  printf "| ssh host true, fresh (%d) | %.1f |\n", m, fresh
  printf "| lease set-up (a one-test run, start to end) | %.0f |\n", (b - a) * 1000
  printf "ratio atx / ControlMaster ssh: 1/%.0f\n", mux / atx
}'
