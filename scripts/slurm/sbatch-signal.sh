#!/bin/bash
# Warned before the time limit: --signal=B:USR1@300 makes Slurm send SIGUSR1
# to the batch shell about 300 s before the end (up to a minute earlier: Slurm
# checks once every 30-60 s). The job script traps it and passes it on to
# keepgpu, which forwards it to the training, which saves a checkpoint.
#
#   sbatch sbatch-signal.sh
#
# Without "B:" Slurm signals the tasks of job steps (srun) instead, and a
# batch script without steps receives nothing. TRAIN_CMD (a command and its
# arguments, split on spaces) must handle SIGUSR1 itself (save, then exit or
# carry on); Python's default for SIGUSR1 is to die.
#
#SBATCH --job-name=keepgpu-signal
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=1
#SBATCH --time=01:00:00
#SBATCH --signal=B:USR1@300
set -uo pipefail

TRAIN_CMD=${TRAIN_CMD:-python train.py --checkpoint-on-sigusr1}

ready=${TMPDIR:-/tmp}/keepgpu-${SLURM_JOB_ID:-$$}.ready
rm -f "$ready"

# keepgpu in the background, so that this shell can trap signals. (Simpler
# when the script needs no trap of its own: `exec keepgpu wrap ...`, and
# keepgpu, being the batch shell, gets USR1 and TERM directly.)
keepgpu wrap --ready-file "$ready" -- $TRAIN_CMD &
kg=$!
# USR1: the time-limit warning. TERM: scancel, preemption, or the time limit
# itself; under proctrack/cgroup only this shell gets it, so pass it on too.
trap 'echo "sbatch-signal: SIGUSR1, the time limit is near; passing it on" >&2; kill -USR1 $kg' USR1
trap 'echo "sbatch-signal: SIGTERM; passing it on" >&2; kill -TERM $kg' TERM

# A trapped signal ends `wait` early: wait again until keepgpu has exited.
while kill -0 "$kg" 2>/dev/null; do
	wait "$kg"
done
wait "$kg" # keepgpu's exit status (bash keeps it), i.e. the training's
status=$?
# To go on in a new job after saving a checkpoint (the training exits 0 here
# once it saved, say), requeue this one:
#   [ -e "$SLURM_SUBMIT_DIR/checkpoint.pt" ] && scontrol requeue "$SLURM_JOB_ID"
exit "$status"
