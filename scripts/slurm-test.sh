#!/usr/bin/env bash
# keepgpu under a real Slurm: builds keepgpu and the fake GPU driver
# libraries into a private temporary directory, starts a one-node cluster
# (scripts/slurm-cluster.sh: Debian's slurmctld and slurmd, installed with
# apt-get if missing) first with proctrack/cgroup, then with
# proctrack/linuxproc, then a three-node cluster (network namespaces, one
# fake node of GPUs each; proctrack/cgroup on cgroup v1, else linuxproc),
# runs the tests below against each, and tears everything down by PID and
# namespace at the end, pass or fail. Prints one line per test and a
# summary; exits non-zero if any test failed. Needs root, Go and gcc; no GPU.
#
#   scripts/slurm-test.sh [--quick] [--proctrack cgroup|linuxproc|both]
#                         [--nodes 1|3|both] [--keep] [TEST...]
#
# --quick skips the slow tests (the --signal=B:USR1 ones, up to a minute).
# --proctrack runs only that proctrack plugin (on three nodes too);
# --nodes 1 or 3 runs only the one-node or only the three-node clusters.
# --keep leaves the temporary directory (logs, job output) in place.
# TEST... runs only the tests named (see `tests_cgroup` and `tests_multinode`
# below), in every pass that has them.
#
# The fake node has two GPUs with random UUIDs. Slurm hands out their GRES
# device files, so a job's CUDA_VISIBLE_DEVICES is its GPU index ("0" or
# "1"), which the fake libcuda shows as ordinal 0, exactly like a real node.
# FAKEGPU_DIR and LD_LIBRARY_PATH reach the jobs through sbatch's default
# --export=ALL. On three nodes each node has one fake GPU of its own, in its
# DIR/nodes/kgnI: FAKEGPU_DIR (and TMPDIR) name DIR/node, which is that
# directory on each node (its own mount), so the submitter's value is right
# everywhere; the tests read each node's state directly.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

quick=0 keep=0 plugins=both sizes=both only=()
while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1 ;;
	--keep) keep=1 ;;
	--proctrack)
		plugins=$2
		shift
		;;
	--proctrack=*) plugins=${1#*=} ;;
	--nodes)
		sizes=$2
		shift
		;;
	--nodes=*) sizes=${1#*=} ;;
	-h | --help)
		sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	-*)
		echo "slurm-test: unknown option $1" >&2
		exit 2
		;;
	*) only+=("$1") ;;
	esac
	shift
done
case $plugins in cgroup | linuxproc | both) ;; *)
	echo "slurm-test: --proctrack cgroup, linuxproc or both" >&2
	exit 2
	;;
esac
case $sizes in 1 | 3 | both) ;; *)
	echo "slurm-test: --nodes 1, 3 or both" >&2
	exit 2
	;;
esac
if [ "$(id -u)" != 0 ]; then
	echo "slurm-test: needs root (the test cluster runs as SlurmUser=root)" >&2
	exit 2
fi

begin=$(date +%s)
# Everything lives in W, a short path: Unix socket paths are short.
W=$(mktemp -d /tmp/kgslurm.XXXXXX)
chmod 755 "$W"
mkdir -p "$W/tmp" "$W/bin" "$W/lib" "$W/log" "$W/out"
# The jobs inherit a private TMPDIR (their ready files and keepgpu's sockets
# go there). keepgpu builds without cgo.
export TMPDIR=$W/tmp
export CGO_ENABLED=0
export PATH=$PATH:/usr/local/go/bin

cluster="" # the running cluster's directory, for the EXIT trap
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$cluster" ]; then
		"$repo/scripts/slurm-cluster.sh" stop "$cluster" 2>>"$W/log/cluster.log" || true
	fi
	if [ "$keep" = 1 ]; then
		echo "slurm-test: kept $W" >&2
	else
		rm -rf "$W"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { echo "slurm-test: $*" >&2; }

T=$repo/scripts/slurm/testdata
S=$repo/scripts/slurm
KILLWAIT=10

# ---------------------------------------------------------------- build

say "building keepgpu and the fake GPU libraries"
if ! { go build -o "$W/bin/keepgpu" . &&
	go build -o "$W/bin/fakegpu" ./internal/fakegpu/cmd/fakegpu &&
	"$W/bin/fakegpu" build "$W/lib"; } >"$W/log/build.log" 2>&1; then
	cat "$W/log/build.log" >&2
	say "build failed"
	exit 1
fi
"$repo/scripts/slurm-cluster.sh" install || exit 1

export PATH=$W/bin:$PATH
export FAKEGPU_DIR=$W/node
export LD_LIBRARY_PATH=$W/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# Nothing from the caller's own job or keepgpu settings leaks into the jobs.
for v in $(compgen -e); do
	case $v in KEEPGPU_* | SLURM_* | SBATCH_* | SRUN_* | SALLOC_*) unset "$v" ;; esac
done
unset CUDA_VISIBLE_DEVICES GPU_DEVICE_ORDINAL XDG_RUNTIME_DIR
NGPUS=2
fakegpu init "$FAKEGPU_DIR" "$NGPUS" >/dev/null
# STATES: the fake nodes' state directories as the tests see them, one per
# Slurm node; STATE: the one procs reads. NODES: the cluster's size.
STATES=("$FAKEGPU_DIR")
STATE=$FAKEGPU_DIR
NODES=1
newuuid() {
	local h
	h=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
	echo "GPU-${h:0:8}-${h:8:4}-${h:12:4}-${h:16:4}-${h:20:12}"
}
UUID=()
for ((g = 0; g < NGPUS; g++)); do
	UUID[g]=$(newuuid)
	fakegpu set "$FAKEGPU_DIR" "$g" uuid "${UUID[g]}"
done

# ---------------------------------------------------------------- helpers
# Tests run in a subshell with set -e; fail ends the test with a reason.

fail() {
	echo "FAIL: $*" >&2
	exit 1
}
note() { echo "$*" >>"$W/log/notes"; }

# submit [SBATCH ARGS...]: submits with the test's output directory as the
# working directory and job output; prints the job id.
submit() {
	TMPDIR=${JOB_TMPDIR:-$TMPDIR} sbatch --parsable --chdir="$out" --output="$out/%j.out" "$@" | cut -d';' -f1
}

# field JOB NAME: a field of `scontrol show job` (JobState, ExitCode, ...).
field() { scontrol -o show job "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }

# finished JOB [SECONDS]: waits until JOB has ended (not pending, running or
# completing) and prints its state.
finished() {
	local job=$1 limit=${2:-60} i state
	for ((i = 0; i < limit * 10; i++)); do
		state=$(field "$job" JobState)
		case $state in
		PENDING | RUNNING | SUSPENDED | COMPLETING | CONFIGURING | REQUEUED | RESIZING | "") ;;
		*)
			# COMPLETING shows as a flag on some states; wait it out too.
			if ! squeue -h -j "$job" -o %T 2>/dev/null | grep -q .; then
				echo "$state"
				return 0
			fi
			;;
		esac
		sleep 0.1
	done
	fail "job $job still $state after ${limit}s"
}

# expect_done JOB STATE EXITCODE [SECONDS]
expect_done() {
	local state code
	state=$(finished "$1" "${4:-60}")
	code=$(field "$1" ExitCode)
	# shellcheck disable=SC2053 # EXITCODE may be a pattern
	[ "$state" = "$2" ] && [[ $code == $3 ]] ||
		fail "job $1: JobState=$state ExitCode=$code; want $2 and $3$(show_out "$1")"
}

show_out() { printf '\n--- job %s output:\n%s' "$1" "$(cat "$out/$1.out" 2>/dev/null)"; }

# until_true SECONDS WHAT CMD...: polls CMD every 0.1 s.
until_true() {
	local limit=$1 what=$2 i
	shift 2
	for ((i = 0; i < limit * 10; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	fail "gave up after ${limit}s waiting for $what"
}

procs() { fakegpu procs "$STATE" "$1"; }
# holders GPU: live processes that hold memory on fake GPU.
holders() { procs "$1" | awk '$5 == "true" && $3 > 0 { print $1 }'; }
is_free() { [ -z "$(procs "$1")" ]; }
# held GPU...: every GPU given has a live holder.
held() {
	local g
	for g in "$@"; do
		[ -n "$(holders "$g")" ] || return 1
	done
}
has_line() { grep -q -- "$2" "$1" 2>/dev/null; }
count() {
	local n
	n=$(grep -c -- "$2" "$1" 2>/dev/null) || true
	echo "${n:-0}"
}

# all_free: no process record on any fake GPU of any node, and no job left.
all_free() {
	local g STATE
	for STATE in "${STATES[@]}"; do
		for ((g = 0; g < NGPUS; g++)); do
			is_free "$g" || return 1
		done
	done
	[ -z "$(squeue -h -o %A)" ]
}

# holding_line GPU...: the startup line keepgpu wrap prints for a job whose
# GPUs are the fake GPUs given (in that order, as ordinals 0, 1, ...).
holding_line() {
	local n=$# i=0 g parts=""
	for g in "$@"; do
		[ -n "$parts" ] && parts+=", "
		parts+="gpu $i (${UUID[g]}, Fake GPU $g) 1.0 GiB"
		i=$((i + 1))
	done
	local noun=GPUs
	[ "$n" = 1 ] && noun=GPU
	echo "holding $n $noun: $parts;"
}

ppid_of() { awk '{ print $4 }' "/proc/$1/stat" 2>/dev/null; }
# gone PID: the process has exited. A zombie counts as gone: orphans go to
# PID 1, which in some containers and VMs reaps them late.
gone() { ! awk '$3 != "Z" { found = 1 } END { exit !found }' "/proc/$1/stat" 2>/dev/null; }

# clear_dead removes the fake nodes' records of processes that are gone.
clear_dead() {
	local g p STATE
	for STATE in "${STATES[@]}"; do
		for ((g = 0; g < NGPUS; g++)); do
			for p in $(procs "$g" | awk '{ print $1 }'); do
				if gone "$p"; then
					fakegpu rm-proc "$STATE" "$g" "$p"
				fi
			done
		done
	done
}

# ---------------------------------------------------------------- tests

# The canonical example: data prep under a held GPU, then training on a free
# one, released by the ready file; the startup line names the job's GPU.
t_example_wrap() {
	local job g
	job=$(KG_LOG=$out/steps.log PREP_CMD=$T/prep.sh TRAIN_CMD=$T/train.sh \
		submit "$S/sbatch-wrap.sh")
	expect_done "$job" COMPLETED 0:0
	g=$(sed -n 's/^prep: gpu \([0-9]*\) held.*/\1/p' "$out/steps.log")
	[ -n "$g" ] || fail "the data prep did not see its GPU held: $(cat "$out/steps.log")$(show_out "$job")"
	has_line "$out/steps.log" "train: gpu $g free" || fail "training did not find gpu $g free: $(cat "$out/steps.log")"
	has_line "$out/$job.out" "keepgpu: $(holding_line "$g")" || fail "no startup line for gpu $g$(show_out "$job")"
	has_line "$out/$job.out" "keepgpu: released the GPUs after .*(ready file " ||
		fail "not released by the ready file$(show_out "$job")"
	until_true 5 "the fake GPUs to be free" all_free
}

# The prologue pattern: keepgpu hold --until-file in the background, the CPU
# phase, the marker, wait, then the training as an srun step on free GPUs.
t_example_prologue() {
	local job g
	job=$(KG_LOG=$out/steps.log PREP_CMD=$T/prep.sh TRAIN_CMD=$T/train.sh \
		submit "$S/sbatch-prologue.sh")
	expect_done "$job" COMPLETED 0:0
	g=$(sed -n 's/^prep: gpu \([0-9]*\) held.*/\1/p' "$out/steps.log")
	[ -n "$g" ] || fail "the CPU phase did not see its GPU held: $(cat "$out/steps.log")$(show_out "$job")"
	has_line "$out/steps.log" "train: gpu $g free" || fail "the training step did not find gpu $g free: $(cat "$out/steps.log")"
	has_line "$out/steps.log" "train: step 0 " || fail "the training was not job step 0: $(cat "$out/steps.log")"
	has_line "$out/$job.out" "$(holding_line "$g")" || fail "no startup line for gpu $g$(show_out "$job")"
	has_line "$out/$job.out" "released 1 GPU after .*(--until-file)" ||
		fail "the hold was not released by its marker$(show_out "$job")"
	until_true 5 "the fake GPUs to be free" all_free
	# The training's failure is the job's; a failing CPU phase ends the job
	# with its status, and the hold is released, not killed.
	local bad worse
	bad=$(KG_LOG=$out/bad.log PREP_CMD=$T/prep.sh TRAIN_CMD=$T/train.sh TRAIN_EXIT=3 \
		submit "$S/sbatch-prologue.sh")
	worse=$(KG_LOG=$out/worse.log PREP_CMD=$T/prep.sh PREP_EXIT=4 TRAIN_CMD=$T/train.sh \
		submit "$S/sbatch-prologue.sh")
	expect_done "$bad" FAILED 3:0
	expect_done "$worse" FAILED 4:0
	has_line "$out/worse.log" "^prep: gpu [0-9]* held" || fail "the failing CPU phase saw no hold"
	! has_line "$out/worse.log" "^train:" || fail "the training ran after a failed CPU phase"
	has_line "$out/$worse.out" "released 1 GPU after .*(--until-file)" ||
		fail "the hold was not released after the CPU phase failed$(show_out "$worse")"
	until_true 5 "the fake GPUs to be free (no holder killed)" all_free
}

# The multi-node example: srun starts one keepgpu per node, every node's GPU
# is held (each keepgpu names its own node's GPU), node 0 touches the shared
# marker once every node is ready, every node releases, and each node's
# training starts only after its own holder has exited. The keepgpus poll
# for the marker alone (--poll-only), as on NFS, where a file made on one
# node sends no event to the others. On one node, the same with NODES=1.
t_example_multinode() {
	local job id marker nodes lat
	job=$(KG_LOG=$out/steps.log TRAIN_CMD=$T/multinode-train.sh SHARED_DIR=$out KEEPGPU_POLL_ONLY=true \
		submit --nodes="$NODES" "$S/sbatch-multinode.sh")
	expect_done "$job" COMPLETED 0:0 120
	[ "$(count "$out/steps.log" "^prep: gpu [0-9]* held")" = "$NODES" ] ||
		fail "not every node saw its GPU held: $(cat "$out/steps.log")$(show_out "$job")"
	for ((id = 0; id < NODES; id++)); do
		has_line "$out/steps.log" "^train: step 0 node $id$" ||
			fail "no training on node $id in step 0: $(cat "$out/steps.log")$(show_out "$job")"
	done
	[ "$(count "$out/$job.out" "keepgpu: released the GPUs after .*(ready file $out/.keepgpu-$job.ready")" = "$NODES" ] ||
		fail "not every node was released by the shared marker$(show_out "$job")"
	if [ "$NODES" -gt 1 ]; then
		for id in "${!NODE_UUID[@]}"; do
			has_line "$out/$job.out" "keepgpu: holding 1 GPU: gpu 0 (${NODE_UUID[id]}, Fake GPU 0)" ||
				fail "no keepgpu named kgn$((id + 1))'s GPU$(show_out "$job")"
		done
	fi
	[ -z "$(find "$out" -name ".keepgpu-$job.ready*")" ] || fail "the marker was left behind"
	until_true 5 "the fake GPUs to be free" all_free
	# When each node saw its GPU free, after the marker.
	marker=$(awk '/^marker / { print $2 }' "$out/steps.log")
	nodes=$(sed -n 's/^prep: .* on \([^ ]*\)$/\1/p' "$out/steps.log" | sort | paste -sd,)
	lat=$(awk -v m="$marker" '/^free / { printf "%s%s %.0fms", sep, $3, ($4 - m) * 1000; sep = ", " }' \
		<(sort -k3 "$out/steps.log"))
	local noun=nodes
	[ "$NODES" = 1 ] && noun=node
	note "example_multinode: ran on $NODES $noun: $nodes; GPU free after the marker (--poll-only, every 200ms): $lat ($PASS)"
}

# on_node I CMD...: CMD with STATE set to node kgnI's fake GPUs.
on_node() {
	local STATE=${STATES[$1 - 1]}
	shift
	"$@"
}

# free_times T0 SECONDS VAR: waits until every node's GPU 0 is free and sets
# VAR to "kgn1 12ms, kgn2 ..." (the time each became free after T0, in ns).
free_times() {
	local t0=$1 limit=$2 i n t when=() done=0
	for ((i = 0; i < limit * 50 && done < NODES; i++)); do
		for ((n = 1; n <= NODES; n++)); do
			[ -n "${when[n]:-}" ] && continue
			if on_node "$n" is_free 0; then
				t=$(date +%s%N)
				when[n]="kgn$n $(((t - t0) / 1000000))ms"
				done=$((done + 1))
			fi
		done
		[ "$done" = "$NODES" ] || sleep 0.02
	done
	local all=""
	for ((n = 1; n <= NODES; n++)); do
		[ -n "${when[n]:-}" ] || fail "kgn$n's GPU not free after ${limit}s: $(on_node "$n" procs 0)"
		all+="${all:+, }${when[n]}"
	done
	printf -v "$3" '%s' "$all"
}

# at_least N FILE PATTERN: FILE has N lines or more matching PATTERN.
at_least() { [ "$(count "$2" "$3")" -ge "$1" ]; }

# start_everywhere JOB LOG N: waits until sigwait.sh has started N times and
# every node's GPU has a live holder; prints the holders' pids.
start_everywhere() {
	local job=$1 log=$2 n
	until_true 60 "job $job's command to start $3 times" at_least "$3" "$log" "^start "
	for ((n = 1; n <= NODES; n++)); do
		until_true 30 "a holder on kgn$n" on_node "$n" held 0
		on_node "$n" holders 0
	done
}

# scancel of sbatch-multinode.sh on three nodes: every node's command gets
# exactly one TERM (one or two under linuxproc, see scancel_exec), every
# node's keepgpu releases its GPU (no record left: a killed holder leaves
# one) well before KillWait, and every holder is gone.
t_multinode_scancel() {
	local job h t0 n terms times
	job=$(TRAIN_CMD="$T/sigwait.sh $out/sig.log" SHARED_DIR=$out submit --nodes="$NODES" "$S/sbatch-multinode.sh")
	h=$(start_everywhere "$job" "$out/sig.log" "$NODES")
	t0=$(date +%s%N)
	scancel "$job"
	free_times "$t0" "$((KILLWAIT - 2))" times
	for n in $h; do
		until_true 5 "holder $n to be gone" gone "$n"
	done
	expect_done "$job" CANCELLED "*" 30
	for ((n = 1; n <= NODES; n++)); do
		terms=$(count "$out/sig.log" "^TERM .* kgn$n$")
		case $PROCTRACK:$terms in
		cgroup:1 | linuxproc:1 | linuxproc:2) ;;
		*) fail "kgn$n's command saw $terms SIGTERMs under proctrack/$PROCTRACK: $(cat "$out/sig.log")$(show_out "$job")" ;;
		esac
	done
	# (The job output may lack some nodes' release lines: srun is killed
	# with the batch shell. No record left on a node means it released.)
	note "multinode_scancel: GPU free after scancel: $times; TERMs seen per node: $(awk '/^TERM/ { print $3 }' "$out/sig.log" | sort | uniq -c | awk '{ printf "%s%s %s", s, $2, $1; s = ", " }'); job ExitCode=$(field "$job" ExitCode) ($PASS)"
	until_true 5 "the fake GPUs to be free" all_free
}

# One node's command fails while every node holds: srun --kill-on-bad-exit
# (sbatch-multinode.sh) stops the step, the other nodes' keepgpus get TERM,
# pass it on and release; the failing node released when its command exited.
# The job's exit code is srun's, the highest of the tasks': 143 from the
# commands stopped by TERM, not the failing node's 3.
t_multinode_node_fails() {
	local job bad t0 n times
	job=$(TRAIN_CMD="$T/sigwait.sh $out/sig.log" SHARED_DIR=$out SIGWAIT_EXIT=3 \
		submit --nodes="$NODES" "$S/sbatch-multinode.sh")
	start_everywhere "$job" "$out/sig.log" "$NODES" >/dev/null
	bad=kgn2
	t0=$(date +%s%N)
	touch "$out/sig.log.go.$bad"
	free_times "$t0" 30 times
	expect_done "$job" FAILED 143:0 30
	has_line "$out/$job.out" "srun: error: $bad: task [0-9]*: Exited with exit code 3" ||
		fail "srun did not report $bad's exit code 3$(show_out "$job")"
	! has_line "$out/sig.log" "^TERM .* $bad$" || fail "the failing node's command got a TERM"
	for ((n = 1; n <= NODES; n++)); do
		[ "kgn$n" = "$bad" ] && continue
		has_line "$out/sig.log" "^TERM .* kgn$n$" || fail "kgn$n's command saw no TERM: $(cat "$out/sig.log")"
	done
	if [ "$(count "$out/$job.out" "keepgpu: released the GPUs after .*(command exited")" != 1 ] ||
		[ "$(count "$out/$job.out" "keepgpu: released the GPUs after .*(\(SIGTERM\|the holder got SIGTERM\)")" != "$((NODES - 1))" ]; then
		fail "want one release on the command's exit and $((NODES - 1)) on SIGTERM$(show_out "$job")"
	fi
	note "multinode_node_fails: $bad's command exited 3; GPU free after that: $times; job $(field "$job" JobState) ExitCode=$(field "$job" ExitCode) ($PASS)"
	until_true 5 "the fake GPUs to be free (no holder killed)" all_free
}

# sbatch-prologue.sh on three nodes: one hold per node as a job step, every
# node's GPU held during the CPU phase (which runs on the first node), the
# shared marker releases them all, and the training runs on every node as
# the next step, on free GPUs. A failing CPU phase releases every node's hold
# (the marker again, not a kill) and is the job's exit code.
t_multinode_prologue() {
	local job worse id
	job=$(KG_LOG=$out/steps.log PREP_CMD="$T/sigwait.sh $out/prep.log" TRAIN_CMD=$T/train.sh SHARED_DIR=$out \
		submit --nodes="$NODES" "$S/sbatch-prologue.sh")
	start_everywhere "$job" "$out/prep.log" 1 >/dev/null
	touch "$out/prep.log.go"
	expect_done "$job" COMPLETED 0:0 60
	[ "$(count "$out/$job.out" "released 1 GPU after .*(--until-file)")" = "$NODES" ] ||
		fail "not every node's hold was released by the marker$(show_out "$job")"
	for ((id = 0; id < NODES; id++)); do
		has_line "$out/steps.log" "^train: step 1 node $id$" ||
			fail "no training on node $id in step 1: $(cat "$out/steps.log")$(show_out "$job")"
	done
	[ "$(count "$out/steps.log" "^train: gpu 0 free")" = "$NODES" ] || fail "a training found its GPU held: $(cat "$out/steps.log")"
	[ ! -e "$out/.keepgpu-$job.ready" ] || fail "the marker was left behind"
	until_true 5 "the fake GPUs to be free" all_free
	worse=$(KG_LOG=$out/worse.log PREP_CMD=$T/prep.sh PREP_EXIT=4 TRAIN_CMD=$T/train.sh SHARED_DIR=$out \
		submit --nodes="$NODES" "$S/sbatch-prologue.sh")
	expect_done "$worse" FAILED 4:0 60
	has_line "$out/worse.log" "^prep: gpu [0-9]* held" || fail "the failing CPU phase saw no hold$(show_out "$worse")"
	! has_line "$out/worse.log" "^train:" || fail "the training ran after a failed CPU phase"
	[ "$(count "$out/$worse.out" "released 1 GPU after .*(--until-file)")" = "$NODES" ] ||
		fail "not every node's hold was released after the CPU phase failed$(show_out "$worse")"
	until_true 5 "the fake GPUs to be free (no holder killed)" all_free
}

# A job's exit code through keepgpu reaches Slurm: the command's status,
# 128+N for a death by signal N, 125/126/127 for what never started; the
# same through an srun step.
t_exit_codes() {
	local j7 jsig j127 j126 j125 jsrun
	printf '#!/bin/sh\n' >"$out/notexec"
	touch "$out/stale.ready"
	j7=$(KG_LOG=$out/steps.log submit --gres=gpu:1 --wrap "exec keepgpu wrap -- sh -c '$T/prep.sh && exit 7'")
	jsig=$(submit --gres=gpu:1 --wrap "exec keepgpu wrap -- sh -c 'kill -USR2 \$\$'")
	j127=$(submit --gres=gpu:1 --wrap "exec keepgpu wrap -- $out/no-such-command")
	j126=$(submit --gres=gpu:1 --wrap "exec keepgpu wrap -- $out/notexec")
	j125=$(submit --gres=gpu:1 --wrap "exec keepgpu wrap --ready-file $out/stale.ready -- true")
	jsrun=$(submit --gres=gpu:1 --wrap "srun keepgpu wrap -- sh -c 'exit 5'")
	# A non-zero exit makes the job FAILED.
	expect_done "$j7" FAILED 7:0
	expect_done "$jsig" FAILED 140:0
	expect_done "$j127" FAILED 127:0
	expect_done "$j126" FAILED 126:0
	expect_done "$j125" FAILED 125:0
	expect_done "$jsrun" FAILED 5:0
	has_line "$out/steps.log" "^prep: gpu [0-9]* held" || fail "job $j7 held nothing$(show_out "$j7")"
	# A command that exits at once makes keepgpu kill a holder that has not
	# reported holding yet; the fake driver keeps that dead process's record,
	# which a real driver frees with the process. Only live holders count.
	until_true 5 "the fake GPUs to be free of live holders" dead_cleared_and_free
}

dead_cleared_and_free() { clear_dead; all_free; }

# start_sigwait JOB LOG: waits until sigwait.sh logged its start and its GPU
# has a live holder; prints "GPU HOLDER".
start_sigwait() {
	local job=$1 log=$2 g h
	until_true 30 "job $job's command to start" has_line "$log" "^start "
	g=$(awk '/^start / { print $4; exit }' "$log")
	[ -n "$g" ] || fail "job $job: no GPU in $(cat "$log")"
	until_true 15 "a holder on gpu $g" held ${g//,/ }
	g=${g%%,*}
	h=$(holders "$g")
	echo "$g $h"
}

# scancel_wrapped HOW: a running wrapped job is cancelled; the holder must
# have released (no record left, not merely died) well before KillWait, the
# command must have seen TERM, and the holder must be gone.
scancel_wrapped() {
	local how=$1 job g h t0 t1 ms terms x
	case $how in
	exec) job=$(submit --gres=gpu:1 --wrap "exec keepgpu wrap -- $T/sigwait.sh $out/sig.log") ;;
	srun) job=$(submit --gres=gpu:1 --wrap "srun keepgpu wrap -- $T/sigwait.sh $out/sig.log") ;;
	esac
	x=$(start_sigwait "$job" "$out/sig.log")
	read -r g h <<<"$x"
	t0=$(date +%s%N)
	scancel "$job"
	until_true "$((KILLWAIT - 2))" "gpu $g to be released before KillWait (${KILLWAIT}s)" is_free "$g"
	t1=$(date +%s%N)
	ms=$(((t1 - t0) / 1000000))
	gone "$h" || fail "holder $h still alive"
	expect_done "$job" CANCELLED "*" 20
	terms=$(count "$out/sig.log" "^TERM ")
	case $PROCTRACK:$terms in
	cgroup:1 | linuxproc:1 | linuxproc:2) ;;
	*) fail "the command saw $terms SIGTERMs under proctrack/$PROCTRACK$(show_out "$job")" ;;
	esac
	# (Under srun, the step's last lines may be lost: srun is cancelled too.
	# Slurm signals every process of the step, the holder included, so the
	# release is told as wrap's SIGTERM or as the holder's, whichever came
	# first.)
	[ "$how" = srun ] || has_line "$out/$job.out" "keepgpu: released the GPUs after .*(\(SIGTERM\|the holder got SIGTERM\)" ||
		fail "no release line for SIGTERM$(show_out "$job")"
	grep -q "keepgpu: warning" "$out/$job.out" && note "$PROCTRACK scancel_$how: $(grep 'keepgpu: warning' "$out/$job.out")"
	note "$PROCTRACK scancel_$how: gpu free ${ms}ms after scancel; the command saw $terms TERM; job ExitCode=$(field "$job" ExitCode)"
	until_true 5 "the fake GPUs to be free" all_free
}

t_scancel_exec() { scancel_wrapped exec; }
t_scancel_srun() { scancel_wrapped srun; }

# Without exec (keepgpu a child of the batch shell): under proctrack/cgroup
# only the batch shell gets the TERM; it dies of it, and slurmstepd then
# SIGKILLs the rest of the job at once, so the command never sees a TERM.
# Under linuxproc everyone gets TERM. The pitfall docs/slurm.md warns about.
t_scancel_no_exec() {
	local job g h t0 t1 s terms x
	job=$(submit --gres=gpu:1 --wrap "keepgpu wrap -- $T/sigwait.sh $out/sig.log; echo after")
	x=$(start_sigwait "$job" "$out/sig.log")
	read -r g h <<<"$x"
	t0=$(date +%s)
	scancel "$job"
	finished "$job" $((KILLWAIT + 30)) >/dev/null
	t1=$(date +%s)
	s=$((t1 - t0))
	terms=$(count "$out/sig.log" "^TERM ")
	case $PROCTRACK in
	cgroup)
		[ "$terms" = 0 ] || fail "the command saw $terms TERM without exec under proctrack/cgroup"
		;;
	linuxproc)
		[ "$terms" -ge 1 ] || fail "the command saw no TERM under proctrack/linuxproc"
		;;
	esac
	until_true 5 "holder $h to be gone" gone "$h"
	local left
	left=$(procs "$g")
	note "$PROCTRACK scancel_no_exec: the command saw $terms TERM; job ended ${s}s after scancel; gpu $g records after: ${left:-none}"
	# A holder killed by SIGKILL leaves its record in the fake node (a real
	# driver frees its memory). Clear it for the next tests.
	clear_dead
	until_true 5 "the fake GPUs to be free" all_free
}

# Two concurrent --gres=gpu:1 jobs hold different fake GPUs, each exactly its
# own, and each startup line names its GPU (ordinal 0, the GPU's UUID).
t_two_jobs() {
	local a b ga ha gb hb ka kb x
	a=$(submit --gres=gpu:1 --wrap "exec keepgpu wrap -- $T/sigwait.sh $out/a.log")
	b=$(submit --gres=gpu:1 --wrap "exec keepgpu wrap -- $T/sigwait.sh $out/b.log")
	x=$(start_sigwait "$a" "$out/a.log")
	read -r ga ha <<<"$x"
	x=$(start_sigwait "$b" "$out/b.log")
	read -r gb hb <<<"$x"
	[ "$ga" != "$gb" ] || fail "both jobs got gpu $ga"
	local g
	for g in "$ga" "$gb"; do
		[ "$(holders "$g" | wc -l)" = 1 ] || fail "gpu $g has holders $(holders "$g" | tr '\n' ' ')"
	done
	# Each holder is the child of its own job's keepgpu (sigwait's parent).
	ka=$(awk '/^start / { print $3; exit }' "$out/a.log")
	kb=$(awk '/^start / { print $3; exit }' "$out/b.log")
	[ "$(ppid_of "$ha")" = "$ka" ] || fail "gpu $ga's holder $ha is not job $a's (keepgpu $ka)"
	[ "$(ppid_of "$hb")" = "$kb" ] || fail "gpu $gb's holder $hb is not job $b's (keepgpu $kb)"
	until_true 10 "job $a's startup line" has_line "$out/$a.out" "keepgpu: $(holding_line "$ga")"
	until_true 10 "job $b's startup line" has_line "$out/$b.out" "keepgpu: $(holding_line "$gb")"
	! has_line "$out/$a.out" "${UUID[gb]}" || fail "job $a names the other job's GPU$(show_out "$a")"
	! has_line "$out/$b.out" "${UUID[ga]}" || fail "job $b names the other job's GPU$(show_out "$b")"
	touch "$out/a.log.go" "$out/b.log.go"
	expect_done "$a" COMPLETED 0:0
	expect_done "$b" COMPLETED 0:0
	note "$PROCTRACK two_jobs: job $a on gpu $ga (holder $ha), job $b on gpu $gb (holder $hb)"
	until_true 5 "the fake GPUs to be free" all_free
}

# In a --gres=gpu:1 job, list-gpus shows the job's GPU alone, as id 0 (the
# ordinal --gpus takes), with its number on the node as physical_id.
t_list_gpus() {
	local a b job g n seen=""
	a=$(submit --gres=gpu:1 --wrap 'echo "gpus=$SLURM_JOB_GPUS"; keepgpu list-gpus --json; sleep 3')
	b=$(submit --gres=gpu:1 --wrap 'echo "gpus=$SLURM_JOB_GPUS"; keepgpu list-gpus --json; sleep 3')
	for job in "$a" "$b"; do
		expect_done "$job" COMPLETED 0:0
		g=$(sed -n 's/^gpus=//p' "$out/$job.out")
		n=$(count "$out/$job.out" '"id":')
		[ "$n" = 1 ] && has_line "$out/$job.out" '"id": 0,' && has_line "$out/$job.out" "\"physical_id\": $g," &&
			has_line "$out/$job.out" "\"uuid\": \"${UUID[g]}\"" ||
			fail "job $job on gpu $g: want one GPU, id 0, physical_id $g$(show_out "$job")"
		seen+=" job $job: gpu $g as id 0"
	done
	note "$PROCTRACK list_gpus:$seen"
}

# A --gres=gpu:2 job holds both GPUs, named in the startup line.
t_two_gpus() {
	local job
	job=$(submit --gres=gpu:2 --wrap "exec keepgpu wrap -- $T/sigwait.sh $out/sig.log")
	start_sigwait "$job" "$out/sig.log" >/dev/null
	until_true 10 "holders on both GPUs" held 0 1
	until_true 10 "the startup line" has_line "$out/$job.out" "keepgpu: $(holding_line 0 1)"
	touch "$out/sig.log.go"
	expect_done "$job" COMPLETED 0:0
	until_true 5 "the fake GPUs to be free" all_free
}

# taskprolog.sh sets KEEPGPU_MAX_HOLD in every task unless the job set it.
t_taskprolog() {
	local a b
	a=$(submit --wrap 'echo "batch=$KEEPGPU_MAX_HOLD"; srun sh -c "echo step=\$KEEPGPU_MAX_HOLD"')
	b=$(KEEPGPU_MAX_HOLD=10m submit --wrap 'echo "batch=$KEEPGPU_MAX_HOLD"; srun sh -c "echo step=\$KEEPGPU_MAX_HOLD"')
	expect_done "$a" COMPLETED 0:0
	expect_done "$b" COMPLETED 0:0
	has_line "$out/$a.out" "^batch=2h$" && has_line "$out/$a.out" "^step=2h$" ||
		fail "no site default$(show_out "$a")"
	has_line "$out/$b.out" "^batch=10m$" && has_line "$out/$b.out" "^step=10m$" ||
		fail "the job's own value was overridden$(show_out "$b")"
}

# --signal=B:USR1@55 with a one-minute limit: the warning comes within about
# 5-40 s. sbatch-signal.sh traps it and passes it on through keepgpu to the
# command; a second job does the same with `exec keepgpu wrap` alone.
t_signal_usr1() {
	local a b t0 t1
	t0=$(date +%s)
	a=$(TRAIN_CMD="$T/sigwait.sh $out/a.log" submit --time=1 --signal=B:USR1@55 "$S/sbatch-signal.sh")
	b=$(submit --gres=gpu:1 --time=1 --signal=B:USR1@55 --wrap "exec keepgpu wrap -- $T/sigwait.sh $out/b.log")
	expect_done "$a" COMPLETED 0:0 100
	expect_done "$b" COMPLETED 0:0 100
	t1=$(date +%s)
	has_line "$out/a.log" "^USR1 " || fail "sbatch-signal.sh's command saw no USR1$(show_out "$a")"
	has_line "$out/$a.out" "sbatch-signal: SIGUSR1" || fail "the job script did not trap USR1$(show_out "$a")"
	has_line "$out/b.log" "^USR1 " || fail "the exec'd command saw no USR1$(show_out "$b")"
	has_line "$out/$a.out" "keepgpu: released the GPUs after .*(command exited" || fail "no release line$(show_out "$a")"
	note "signal_usr1: both jobs saw USR1 through keepgpu and ended COMPLETED 0:0 after $((t1 - t0))s"
	until_true 5 "the fake GPUs to be free" all_free
}

tests_cgroup=(example_wrap example_prologue example_multinode exit_codes scancel_exec
	scancel_srun scancel_no_exec two_jobs two_gpus list_gpus taskprolog signal_usr1)
tests_linuxproc=(example_wrap exit_codes scancel_exec scancel_srun scancel_no_exec two_jobs)
tests_multinode=(example_multinode multinode_scancel multinode_node_fails multinode_prologue)
slow=(signal_usr1)

# ---------------------------------------------------------------- runner

passed=0 failed=0 skipped=0
failures=()

run_test() {
	local name=$1 t0 t1 rc
	out=$W/out/$PASS-$name
	mkdir -p "$out"
	t0=$(date +%s%N)
	(
		set -e
		"t_$name"
	) >"$W/log/$PASS-$name.log" 2>&1
	rc=$?
	t1=$(date +%s%N)
	local secs
	secs=$(awk -v n=$((t1 - t0)) 'BEGIN { printf "%.1f", n / 1e9 }')
	if [ "$rc" = 0 ]; then
		printf 'ok    %-12s %-20s %6ss\n' "$PASS" "$name" "$secs"
		passed=$((passed + 1))
	else
		printf 'FAIL  %-12s %-20s %6ss\n' "$PASS" "$name" "$secs"
		sed 's/^/      | /' "$W/log/$PASS-$name.log" | tail -n 60
		failed=$((failed + 1))
		failures+=("$PASS/$name")
		# Leave a clean cluster for the next test.
		# shellcheck disable=SC2046 # one argument per job
		scancel --quiet $(squeue -h -o %A) 2>/dev/null || true
		local i
		for ((i = 0; i < 200; i++)); do
			[ -z "$(squeue -h -o %A)" ] && break
			sleep 0.1
		done
		sleep 1
		clear_dead
	fi
}

wanted() {
	local t
	[ ${#only[@]} = 0 ] && return 0
	for t in "${only[@]}"; do [ "$t" = "$1" ] && return 0; done
	return 1
}

cgroup_usable() {
	[ -d /sys/fs/cgroup/freezer ] && return 0
	# cgroup v2: Slurm 22.05 needs systemd to place its cgroups.
	[ -e /sys/fs/cgroup/cgroup.controllers ] && [ -d /run/systemd/system ]
}

# run_pass PROCTRACK NODES TEST...: starts a cluster of NODES nodes under
# proctrack/PROCTRACK, runs the tests and stops it. One node has NGPUS fake
# GPUs; each of several has one, in its own state directory.
run_pass() {
	PROCTRACK=$1 NODES=$2
	shift 2
	PASS=$PROCTRACK
	[ "$NODES" = 1 ] || PASS=${NODES}n-$PROCTRACK
	local t todo=()
	for t in "$@"; do
		wanted "$t" || continue
		if [ "$quick" = 1 ] && [[ " ${slow[*]} " == *" $t "* ]]; then
			printf 'skip  %-12s %-20s (--quick)\n' "$PASS" "$t"
			skipped=$((skipped + 1))
			continue
		fi
		todo+=("$t")
	done
	[ ${#todo[@]} -gt 0 ] || return 0
	if [ "$PROCTRACK" = cgroup ] && [ "$NODES" -gt 1 ] && [ ! -d /sys/fs/cgroup/freezer ]; then
		say "proctrack/cgroup on $NODES nodes needs a cgroup v1 freezer; skipping ${todo[*]}"
		skipped=$((skipped + ${#todo[@]}))
		note "$PASS: no cgroup v1 freezer; skipped"
		return 0
	fi
	if [ "$PROCTRACK" = cgroup ] && ! cgroup_usable; then
		say "proctrack/cgroup: no cgroup v1 freezer, and no systemd for cgroup v2; skipping ${todo[*]}"
		skipped=$((skipped + ${#todo[@]}))
		note "proctrack/cgroup not usable here; skipped"
		return 0
	fi
	cluster=$W/c-$PASS
	local c0 c1 gpus=$NGPUS n ms
	[ "$NODES" = 1 ] || gpus=1
	c0=$(date +%s%N)
	if ! "$repo/scripts/slurm-cluster.sh" start "$cluster" --nodes "$NODES" --proctrack "$PROCTRACK" --gpus "$gpus" \
		--kill-wait "$KILLWAIT" --task-prolog "$S/taskprolog.sh" 2>>"$W/log/cluster.log"; then
		cat "$W/log/cluster.log" >&2
		printf 'FAIL  %-12s %-20s the cluster did not start\n' "$PASS" "(cluster)"
		failed=$((failed + 1))
		failures+=("$PASS/cluster")
		"$repo/scripts/slurm-cluster.sh" stop "$cluster" 2>>"$W/log/cluster.log" || true
		cluster=""
		return 0
	fi
	c1=$(date +%s%N)
	ms=$(((c1 - c0) / 1000000))
	# shellcheck disable=SC1091
	source "$cluster/env"
	say "$PASS: cluster of $NODES node(s) up in ${ms}ms"
	local keep_dir=$FAKEGPU_DIR keep_gpus=$NGPUS
	if [ "$NODES" -gt 1 ]; then
		note "$PASS: cluster of $NODES nodes (network namespaces) up in ${ms}ms"
		NGPUS=1 STATES=() NODE_UUID=()
		for ((n = 1; n <= NODES; n++)); do
			STATES+=("$cluster/nodes/kgn$n/fakegpu")
			fakegpu init "${STATES[n - 1]}" 1 >/dev/null
			NODE_UUID[n - 1]=$(newuuid)
			fakegpu set "${STATES[n - 1]}" 0 uuid "${NODE_UUID[n - 1]}"
		done
		# The same path everywhere, a different directory on each node.
		export FAKEGPU_DIR=$cluster/node/fakegpu
		JOB_TMPDIR=$cluster/node/tmp
	fi
	local failed_before=$failed
	for t in "${todo[@]}"; do
		run_test "$t"
	done
	if [ "$failed" -gt "$failed_before" ]; then
		echo "      | last lines of the Slurm logs ($PASS):"
		tail -n 25 "$cluster/log/slurmctld.log" "$cluster/log/"slurmd*.log | sed 's/^/      | /'
	fi
	"$repo/scripts/slurm-cluster.sh" stop "$cluster" 2>>"$W/log/cluster.log" || true
	cluster=""
	unset SLURM_CONF JOB_TMPDIR
	export FAKEGPU_DIR=$keep_dir
	NGPUS=$keep_gpus STATES=("$FAKEGPU_DIR") STATE=$FAKEGPU_DIR
}

for t in "${only[@]}"; do
	if [[ " ${tests_cgroup[*]} ${tests_linuxproc[*]} ${tests_multinode[*]} " != *" $t "* ]]; then
		say "no test $t; the tests: ${tests_cgroup[*]} ${tests_multinode[*]}"
		exit 2
	fi
done

# The three-node cluster uses proctrack/cgroup where cgroup v1 has a freezer
# (see scripts/slurm-cluster.sh's start_nodes), otherwise linuxproc, unless
# --proctrack names one.
multi_proctrack=linuxproc
[ -d /sys/fs/cgroup/freezer ] && multi_proctrack=cgroup
[ "$plugins" = both ] || multi_proctrack=$plugins

start=$(date +%s)
if [ "$sizes" != 3 ]; then
	case $plugins in
	both)
		run_pass cgroup 1 "${tests_cgroup[@]}"
		run_pass linuxproc 1 "${tests_linuxproc[@]}"
		;;
	cgroup) run_pass cgroup 1 "${tests_cgroup[@]}" ;;
	linuxproc) run_pass linuxproc 1 "${tests_linuxproc[@]}" ;;
	esac
fi
if [ "$sizes" != 1 ]; then
	run_pass "$multi_proctrack" 3 "${tests_multinode[@]}"
fi
end=$(date +%s)

if [ -s "$W/log/notes" ]; then
	say "notes:"
	sed 's/^/  /' "$W/log/notes" >&2
fi
summary="$passed passed, $failed failed, $skipped skipped; the Slurm part took $((end - start))s ($((end - begin))s with the build and install)"
if [ "$failed" -gt 0 ]; then
	echo "slurm-test: FAIL: $summary (${failures[*]})"
	exit 1
fi
echo "slurm-test: ok: $summary"
