#!/bin/bash
# sigwait.sh LOG: the tests' stand-in for a training that handles signals.
# It logs "start PID PPID GPUS NODE" to LOG, then one line per SIGTERM or
# SIGUSR1 ("TERM <time> NODE", "USR1 <time> NODE"), and exits: 143 half a
# second after a TERM (a checkpoint takes a moment), 0 after a USR1
# (checkpoint saved), or $SIGWAIT_EXIT (default 0) once LOG.go or, for one
# node of many, LOG.go.NODE exists. NODE is the Slurm node's name.
log=$1
node=${SLURMD_NODENAME:-?}
term=0 usr1=0
trap 'echo "TERM $(date +%s.%N) $node" >>"$log"; term=1' TERM
trap 'echo "USR1 $(date +%s.%N) $node" >>"$log"; usr1=1' USR1
echo "start $$ $PPID ${SLURM_STEP_GPUS:-${SLURM_JOB_GPUS:--}} $node" >>"$log"
while :; do
	[ "$usr1" = 1 ] && exit 0
	if [ "$term" = 1 ]; then
		sleep 0.5
		exit 143
	fi
	[ -e "$log.go" ] || [ -e "$log.go.$node" ] && exit "${SIGWAIT_EXIT:-0}"
	sleep 0.1
done
