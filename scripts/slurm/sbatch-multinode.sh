#!/bin/bash
# Many nodes: one keepgpu per node holds that node's GPUs, and one marker
# file on the shared file system releases every node at once.
#
#   sbatch --nodes=4 sbatch-multinode.sh
#
# TRAIN_CMD (a command and its arguments, split on spaces) runs once per node,
# e.g. a torchrun launcher. It prepares the data and, once every node is
# ready (say rank 0 after a barrier), touches "$KEEPGPU_READY_FILE"; the
# keepgpu on every node sees the file and hands its GPUs back. The marker must
# not exist when keepgpu starts, so it is named after the job and removed
# first. keepgpu polls for it every 200 ms (--poll) besides inotify, because
# NFS and Lustre send no file events for changes made on other nodes.
#
#SBATCH --job-name=keepgpu-multinode
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=1
#SBATCH --time=01:00:00
set -euo pipefail

TRAIN_CMD=${TRAIN_CMD:-torchrun --nnodes=$SLURM_NNODES --nproc-per-node=gpu --rdzv-backend=c10d --rdzv-endpoint=$(hostname):29500 train.py}

# On the shared file system, so that every node sees the same file.
SHARED_DIR=${SHARED_DIR:-${SLURM_SUBMIT_DIR:-$PWD}}
marker=$SHARED_DIR/.keepgpu-${SLURM_JOB_ID:-$$}.ready
rm -f "$marker"
trap 'rm -f "$marker"' EXIT

# srun, not a background loop over ssh: each keepgpu is the first process of
# its node's task, so a scancel's SIGTERM reaches it (and, through it, the
# training) under proctrack/cgroup, and srun's exit code is the highest of
# the tasks'. --kill-on-bad-exit: when one node's command fails, srun stops
# the step, so every other node's keepgpu gets SIGTERM, passes it on and
# hands its GPUs back, instead of holding them until the training there
# notices the lost peer (Slurm's default, KillOnBadExit=0, waits for that).
# The job's exit code is then the highest of all: 143 from the nodes that
# were stopped, if their command exits 128+15 on TERM; srun's output names
# the node that failed first.
srun --ntasks-per-node=1 --kill-on-bad-exit=1 keepgpu wrap --ready-file "$marker" -- $TRAIN_CMD
