#!/usr/bin/env bash
# A throwaway one-node Slurm cluster for keepgpu's tests, runnable by hand:
#
#   scripts/slurm-cluster.sh start DIR [--proctrack cgroup|linuxproc] [--gpus N]
#                                      [--task-prolog PATH] [--kill-wait SECONDS]
#   . DIR/env                          # exports SLURM_CONF for sbatch, squeue, ...
#   sbatch --gres=gpu:1 --wrap 'echo $CUDA_VISIBLE_DEVICES'
#   scripts/slurm-cluster.sh stop DIR
#   scripts/slurm-cluster.sh install   # only install the packages
#
# start installs Debian's slurmctld, slurmd, slurm-client and munge with
# apt-get if they are missing (without letting the packages start their own
# daemons), writes a config under DIR (absent or empty; a short path: Unix
# sockets live there), starts munged, slurmctld and slurmd on 127.0.0.1 with
# free ports, and waits until the node is idle (about a second). The node has
# N GPUs (default 2) whose GRES files are character devices in DIR/dev; Slurm
# sets CUDA_VISIBLE_DEVICES from them, and the fake driver libraries
# (internal/fakegpu) play the GPUs. No accounting database: exit codes are in
# `scontrol show job` (records kept an hour) and DIR/log/jobcomp.log.
# KillWait defaults to 10 s.
#
# stop cancels every job, stops the daemons by the PIDs start recorded, then
# ends whatever start's daemons left: a process whose environment names DIR
# (a slurmstepd, or a job's process that escaped). It never kills by name.
# Needs root. Run one cluster at a time: slurmd names its cgroups after the
# node, not after DIR.
set -euo pipefail

usage() {
	sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

log() { echo "slurm-cluster: $*" >&2; }
die() {
	log "$*"
	exit 1
}

# install puts the Slurm and munge packages in place if a command is missing,
# without letting the packages start their system-wide daemons.
install_slurm() {
	local missing=0 c
	for c in munged slurmctld slurmd sbatch; do
		command -v "$c" >/dev/null || missing=1
	done
	[ "$missing" = 0 ] && return 0
	[ "$(id -u)" = 0 ] || die "Slurm is not installed and installing it needs root"
	log "installing slurmctld slurmd slurm-client munge"
	local policy=/usr/sbin/policy-rc.d ours=0
	if [ ! -e "$policy" ]; then
		# Keep the packages from starting the system's munged and Slurm.
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		ours=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	local rc=0 out
	out=$(mktemp)
	{ apt-get update -qq && apt-get install -y -qq --no-install-recommends \
		slurmctld slurmd slurm-client munge; } >"$out" 2>&1 || rc=$?
	[ "$ours" = 1 ] && rm -f "$policy"
	if [ "$rc" != 0 ]; then
		cat "$out" >&2
		rm -f "$out"
		die "apt-get failed ($rc)"
	fi
	rm -f "$out"
	log "installed: $(slurmd -V)"
}

# freeport prints a TCP port nobody listens on at 127.0.0.1.
freeport() {
	local p _
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	die "no free port"
}

# spawn NAME CMD... starts a daemon in its own session, in the foreground
# mode of its own, and records its pid in DIR/pids.
spawn() {
	local name=$1
	shift
	KGTEST_CLUSTER="$dir" setsid "$@" </dev/null >>"$dir/log/$name.out" 2>&1 &
	echo "$name $!" >>"$dir/pids"
}

cgroup_ok() {
	# proctrack/cgroup needs cgroup v1 with a freezer, or cgroup v2.
	[ -d /sys/fs/cgroup/freezer ] || [ -e /sys/fs/cgroup/cgroup.controllers ]
}

start() {
	local proctrack=cgroup gpus=2 taskprolog="" killwait=10
	while [ $# -gt 0 ]; do
		case $1 in
		--proctrack) proctrack=$2; shift 2 ;;
		--gpus) gpus=$2; shift 2 ;;
		--task-prolog) taskprolog=$2; shift 2 ;;
		--kill-wait) killwait=$2; shift 2 ;;
		*) usage ;;
		esac
	done
	case $proctrack in cgroup | linuxproc) ;; *) die "--proctrack: cgroup or linuxproc" ;; esac
	[ "$proctrack" = cgroup ] && ! cgroup_ok && die "proctrack/cgroup: no cgroup freezer (v1) or cgroup v2 here"
	[ "$(id -u)" = 0 ] || die "needs root (SlurmUser=root)"
	install_slurm
	if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
		die "$dir is not empty"
	fi
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	[ ${#dir} -le 60 ] || die "$dir: keep the path under 60 characters (Unix socket paths)"
	mkdir -p "$dir"/{etc,log,state,spool,run,dev,tmp}
	# munged refuses group- or world-writable directories; its socket
	# directory must be 0755 for the clients.
	mkdir -m 0700 "$dir/munge"
	mkdir -m 0755 "$dir/munge/run"
	chmod 0755 "$dir" "$dir/etc" "$dir/run" "$dir/dev"
	: >"$dir/pids"

	# munge, with its own key and socket.
	dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
	chmod 0400 "$dir/munge/munge.key"
	local sock=$dir/munge/run/munge.socket
	spawn munged munged --foreground --force --socket="$sock" \
		--key-file="$dir/munge/munge.key" --log-file="$dir/log/munged.log" \
		--pid-file="$dir/munge/run/munged.pid" --seed-file="$dir/munge/munged.seed"
	local i
	for i in $(seq 100); do
		[ -S "$sock" ] && break
		sleep 0.1
	done
	[ -S "$sock" ] || die "munged did not start; see $dir/log/munged.*"

	# The GPUs: character devices (Slurm refuses plain files), one per GPU.
	local dev
	for ((i = 0; i < gpus; i++)); do
		dev=$dir/dev/nvidia$i
		mknod -m 0666 "$dev" c 195 "$i" 2>/dev/null || ln -s /dev/null "$dev"
	done

	local node nodeline ctlport dport
	nodeline=$(slurmd -C | head -n 1)
	node=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' <<<"$nodeline")
	[ -n "$node" ] || die "slurmd -C printed no NodeName: $nodeline"
	ctlport=$(freeport)
	dport=$(freeport)
	while [ "$dport" = "$ctlport" ]; do dport=$(freeport); done
	local gres=""
	[ "$gpus" -gt 0 ] && gres=" Gres=gpu:$gpus"

	cat >"$dir/etc/slurm.conf" <<EOF
# Written by scripts/slurm-cluster.sh: a one-node test cluster on loopback.
ClusterName=keepgpu
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctlport
SlurmdPort=$dport
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$sock
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmdDebug=debug
PlugStackConfig=$dir/etc/plugstack.conf
TmpFS=$dir/tmp
ProctrackType=proctrack/$proctrack
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.log
MinJobAge=3600
KillWait=$killwait
InactiveLimit=0
ReturnToService=2
MailProg=/bin/true
GresTypes=gpu
${taskprolog:+TaskProlog=$taskprolog}
$nodeline NodeAddr=127.0.0.1$gres State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
	: >"$dir/etc/plugstack.conf"
	if [ "$gpus" -gt 0 ]; then
		echo "NodeName=$node Name=gpu File=$dir/dev/nvidia[0-$((gpus - 1))]" >"$dir/etc/gres.conf"
	else
		: >"$dir/etc/gres.conf"
	fi
	cat >"$dir/etc/cgroup.conf" <<EOF
CgroupPlugin=autodetect
ConstrainCores=no
ConstrainDevices=no
ConstrainRAMSpace=no
EOF
	cat >"$dir/env" <<EOF
export SLURM_CONF=$dir/etc/slurm.conf
EOF
	export SLURM_CONF=$dir/etc/slurm.conf

	spawn slurmctld slurmctld -D -f "$SLURM_CONF"
	spawn slurmd slurmd -D -f "$SLURM_CONF" -N "$node"

	local state=""
	for i in $(seq 300); do
		state=$(sinfo -h -N -n "$node" -o %T 2>/dev/null || true)
		[ "$state" = idle ] && break
		if ! alive slurmctld || ! alive slurmd; then
			break
		fi
		sleep 0.2
	done
	if [ "$state" != idle ]; then
		log "the node did not become idle (state '${state:-?}'); last log lines:"
		tail -n 15 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" "$dir/log/"*.out >&2 2>/dev/null || true
		stop
		exit 1
	fi
	log "up: $dir (node $node, $gpus GPUs, proctrack/$proctrack, ports $ctlport/$dport)"
}

# pidof_ NAME prints the recorded pid of daemon NAME.
pidof_() { awk -v n="$1" '$1 == n { print $2 }' "$dir/pids" 2>/dev/null | tail -n 1; }

alive() {
	local pid
	pid=$(pidof_ "$1")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# leftovers prints the pids of processes whose environment names this
# cluster: the daemons (KGTEST_CLUSTER, set by spawn), slurmstepds and job
# processes (SLURM_CONF pointing into DIR, plus a SLURM_JOB_ID or the name
# slurmstepd). A shell where someone sourced DIR/env is not listed, nor are
# the caller and its ancestors.
leftovers() {
	local skip=" " p=$$ e pid comm
	while [ "$p" -gt 1 ]; do
		skip+="$p "
		p=$(awk '{ print $4 }' "/proc/$p/stat" 2>/dev/null || echo 1)
	done
	for e in /proc/[0-9]*/environ; do
		pid=${e#/proc/}
		pid=${pid%/environ}
		[[ $skip == *" $pid "* ]] && continue
		comm=$(cat "/proc/$pid/comm" 2>/dev/null) || continue
		if { tr '\0' '\n' <"$e"; } 2>/dev/null | awk -v d="$dir" -v comm="$comm" '
			$0 == "KGTEST_CLUSTER=" d { hit = 1 }
			index($0, "SLURM_CONF=" d "/") == 1 { conf = 1 }
			/^SLURM_JOB_ID=/ { job = 1 }
			END { exit !(hit || (conf && (job || comm == "slurmstepd"))) }'; then
			echo "$pid"
		fi
	done
}

stop() {
	[ -f "$dir/pids" ] || die "$dir: no cluster here (no pids file)"
	export SLURM_CONF=$dir/etc/slurm.conf
	local i pid name
	if alive slurmctld; then
		# shellcheck disable=SC2046 # one argument per job
		scancel --quiet --full $(squeue -h -o %A 2>/dev/null) 2>/dev/null || true
		for i in $(seq 100); do # KillWait and then some
			[ -z "$(squeue -h -o %A 2>/dev/null)" ] && break
			sleep 0.2
		done
	fi
	# The daemons, all at once: nothing is left for them to say to each other.
	local pids=()
	for name in slurmd slurmctld munged; do
		pid=$(pidof_ "$name")
		[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
	done
	for pid in "${pids[@]}"; do
		for i in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	done
	local left
	left=$(leftovers)
	if [ -n "$left" ]; then
		log "ending leftovers:" $left
		kill -TERM $left 2>/dev/null || true
		sleep 1
		left=$(leftovers)
		[ -n "$left" ] && kill -KILL $left 2>/dev/null || true
	fi
	log "stopped: $dir"
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
start)
	[ $# -ge 1 ] || usage
	dir=$1
	shift
	start "$@"
	;;
stop)
	[ $# -eq 1 ] || usage
	dir=$(cd "$1" && pwd)
	stop
	;;
install) install_slurm ;;
*) usage ;;
esac
