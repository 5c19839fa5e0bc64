#!/usr/bin/env bash
# A throwaway Slurm cluster for keepgpu's tests, runnable by hand:
#
#   scripts/slurm-cluster.sh start DIR [--nodes N] [--proctrack cgroup|linuxproc]
#                        [--gpus N] [--task-prolog PATH] [--kill-wait SECONDS]
#   . DIR/env                          # exports SLURM_CONF for sbatch, squeue, ...
#   sbatch --gres=gpu:1 --wrap 'echo $CUDA_VISIBLE_DEVICES'
#   scripts/slurm-cluster.sh stop DIR
#   scripts/slurm-cluster.sh install   # only install the packages
#
# start installs Debian's slurmctld, slurmd, slurm-client and munge with
# apt-get if they are missing (without letting the packages start their own
# daemons), writes a config under DIR (absent or empty; a short path: Unix
# sockets live there), starts munged, slurmctld and slurmd, and waits until
# every node is idle (about a second). Each node has N GPUs (--gpus, default
# 2) whose GRES files are character devices in DIR/dev; Slurm sets
# CUDA_VISIBLE_DEVICES from them, and the fake driver libraries
# (internal/fakegpu) play the GPUs. No accounting database: exit codes are in
# `scontrol show job` (records kept an hour) and DIR/log/jobcomp.log.
# KillWait defaults to 10 s.
#
# One node (the default) runs on 127.0.0.1 with free ports. --nodes N (2-9)
# runs N slurmd, kgn1..kgnN, each in network, UTS and mount namespaces of its
# own (see start_nodes below): DIR/node is, on node kgnI, its own
# DIR/nodes/kgnI, the place for node-local state (the tests' fake GPUs, the
# jobs' TMPDIR); the rest of the file system stands for the shared one.
#
# stop cancels every job, stops the daemons by the PIDs start recorded, then
# ends whatever start's daemons left: a process whose environment names DIR
# (a slurmstepd, or a job's process that escaped). It never kills by name.
# Then it deletes the namespaces, links and cgroups start recorded, by name.
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
	local proctrack=cgroup gpus=2 taskprolog="" killwait=10 nodes=1
	while [ $# -gt 0 ]; do
		case $1 in
		--nodes) nodes=$2; shift 2 ;;
		--proctrack) proctrack=$2; shift 2 ;;
		--gpus) gpus=$2; shift 2 ;;
		--task-prolog) taskprolog=$2; shift 2 ;;
		--kill-wait) killwait=$2; shift 2 ;;
		*) usage ;;
		esac
	done
	case $proctrack in cgroup | linuxproc) ;; *) die "--proctrack: cgroup or linuxproc" ;; esac
	case $nodes in [1-9]) ;; *) die "--nodes: 1 to 9" ;; esac
	if [ "$proctrack" = cgroup ]; then
		cgroup_ok || die "proctrack/cgroup: no cgroup freezer (v1) or cgroup v2 here"
		# See start_nodes.
		[ "$nodes" = 1 ] || [ -d /sys/fs/cgroup/freezer ] ||
			die "proctrack/cgroup on several nodes needs a cgroup v1 freezer; use --proctrack linuxproc"
	fi
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
	: >"$dir/made"
	# A start that fails stops whatever it started.
	trap '[ $? = 0 ] || stop' EXIT

	# munge, with its own key and socket. One munged serves every node:
	# its socket is a file, reachable by path from any network namespace,
	# and a credential proves a uid, not a host.
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

	local nodeline hw ctlhost ctladdr ctlport dport nodelist nodelines=""
	local gres="" spool=$dir/spool pidfile=$dir/run/slurmd.pid logfile=$dir/log/slurmd.log tmpfs=$dir/tmp
	[ "$gpus" -gt 0 ] && gres=" Gres=gpu:$gpus"
	nodeline=$(slurmd -C | head -n 1)
	ctlhost=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' <<<"$nodeline")
	[ -n "$ctlhost" ] || die "slurmd -C printed no NodeName: $nodeline"
	ctlport=$(freeport)
	if [ "$nodes" = 1 ]; then
		ctladdr=127.0.0.1
		nodelist=$ctlhost
		nodelines="$nodeline NodeAddr=127.0.0.1$gres State=UNKNOWN"
		dport=$(freeport)
		while [ "$dport" = "$ctlport" ]; do dport=$(freeport); done
	else
		start_nodes "$nodes" "$proctrack" # sets net
		ctladdr=$net.1
		nodelist=kgn[1-$nodes]
		# Every node claims the machine's CPUs and memory: Slurm only counts.
		hw=${nodeline#NodeName=* }
		for ((i = 1; i <= nodes; i++)); do
			nodelines+="NodeName=kgn$i NodeAddr=$net.$((10 + i)) $hw$gres State=UNKNOWN"$'\n'
		done
		# Each slurmd listens in its own network namespace: one port for all.
		dport=$ctlport
		spool=$dir/spool/%n pidfile=$dir/run/slurmd-%n.pid logfile=$dir/log/slurmd-%n.log
		tmpfs=$dir/node/tmp
	fi

	cat >"$dir/etc/slurm.conf" <<EOC
# Written by scripts/slurm-cluster.sh: a $nodes-node test cluster.
ClusterName=keepgpu
SlurmctldHost=$ctlhost($ctladdr)
SlurmctldPort=$ctlport
SlurmdPort=$dport
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$sock
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$pidfile
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$logfile
SlurmdDebug=debug
PlugStackConfig=$dir/etc/plugstack.conf
TmpFS=$tmpfs
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
${nodelines%$'\n'}
PartitionName=debug Nodes=$nodelist Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOC
	: >"$dir/etc/plugstack.conf"
	if [ "$gpus" -gt 0 ]; then
		echo "NodeName=$nodelist Name=gpu File=$dir/dev/nvidia[0-$((gpus - 1))]" >"$dir/etc/gres.conf"
	else
		: >"$dir/etc/gres.conf"
	fi
	cat >"$dir/etc/cgroup.conf" <<EOC
CgroupPlugin=autodetect
ConstrainCores=no
ConstrainDevices=no
ConstrainRAMSpace=no
EOC
	cat >"$dir/env" <<EOC
export SLURM_CONF=$dir/etc/slurm.conf
EOC
	export SLURM_CONF=$dir/etc/slurm.conf

	local daemons=(slurmctld)
	spawn slurmctld slurmctld -D -f "$SLURM_CONF"
	if [ "$nodes" = 1 ]; then
		spawn slurmd slurmd -D -f "$SLURM_CONF" -N "$ctlhost"
		daemons+=(slurmd)
	else
		# nsenter joins the node's network namespace and unshare gives it
		# mount and UTS namespaces of its own (private: its mounts stay
		# there); node-init (below) sets it up, then execs slurmd, so the
		# recorded pid is slurmd's.
		for ((i = 1; i <= nodes; i++)); do
			spawn "slurmd-kgn$i" nsenter --net="/run/netns/$(ns_name "$i")" \
				unshare --mount --uts --propagation private \
				"$self" node-init "$dir" "kgn$i" \
				slurmd -D -f "$SLURM_CONF" -N "kgn$i"
			daemons+=("slurmd-kgn$i")
		done
	fi

	local idle=0 d down=""
	for i in $(seq 300); do
		idle=$(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | grep -c . || true)
		[ "$idle" = "$nodes" ] && break
		down=""
		for d in "${daemons[@]}"; do alive "$d" || down+=" $d"; done
		[ -z "$down" ] || break
		sleep 0.2
	done
	if [ "$idle" != "$nodes" ]; then
		log "$idle of $nodes nodes idle${down:+ (exited:$down)}; last log lines:"
		tail -n 15 "$dir/log/"*.log "$dir/log/"*.out >&2 2>/dev/null || true
		exit 1
	fi
	log "up: $dir ($nodes node(s) $nodelist, $gpus GPUs each, proctrack/$proctrack, ports $ctlport/$dport)"
}

# ns_name I is the name of node kgnI's network namespace.
ns_name() { echo "kgslurm-$(cat "$dir/tag")-kgn$1"; }

# start_nodes N PROCTRACK creates what N namespaced nodes need, recording each
# thing in DIR/made as it goes so that stop removes it even after a failed
# start: a bridge kgbrTAG with the controller's address NET.1 on the host
# side, and for node kgnI a network namespace whose eth0 (NET.(10+I)) is a
# veth into the bridge. No address goes anywhere else. Sets net.
#
# Which proctrack: cgroup where there is a cgroup v1 freezer. Debian's Slurm
# is built with MULTIPLE_SLURMD, so each slurmd keeps its jobs under a
# freezer cgroup named after its node (/slurm_kgnI/uid_U/job_J/step_S):
# several slurmd on one kernel never share a cgroup, even for the steps of
# one job that spans them, and scancel signals only each step's tasks, as on
# a real cluster. Those /slurm_kgnI cgroups are recorded for stop to remove.
# With cgroup v2 only, Slurm 22.05 needs systemd to place its cgroups, and
# one slurmd's scope per machine; use linuxproc there: it tracks a step's
# processes by parent pid, which works for any number of slurmd, but signals
# every process of a step, so a wrapped command hears TERM from Slurm and
# from keepgpu.
start_nodes() {
	local nodes=$1 proctrack=$2 tag i ns hv taken
	tag=$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
	echo "$tag" >"$dir/tag"
	# A /24 in 10.201.0.0/16 that no address here is in.
	taken=$(ip -4 -o addr show | awk '{ print $4 }')
	for i in $(seq 50); do
		net=10.201.$((RANDOM % 256))
		grep -q "^${net//./\\.}\." <<<"$taken" || break
	done
	echo "$net" >"$dir/net"
	echo "link kgbr$tag" >>"$dir/made"
	ip link add "kgbr$tag" type bridge
	ip addr add "$net.1/24" dev "kgbr$tag"
	ip link set "kgbr$tag" up
	printf '127.0.0.1\tlocalhost\n%s.1\t%s\n' "$net" "$(hostname)" >"$dir/etc/hosts"
	mkdir -p "$dir/node"
	for ((i = 1; i <= nodes; i++)); do
		ns=kgslurm-$tag-kgn$i
		hv=kgv${tag}n$i
		echo "netns $ns" >>"$dir/made"
		ip netns add "$ns"
		echo "link $hv" >>"$dir/made"
		ip link add "$hv" type veth peer name eth0 netns "$ns"
		ip link set "$hv" master "kgbr$tag" up
		ip -n "$ns" addr add "$net.$((10 + i))/24" dev eth0
		ip -n "$ns" link set eth0 up
		ip -n "$ns" link set lo up
		printf '%s.%s\tkgn%s\n' "$net" $((10 + i)) "$i" >>"$dir/etc/hosts"
		mkdir -p "$dir/nodes/kgn$i/tmp"
		chmod 1777 "$dir/nodes/kgn$i/tmp"
		if [ "$proctrack" = cgroup ] && [ ! -e "/sys/fs/cgroup/freezer/slurm_kgn$i" ]; then
			echo "cgroup /sys/fs/cgroup/freezer/slurm_kgn$i" >>"$dir/made"
		fi
	done
}

# node_init DIR NODE CMD... runs as the first process of a node's fresh
# mount and UTS namespaces (see start): it names the node, mounts its
# node-local directory on DIR/node and the cluster's hosts file on
# /etc/hosts, and execs CMD.
node_init() {
	local dir=$1 node=$2
	shift 2
	hostname "$node"
	mount --bind "$dir/nodes/$node" "$dir/node"
	mount --bind "$dir/etc/hosts" /etc/hosts
	exec "$@"
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
	for name in $(awk '$1 ~ /^slurmd/ { print $1 }' "$dir/pids") slurmctld munged; do
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
	mapfile -t left < <(leftovers)
	ends "${left[@]}"
	unmake
	log "stopped: $dir"
}

# unmake removes what start_nodes made, newest first, by the names it
# recorded: it ends the processes still in a cgroup or network namespace (by
# pid: thawing a frozen cgroup first, since a frozen process cannot die),
# removes the cgroups, then the namespaces and links.
unmake() {
	[ -s "$dir/made" ] || return 0
	local kind name pids
	while read -r kind name; do
		case $kind in
		cgroup)
			[ -d "$name" ] || continue
			find "$name" -name freezer.state -exec sh -c 'echo THAWED >"$1"' _ {} \; 2>/dev/null
			mapfile -t pids < <(find "$name" -name cgroup.procs -exec cat {} + 2>/dev/null)
			ends "${pids[@]}"
			find "$name" -depth -type d -exec rmdir {} + 2>/dev/null ||
				log "could not remove cgroup $name"
			;;
		netns)
			ip netns list | grep -q "^$name\b" || continue
			mapfile -t pids < <(ip netns pids "$name" 2>/dev/null)
			ends "${pids[@]}"
			ip netns delete "$name" || log "could not delete network namespace $name"
			;;
		link)
			# A veth goes with its namespace; the bridge must go by name.
			if ip link show "$name" >/dev/null 2>&1; then
				ip link delete "$name" || log "could not delete link $name"
			fi
			;;
		esac
	done < <(tac "$dir/made")
	: >"$dir/made"
}

# ends PID... sends TERM, then KILL a second later to whichever is left.
ends() {
	[ $# -gt 0 ] || return 0
	log "ending leftovers:" "$@"
	kill -TERM "$@" 2>/dev/null || true
	local i p left
	for i in $(seq 10); do
		left=()
		for p in "$@"; do kill -0 "$p" 2>/dev/null && left+=("$p"); done
		[ ${#left[@]} -gt 0 ] || return 0
		sleep 0.1
	done
	kill -KILL "${left[@]}" 2>/dev/null || true
	sleep 0.1
}

self=$(readlink -f "$0")
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
node-init) node_init "$@" ;; # used by start
*) usage ;;
esac
