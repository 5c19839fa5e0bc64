#!/bin/bash
# The tests' stand-in for a CPU-only data preparation (PREP_CMD): it checks
# that every GPU of its job (SLURM_STEP_GPUS or SLURM_JOB_GPUS: the fake
# node's GPU numbers) is held by a live process other than itself, and logs
# "prep: gpu G held by PID" lines to $KG_LOG. Needs fakegpu on PATH and
# FAKEGPU_DIR. Exits 1 if a GPU is not held within 15 s, else $PREP_EXIT
# (default 0).
set -euo pipefail
gpus=${SLURM_STEP_GPUS:-${SLURM_JOB_GPUS:?no GPUs in this job}}
for g in ${gpus//,/ }; do
	holder=""
	for _ in $(seq 150); do
		holder=$(fakegpu procs "$FAKEGPU_DIR" "$g" | awk '$5 == "true" && $3 > 0 { print $1; exit }')
		[ -n "$holder" ] && break
		sleep 0.1
	done
	if [ -z "$holder" ]; then
		echo "prep: gpu $g is not held" >>"$KG_LOG"
		exit 1
	fi
	echo "prep: gpu $g held by $holder on ${SLURMD_NODENAME:-?}" >>"$KG_LOG"
done
exit "${PREP_EXIT:-0}"
