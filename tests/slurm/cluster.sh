# A real Slurm cluster on this host, for the slurm provisioner's tests:
# munged, slurmctld and one slurmd per node, each node in network and UTS
# namespaces of its own (its own address and hostname: Debian's slurmd runs
# one daemon per host), joined to this host by a veth pair. Source after
# tests/lib.sh:
#   slurm_cluster_start DIR NODE:CPUS:FEATURES[:FPGAS]...
#                         start it; sets SLURM_CONF (clients find it); a
#                         node may have FPGAS of the count-only GRES fpga
#   slurm_cluster_stop    stop every daemon (the EXIT trap calls it)
#   slurm_node_pid NODE   a process in NODE's namespaces (for nsenter)
# A daemon that does not start fails the test with its log's last lines.

SLURM_DIR=
SLURM_HOLDERS=()
SLURM_LINKS=()

slurm_need() {
  local p
  for p in munged slurmctld slurmd srun salloc scancel scontrol sinfo squeue nsenter unshare ip; do
    command -v "$p" >/dev/null || [ -x "/usr/sbin/$p" ] ||
      fail "$p is not installed (apt-get install munge slurmctld slurmd slurm-client iproute2 util-linux)"
  done
}

# A prefix 10.N.0.0/16 no interface of this host uses.
slurm_pick_net() {
  local n tries=50
  while [ $tries -gt 0 ]; do
    n=$(( 100 + RANDOM % 150 ))
    ip -4 -o addr show | grep -q " 10\.$n\." || { echo "$n"; return; }
    tries=$((tries - 1))
  done
  fail "no free 10.N.0.0/16 prefix for the cluster's links"
}

slurm_log_tail() { tail -n 8 "$1" 2>/dev/null | sed 's/^/    /'; }

# slurm_wait SECONDS CMD...: until CMD succeeds (bounded poll).
slurm_wait() {
  local n=$(( $1 * 10 )); shift
  until "$@" >/dev/null 2>&1; do
    n=$((n - 1))
    [ $n -gt 0 ] || return 1
    sleep 0.1
  done
}

slurm_cluster_start() {
  local dir=$1 net spec name cpus feats i=0 port nodes="" host
  shift
  slurm_need
  SLURM_DIR=$dir
  mkdir -p "$dir/state" "$dir/munge"
  chmod 0700 "$dir/munge"
  trap 'slurm_cluster_stop; wait; cleanup' EXIT
  net=$(slurm_pick_net)
  port=$(free_port 0.0.0.0)
  host=$(hostname -s)

  # munge: a key of its own, a socket in the test's folder.
  dd if=/dev/urandom of="$dir/munge/key" bs=1024 count=1 status=none
  chmod 0400 "$dir/munge/key"
  # Every daemon in the foreground, a child of this shell (which reaps it).
  /usr/sbin/munged -F -f --socket="$dir/munge/sock" --key-file="$dir/munge/key" \
    --pid-file="$dir/munge/pid" --log-file="$dir/munge/log" --seed-file="$dir/munge/seed" > "$dir/munge/out" 2>&1 &
  slurm_wait 10 test -S "$dir/munge/sock" ||
    fail "munged made no socket: $(slurm_log_tail "$dir/munge/log")"

  {
    echo "ClusterName=atxtest"
    echo "SlurmctldHost=$host(10.$net.1.1)"
    echo "SlurmctldPort=$port"
    echo "SlurmdPort=6818"
    echo "AuthType=auth/munge"
    echo "AuthInfo=socket=$dir/munge/sock"
    echo "CredType=cred/munge"
    echo "SlurmUser=root"
    echo "SlurmdUser=root"
    echo "StateSaveLocation=$dir/state"
    echo "SlurmdSpoolDir=$dir/spool-%n"
    echo "SlurmctldPidFile=$dir/slurmctld.pid"
    echo "SlurmdPidFile=$dir/slurmd-%n.pid"
    echo "SlurmctldLogFile=$dir/slurmctld.log"
    echo "SlurmdLogFile=$dir/slurmd-%n.log"
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"
    echo "JobAcctGatherType=jobacct_gather/none"
    echo "AccountingStorageType=accounting_storage/none"
    echo "JobCompType=jobcomp/none"
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_CPU"
    echo "SchedulerType=sched/builtin"
    echo "SlurmdParameters=config_overrides"
    echo "ReturnToService=1"
    echo "MpiDefault=none"
    echo "SlurmdTimeout=30"
    echo "InactiveLimit=0"
    echo "KillWait=2"
    echo "MinJobAge=10"
    echo "PlugStackConfig=$dir/plugstack.conf"
    echo "GresTypes=fpga"
  } > "$dir/slurm.conf"
  : > "$dir/gres.conf"
  : > "$dir/plugstack.conf"
  for spec in "$@"; do
    i=$((i + 1))
    IFS=: read -r name cpus feats gres <<< "$spec"
    echo "NodeName=$name NodeAddr=10.$net.$i.2 CPUs=$cpus RealMemory=1000${feats:+ Features=$feats}${gres:+ Gres=fpga:$gres} State=UNKNOWN" >> "$dir/slurm.conf"
    # A count-only generic resource: nothing on the node stands behind it.
    [ -z "$gres" ] || echo "NodeName=$name Name=fpga Count=$gres" >> "$dir/gres.conf"
    nodes="$nodes${nodes:+,}$name"
  done
  echo "PartitionName=main Nodes=$nodes Default=YES MaxTime=INFINITE State=UP" >> "$dir/slurm.conf"
  export SLURM_CONF="$dir/slurm.conf"

  # Each node: a holder process owning new network and UTS namespaces and
  # a veth pair into it; slurmd is entered into them once slurmctld is up.
  i=0
  for spec in "$@"; do
    i=$((i + 1))
    IFS=: read -r name cpus feats <<< "$spec"
    unshare -n -u sleep infinity &
    local holder=$! link="atx$net-$i"
    disown "$holder"
    SLURM_HOLDERS+=("$holder")
    echo "$holder" > "$dir/holder-$name"
    # Until unshare has made its namespaces (the holder's net ns differs).
    slurm_wait 10 slurm_own_netns "$holder" ||
      fail "unshare made no network namespace for $name"
    ip link add "$link" type veth peer name eth0 netns "$holder" ||
      fail "cannot make a veth link for node $name"
    SLURM_LINKS+=("$link")
    ip addr add "10.$net.$i.1/24" dev "$link"
    ip link set "$link" up
    nsenter -t "$holder" -n -u sh -c "
      hostname $name &&
      ip link set lo up && ip addr add 10.$net.$i.2/24 dev eth0 &&
      ip link set eth0 up && ip route add default via 10.$net.$i.1" ||
      fail "cannot set up the namespaces of node $name"
  done
  /usr/sbin/slurmctld -D -f "$SLURM_CONF" > "$dir/slurmctld.out" 2>&1 &
  slurm_wait 20 scontrol ping ||
    fail "slurmctld does not answer: $(slurm_log_tail "$dir/slurmctld.log")"

  for spec in "$@"; do
    IFS=: read -r name cpus feats <<< "$spec"
    nsenter -t "$(slurm_node_pid "$name")" -n -u /usr/sbin/slurmd -D -f "$SLURM_CONF" > "$dir/slurmd-$name.out" 2>&1 &
  done
  slurm_wait 30 sh -c "[ \$(sinfo -h -N -t idle -o %N | sort -u | wc -l) -ge $i ]" ||
    fail "the nodes did not come up: $(sinfo -N 2>&1 | head -5) $(slurm_log_tail "$dir/slurmctld.log") $(for spec in "$@"; do slurm_log_tail "$dir/slurmd-${spec%%:*}.log"; done)"
}

# Whether process PID is in a network namespace other than ours.
slurm_own_netns() { [ "$(readlink "/proc/$1/ns/net")" != "$(readlink /proc/self/ns/net)" ]; }

slurm_node_pid() { cat "$SLURM_DIR/holder-$1"; }

# slurm_kill_ns PID: every process in PID's network namespace (a node's
# slurmd, its step daemons and what they run).
slurm_kill_ns() {
  local ns p
  ns=$(readlink "/proc/$1/ns/net" 2>/dev/null) || return 0
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$ns" ] && kill -KILL "${p#/proc/}" 2>/dev/null || true
  done
  return 0
}

slurm_cluster_stop() {
  local pid n
  [ -n "$SLURM_DIR" ] || return 0
  for pid in "${SLURM_HOLDERS[@]}"; do slurm_kill_ns "$pid"; done
  pkill -TERM -f -- "-f $SLURM_DIR/slurm.conf" 2>/dev/null || true
  [ -f "$SLURM_DIR/munge/pid" ] && kill -TERM "$(cat "$SLURM_DIR/munge/pid")" 2>/dev/null || true
  # Bounded: slurmctld saves its state first.
  n=100
  while pgrep -f -- "$SLURM_DIR/" >/dev/null && [ $n -gt 0 ]; do sleep 0.05; n=$((n - 1)); done
  pkill -KILL -f -- "$SLURM_DIR/" 2>/dev/null || true
  for pid in "${SLURM_LINKS[@]}"; do ip link del "$pid" 2>/dev/null || true; done
  SLURM_DIR=
}
