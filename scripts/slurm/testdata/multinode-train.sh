#!/bin/bash
# The tests' stand-in for a per-node launcher under sbatch-multinode.sh: node
# 0 prepares the data (prep.sh) and touches the shared $KEEPGPU_READY_FILE;
# every node then waits for that file and trains (train.sh).
set -euo pipefail
here=$(dirname "$0")
if [ "${SLURM_NODEID:-0}" = 0 ]; then
	"$here/prep.sh"
	touch "$KEEPGPU_READY_FILE"
fi
for _ in $(seq 300); do
	[ -e "$KEEPGPU_READY_FILE" ] && break
	sleep 0.1
done
exec "$here/train.sh"
