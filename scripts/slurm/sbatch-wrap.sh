#!/bin/bash
# keepgpu's canonical Slurm job: the job's GPUs are held while the CPU-only
# data preparation runs, and handed to the training the moment it is ready.
#
#   sbatch sbatch-wrap.sh                     # or: sbatch --gres=gpu:4 sbatch-wrap.sh
#
# Edit PREP_CMD and TRAIN_CMD below (or set them in the environment sbatch
# passes on): each is a command and its arguments, split on spaces. Often one
# program does both; then wrap just that program and let it touch
# "$KEEPGPU_READY_FILE" (or run `keepgpu ready`) once its data is ready:
#   exec keepgpu wrap --ready-file "$ready" -- python train.py
#
#SBATCH --job-name=keepgpu-wrap
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=1
#SBATCH --time=01:00:00
set -euo pipefail

PREP_CMD=${PREP_CMD:-python prepare_data.py}
TRAIN_CMD=${TRAIN_CMD:-python train.py}
export PREP_CMD TRAIN_CMD

# The ready file is node-local and per job; it must not exist yet.
ready=${TMPDIR:-/tmp}/keepgpu-${SLURM_JOB_ID:-$$}.ready
rm -f "$ready"

# Why exec: with ProctrackType=proctrack/cgroup (what clusters use), scancel,
# a preemption or the time limit sends SIGTERM only to the batch shell, and
# SIGKILL to everything else KillWait seconds later. exec makes keepgpu the
# batch shell, so keepgpu gets the TERM, passes it to the training (which can
# save a checkpoint) and releases the GPUs at once. Without exec the shell
# would die of the TERM and the training would only ever see SIGKILL. Job
# steps work the same way: `srun keepgpu wrap -- ...` puts keepgpu first in
# the step. The job's exit code is the training's (128+N if signal N killed
# it; 125-127 if keepgpu or the command could not start).
exec keepgpu wrap --ready-file "$ready" -- bash -euc '
	$PREP_CMD                     # CPU only; the GPUs are held meanwhile
	touch "$KEEPGPU_READY_FILE"   # ready: keepgpu hands the GPUs back now
	exec $TRAIN_CMD               # the training has the GPUs to itself
'
