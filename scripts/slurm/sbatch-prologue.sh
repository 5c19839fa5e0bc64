#!/bin/bash
# The "prologue" pattern: hold the job's GPUs from the top of the batch
# script while it does its CPU work, release them through a marker file, then
# start the training as a separate job step (srun) on free GPUs.
#
#   sbatch sbatch-prologue.sh
#
# Edit PREP_CMD and TRAIN_CMD below (or set them in the environment sbatch
# passes on): each is a command and its arguments, split on spaces.
#
# Use this when the CPU phase is a series of shell commands rather than one
# program. Mind the signals: under proctrack/cgroup a scancel sends SIGTERM
# only to this batch shell, so the background hold and the CPU phase get no
# TERM, only SIGKILL KillWait seconds later (the driver then takes the GPU
# memory back anyway). The training step started by srun does get TERM, and
# so does the hold on a job of several nodes, where it is a job step too.
#
#   sbatch --nodes=4 sbatch-prologue.sh      # one hold per node, then srun on all
#
#SBATCH --job-name=keepgpu-prologue
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=1
#SBATCH --time=01:00:00
set -euo pipefail

PREP_CMD=${PREP_CMD:-python prepare_data.py}
TRAIN_CMD=${TRAIN_CMD:-python train.py}

# 1. Hold every GPU of the job (what CUDA_VISIBLE_DEVICES shows) in the
#    background, released by a marker file that must not exist yet.
if [ "${SLURM_JOB_NUM_NODES:-1}" -gt 1 ]; then
	# Several nodes: one hold per node, as a job step, and the marker on the
	# shared file system, where every node sees it (by polling: NFS and
	# Lustre send no file events for other nodes' changes). --overlap lets
	# the CPU phase and the training start steps of their own meanwhile.
	marker=${SHARED_DIR:-${SLURM_SUBMIT_DIR:-$PWD}}/.keepgpu-${SLURM_JOB_ID:-$$}.ready
	rm -f "$marker"
	srun --overlap --ntasks-per-node=1 keepgpu hold --until-file "$marker" &
else
	marker=${TMPDIR:-/tmp}/keepgpu-${SLURM_JOB_ID:-$$}.ready
	rm -f "$marker"
	keepgpu hold --until-file "$marker" &
fi
hold=$!
# If the CPU phase fails, release the same way and wait: once the batch shell
# exits, Slurm kills whatever is left of the job. (Not kill: a TERM to srun
# makes it SIGKILL the step's tasks.)
trap 'touch "$marker"; wait "$hold" || true; rm -f "$marker"' EXIT

# 2. The CPU phase.
$PREP_CMD

# 3. Hand over: the hold releases within milliseconds of the marker appearing;
#    wait returns once its process is gone, i.e. the GPU memory is free. A
#    hold that could not start (no GPU, no driver) must not stop the job.
touch "$marker"
wait "$hold" || echo "keepgpu hold exited with status $?; going on" >&2

# 4. The training, as a job step on the now free GPUs (one task per node).
srun $TRAIN_CMD
