#!/usr/bin/env bash
# bench/slurm.sh: bench/scaling.sh over the slurm provisioner, on a Slurm
# cluster started here as the tests start it (tests/slurm/cluster.sh: munged,
# slurmctld, and NODES slurmd nodes of CPUS CPUs each, every node in network
# and UTS namespaces of its own). Every lease is a real allocation (salloc),
# a setup step, the agent's upload and the agent's step (srun).
#
#   bench/slurm.sh [BUILD_DIR] [SLOTS...]     (defaults: build, 8 32 128)
#   NODES=2 CPUS=64, and bench/scaling.sh's RUNS, ROUNDS, SLEEP (defaults
#   here: RUNS=1 ROUNDS=2 SLEEP=10)
# Needs root (namespaces) and Debian's munge, slurmctld, slurmd, slurm-client.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
slots=${*:-8 32 128}
export ATX="$PWD/$build/bin/atx" ATX_SRC=$PWD
[ -x "$ATX" ] || { echo "bench: build atx first (make build, or give the build folder)" >&2; exit 2; }
. "$ATX_SRC/tests/lib.sh"
. "$ATX_SRC/tests/slurm/cluster.sh"
cd "$ATX_SRC"
nodes=()
for i in $(seq "${NODES:-2}"); do nodes+=("n$i:${CPUS:-64}:base"); done
slurm_cluster_start "$T/cluster" "${nodes[@]}"
echo "cluster: $(sinfo --noheader --Node --format='%N %c' | tr '\n' ' ')(slurm $(sinfo --version | cut -d' ' -f2))"
RUNS=${RUNS:-1} ROUNDS=${ROUNDS:-2} SLEEP=${SLEEP:-10} \
  PROVISIONER='{"plugin": "slurm", "partition": "main", "workdir": "'"$T"'/nodes"}' \
  bench/scaling.sh "$build" $slots
