# Private sshd "lab hosts" on loopback ports, for the ssh provisioner's tests.
# Source after tests/lib.sh:
#   peers_init DIR        client key, known_hosts file (empty)
#   peer_start NAME       a host key and an sshd on a free port; sets PORT_<NAME>
#   peer_trust NAME       add its key to DIR/known_hosts
#   peer_rekey NAME       a new host key (restarts it on the same port)
#   peer_kill NAME        SIGKILL its listener and every process under it
#   silent_start NAME     a port that accepts connections and says nothing
#   peer_power NAME PAUSE [wipe]
#                         a power switch: a line written to DIR/NAME/power
#                         (the peer's reboot command) drops every connection
#                         of the peer and brings its sshd back PAUSE seconds
#                         later ("never": it stays down); "wipe" empties its
#                         TMPDIR meanwhile, as a reboot empties /tmp
#   peers_stop            all of them (the EXIT trap calls it)
# Each sshd runs as root with its own config: no PAM, key login only. Its
# sessions get TMPDIR=DIR/NAME/tmp, so the work folders made there stay in
# the test's folder.

PEERS_DIR=
PEERS=()

peers_init() {
  PEERS_DIR=$1
  mkdir -p "$PEERS_DIR" /run/sshd
  [ -x /usr/sbin/sshd ] || fail "sshd is not installed (apt-get install openssh-server)"
  command -v ssh-keygen >/dev/null || fail "ssh-keygen is not installed"
  ssh-keygen -q -t ed25519 -N '' -C atx-test -f "$PEERS_DIR/client_key" \
    || fail "ssh-keygen could not make a client key"
  : > "$PEERS_DIR/known_hosts"
}


peer_up() {
  local name=$1 d="$PEERS_DIR/$1" port
  port=$(cat "$d/port")
  mkdir -p "$d/tmp"
  cat > "$d/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $d/host_key
AuthorizedKeysFile $PEERS_DIR/client_key.pub
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PidFile $d/sshd.pid
Subsystem sftp /usr/lib/openssh/sftp-server
SetEnv TMPDIR=$d/tmp ATX_PEER_POWER=$d/power
MaxSessions 64
MaxStartups 64
LogLevel VERBOSE
EOF
  /usr/sbin/sshd -D -f "$d/sshd_config" -E "$d/log" &
  echo $! > "$d/listener"
  # Until it accepts connections (bounded).
  local n=200
  while ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    kill -0 "$(cat "$d/listener")" 2>/dev/null ||
      fail "sshd for $name did not start: $(tail -5 "$d/log" 2>/dev/null)"
    n=$((n - 1))
    [ $n -gt 0 ] || fail "sshd for $name does not accept connections on port $port"
    sleep 0.05
  done
}

peer_start() {
  local name=$1 d="$PEERS_DIR/$1"
  mkdir -p "$d"
  ssh-keygen -q -t ed25519 -N '' -f "$d/host_key" || fail "ssh-keygen could not make a host key"
  free_port > "$d/port"
  PEERS+=("$name")
  peer_up "$name"
  printf -v "PORT_$name" '%s' "$(cat "$d/port")"
}

peer_trust() {
  local d="$PEERS_DIR/$1"
  printf '[127.0.0.1]:%s %s\n' "$(cat "$d/port")" "$(cut -d' ' -f1,2 "$d/host_key.pub")" \
    >> "$PEERS_DIR/known_hosts"
}

# SHA256 fingerprint of a peer's host key, as ssh-keygen prints it.
peer_fingerprint() {
  ssh-keygen -l -E sha256 -f "$PEERS_DIR/$1/host_key.pub" | awk '{print $2}'
}

# Every process under PID (children first), and PID.
tree_of() {
  local pid=$1 kids
  kids=$(ps -e -o pid=,ppid= | awk -v p="$pid" '$2 == p {print $1}')
  for k in $kids; do tree_of "$k"; done
  echo "$pid"
}

peer_kill() {
  local d="$PEERS_DIR/$1" pids pid
  pid=$(cat "$d/listener" 2>/dev/null) || return 0
  # Freeze the tree first so nothing forks away while it is collected.
  pids=$(tree_of "$pid")
  kill -STOP $pids 2>/dev/null || true
  pids=$(tree_of "$pid")
  kill -KILL $pids 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$d/listener"
}

peer_rekey() {
  local name=$1 d="$PEERS_DIR/$1"
  peer_kill "$name"
  rm -f "$d/host_key" "$d/host_key.pub"
  ssh-keygen -q -t ed25519 -N '' -f "$d/host_key" || fail "ssh-keygen could not make a host key"
  peer_up "$name"
}

# silent_start NAME: a port that takes connections and never says a word
# (a host that hangs); sets PORT_<NAME>.
SILENT=()
silent_start() {
  local d="$PEERS_DIR/$1"
  mkdir -p "$d"
  python3 -c '
import os, socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(3600)' "$d/port" &
  SILENT+=($!)
  wait_for "$d/port" 10
  printf -v "PORT_$1" '%s' "$(cat "$d/port")"
}

# The switch lives here, outside the peer's sshd: what a "reboot" kills
# cannot be the one that brings the peer back.
POWER=()
peer_power() {
  local name=$1 pause=$2 wipe=${3:-} d="$PEERS_DIR/$1"
  rm -f "$d/power"
  mkfifo "$d/power" || fail "cannot make $d/power"
  (
    trap - EXIT
    while read -r why < "$d/power"; do
      echo "$(date +%T.%N) power $name: off ($why)" >> "$d/power.log"
      peer_kill "$name"
      [ "$wipe" = wipe ] && rm -rf "${d:?}/tmp/"* 2>/dev/null
      [ "$pause" = never ] && continue
      sleep "$pause" # the time a reboot takes
      peer_up "$name"
      echo "$(date +%T.%N) power $name: on" >> "$d/power.log"
    done
  ) &
  POWER+=($!)
}

peers_stop() {
  local p
  for p in "${POWER[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PEERS[@]}"; do peer_kill "$p"; done
  for p in "${SILENT[@]}"; do kill "$p" 2>/dev/null || true; done
}
