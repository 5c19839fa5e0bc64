#!/bin/sh
# A site admin's TaskProlog (slurm.conf: TaskProlog=/etc/slurm/taskprolog.sh):
# site-wide defaults for keepgpu in every job and job step. slurmd runs it
# before each task (the batch script, each srun task) as the job's user, with
# the task's environment; every "export NAME=VALUE" line it prints is set in
# the task. Users keep the last word: a value already in the task's
# environment (exported in the script, or passed by sbatch) is left alone,
# and keepgpu's flags win over its KEEPGPU_* variables.

# default NAME VALUE prints "export NAME=VALUE" unless the task has NAME set
# or VALUE is empty.
default() {
	eval "current=\${$1-}"
	if [ -z "$current" ] && [ -n "$2" ]; then
		echo "export $1=$2"
	fi
}

# Hold for at most this long without being ready: a forgotten ready signal
# should not keep GPUs busy for a whole 48-hour allocation.
default KEEPGPU_MAX_HOLD 2h
# More site defaults, for example (see `keepgpu hold --help`):
# default KEEPGPU_VRAM 2GiB          # VRAM held per GPU (keepgpu's default: 1GiB)
# default KEEPGPU_UTIL 20            # the keep-alive kernel's duty (default: 30)
