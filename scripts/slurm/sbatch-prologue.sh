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
# memory back anyway). The training step started by srun does get TERM.
#
#SBATCH --job-name=keepgpu-prologue
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=1
#SBATCH --time=01:00:00
set -euo pipefail

PREP_CMD=${PREP_CMD:-python prepare_data.py}
TRAIN_CMD=${TRAIN_CMD:-python train.py}

marker=${TMPDIR:-/tmp}/keepgpu-${SLURM_JOB_ID:-$$}.ready
rm -f "$marker"   # --until-file refuses a marker that already exists

# 1. Hold every GPU of the job (what CUDA_VISIBLE_DEVICES shows) in the background.
keepgpu hold --until-file "$marker" &
hold=$!
# If the CPU phase fails, release too, and wait: once the batch shell exits,
# Slurm kills whatever is left of the job.
trap '{ kill "$hold" 2>/dev/null && wait "$hold"; } || true; rm -f "$marker"' EXIT

# 2. The CPU phase.
$PREP_CMD

# 3. Hand over: the hold releases within milliseconds of the marker appearing;
#    wait returns once its process is gone, i.e. the GPU memory is free. A
#    hold that could not start (no GPU, no driver) must not stop the job.
touch "$marker"
wait "$hold" || echo "keepgpu hold exited with status $?; going on" >&2

# 4. The training, as a job step on the now free GPUs.
srun $TRAIN_CMD
