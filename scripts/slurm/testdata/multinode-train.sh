#!/bin/bash
# The tests' stand-in for a per-node launcher under sbatch-multinode.sh. On
# every node prep.sh checks that the node's GPUs are held, then a file next
# to the shared $KEEPGPU_READY_FILE says so; node 0 waits for every node's
# file (a barrier, as a launcher's rendezvous would be), logs "marker TIME"
# to $KG_LOG and touches the marker. Every node then waits until its own
# GPUs are free (its keepgpu saw the marker and its holder released), logs
# "free NODEID NODE TIME", waits for the holder to have exited (keepgpu ready
# returns only then) and trains (train.sh), which must find the GPUs free
# at its first look.
set -euo pipefail
here=$(dirname "$0")
id=${SLURM_NODEID:-0}
gpus=${SLURM_STEP_GPUS:-${SLURM_JOB_GPUS:?no GPUs in this job}}
"$here/prep.sh"
touch "$KEEPGPU_READY_FILE.prep$id"
if [ "$id" = 0 ]; then
	for _ in $(seq 600); do
		[ "$(find "$(dirname "$KEEPGPU_READY_FILE")" -maxdepth 1 -name "$(basename "$KEEPGPU_READY_FILE").prep*" | wc -l)" \
			-ge "${SLURM_NNODES:-1}" ] && break
		sleep 0.1
	done
	echo "marker $(date +%s.%N)" >>"$KG_LOG"
	touch "$KEEPGPU_READY_FILE"
fi
free() {
	local g
	for g in ${gpus//,/ }; do
		[ -z "$(fakegpu procs "$FAKEGPU_DIR" "$g")" ] || return 1
	done
}
for _ in $(seq 3000); do
	free && break
	sleep 0.01
done
echo "free $id ${SLURMD_NODENAME:-?} $(date +%s.%N)" >>"$KG_LOG"
rm -f "$KEEPGPU_READY_FILE.prep$id"
keepgpu ready
FREE_WAIT=1 exec "$here/train.sh"
