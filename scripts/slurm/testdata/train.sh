#!/bin/bash
# The tests' stand-in for a training (TRAIN_CMD): it checks that every GPU of
# its job or step is free in the fake node (no process record at all: a
# holder that died without releasing leaves one) within 5 s, which is how
# long a real training's start-up leaves keepgpu to release (or within
# FREE_WAIT tenths of a second: FREE_WAIT=1 looks once), and logs
# "train: gpu G free" and "train: step S" lines to $KG_LOG. Exits 1 if a GPU
# is still held, else $TRAIN_EXIT (default 0).
set -euo pipefail
gpus=${SLURM_STEP_GPUS:-${SLURM_JOB_GPUS:?no GPUs in this job}}
for g in ${gpus//,/ }; do
	procs=x
	for _ in $(seq "${FREE_WAIT:-50}"); do
		procs=$(fakegpu procs "$FAKEGPU_DIR" "$g")
		[ -z "$procs" ] && break
		sleep 0.1
	done
	if [ -n "$procs" ]; then
		echo "train: gpu $g still held: $procs" >>"$KG_LOG"
		exit 1
	fi
	echo "train: gpu $g free" >>"$KG_LOG"
done
echo "train: step ${SLURM_STEP_ID:-none} node ${SLURM_NODEID:-?}" >>"$KG_LOG"
exit "${TRAIN_EXIT:-0}"
