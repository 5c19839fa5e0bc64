#!/usr/bin/env bash
# gpu-check.sh: what only a real NVIDIA GPU can show about keepgpu, each
# figure measured (never assumed) and printed last as a Markdown table:
# figure | measured | target | ok?
#
# Build here, where Go is; run there, where the GPU is (no Go needed there,
# but nvidia-smi and Python 3 with PyTorch are):
#
#     go build -o .gpu/keepgpu .
#     bash scripts/gpu-check.sh .gpu/keepgpu
#
# What it checks, in order (targets: the performance table of the design):
#   1. environment: the card, driver and memory; idle memory.used (the
#      baseline) and board power. One `nvidia-smi -lms 50` samples
#      memory.used, utilization.gpu and power.draw for the whole run.
#   2. `keepgpu hold --vram 2GiB --util 30 --log-format json` starts: the
#      embedded PTX loads and launches, no error or kernel-failed events;
#      start → memory.used up by 2 GiB, and start → keepgpu's "holding".
#   3. VRAM held as NVML sees it (memory.used − baseline) against --vram.
#   4. utilization.gpu over 10 s against --util 30 (mean, spread), then 5 s
#      at --util 60; board power against idle; the holder's resident memory.
#   5. release: SIGTERM → holder exited → memory.used back to the baseline;
#      the same for `--until-file` and a file appearing, and for SIGTERM at
#      --util 100, where the kernel always runs: its stop word must end it
#      (it would otherwise run out its 100 ms window).
#   6. handoff: under `keepgpu wrap --vram 8GiB`, a PyTorch child runs
#      `keepgpu ready` and then allocates and writes nearly the whole card.
#   7. backoff: a foreign PyTorch process → kernel paused; it exits → kernel
#      resumed (--interval 500ms).
#   8. the wrapped command's own GPU use releases the GPUs.
#
# Every wait has a timeout, the whole run a budget (GPU_CHECK_BUDGET_S,
# default 240 s), and everything the script starts is stopped when it exits.
# GPU_CHECK_PYTHON names the Python with PyTorch (default python3).
# Logs go to $OUT when it is set, else to a temporary directory named at the
# end: gpu-check.log (progress), timeline.csv (every nvidia-smi sample),
# events.log (raw output of keepgpu and of the PyTorch children), results.md
# (the table). Exit status: 0 every check passed; 1 a check failed or could
# not be measured; 2 no NVIDIA GPU here; 64 bad usage.

# Conditions and handlers run through wait_until and trap, which shellcheck
# cannot follow.
# shellcheck disable=SC2317

set -uo pipefail
export LC_ALL=C

readonly SAMPLE_MS=50      # nvidia-smi sampling period
readonly BASE_TOL_MIB=128  # "back to the baseline": memory.used within this of idle
readonly IDLE_SECS=3       # idle sampling
readonly UTIL30_SECS=10    # utilization window at --util 30
readonly UTIL60_SECS=5     # utilization window at --util 60
readonly FOREIGN_SECS=6    # how long the foreign process runs matmuls
BUDGET_S=${GPU_CHECK_BUDGET_S:-240}
PYTHON=${GPU_CHECK_PYTHON:-python3} # a Python 3 with PyTorch
[[ $BUDGET_S =~ ^[0-9]+$ ]] || BUDGET_S=240

PIDS=()          # every background process started (each leads its own process group)
SAMPLER_PID=""
WATCHDOG_PID=""
GUARD_PID=""     # arm's timer
NAP_PID=""       # nap's sleep
ARMED_SECS=0
REPORTED=0
SAMPLER_LIVE=0
REPORT_RC=1

# ------------------------------------------------------------------ helpers

# tick sets NOW_US to the wall clock in microseconds (bash 5: no fork).
tick() {
	if [[ -n ${EPOCHREALTIME:-} ]]; then
		NOW_US=${EPOCHREALTIME/./}
	else
		NOW_US=$(date +%s%6N)
	fi
}

log() {
	local line ds
	tick
	ds=$(((NOW_US - START_US) / 100000))
	printf -v line '[%3d.%ds] %s' $((ds / 10)) $((ds % 10)) "$*"
	printf '%s\n' "$line" >>"$LOG"
	printf '%s\n' "$line" >&2
}

# record KEY VALUE: one raw fact for the analysis (analyze.py turns the
# facts into figures); mark KEY records the time now, in epoch seconds.
record() {
	local v=${2//$'\t'/ }
	printf '%s\t%s\n' "$1" "${v//$'\n'/ }" >>"$RECORD"
}
mark() {
	local t=${EPOCHREALTIME:-}
	[[ -n $t ]] || t=$(date +%s.%6N)
	MARK=$t
	record "$1" "$t"
}

# have_time SECONDS: whether the budget leaves SECONDS more.
have_time() {
	tick
	((NOW_US + $1 * 1000000 <= DEADLINE_US))
}

# skip PREFIX...: a step is skipped for want of time; its figures say so.
skip() {
	local p
	log "skipped: not enough of the ${BUDGET_S}s budget left"
	for p in "$@"; do
		record "$p.skipped" "not enough of the time budget left"
	done
}

# left_s SECONDS: SECONDS, or what is left of the budget if that is less
# (at least 1).
left_s() {
	local left
	tick
	left=$(((DEADLINE_US - NOW_US) / 1000000))
	((left < 1)) && left=1
	echo $(($1 < left ? $1 : left))
}

# nap SECONDS: sleep in the background and wait for it, so that the budget's
# SIGTERM is handled at once rather than after the sleep.
nap() {
	sleep "$1" &
	NAP_PID=$!
	wait "$NAP_PID"
	NAP_PID=""
}

# is_running PID: whether PID is alive (a zombie is not).
is_running() {
	local stat
	{ read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}
gone() { ! is_running "$1"; }

# run_bg NAME CMD...: start CMD in the background in a session of its own
# (so that its whole process group can be stopped), stdin /dev/null, stdout
# and stderr into $WORK/NAME.out and NAME.err. Sets BG_PID.
run_bg() {
	local name=$1
	shift
	"${SETSID[@]}" "$@" </dev/null >"$WORK/$name.out" 2>"$WORK/$name.err" &
	BG_PID=$!
	PIDS+=("$BG_PID")
	log "started $name (pid $BG_PID): $*"
}

# signal_group SIG PID: send SIG to PID's process group, or to PID alone.
signal_group() {
	kill "-$1" -- "-$2" 2>/dev/null || kill "-$1" "$2" 2>/dev/null
}

# stop_all: SIGTERM to every process group whose leader still runs
# (keepgpu releases on it); after up to 3 s, SIGKILL to every group, which
# also ends a child that outlived its leader.
stop_all() {
	local pid i alive
	for pid in "${PIDS[@]}"; do
		is_running "$pid" && signal_group TERM "$pid"
	done
	for ((i = 0; i < 60; i++)); do
		alive=0
		for pid in "${PIDS[@]}"; do
			is_running "$pid" && alive=1
		done
		((alive)) || break
		sleep 0.05
	done
	for pid in "${PIDS[@]}"; do
		signal_group KILL "$pid"
	done
	return 0
}

# wait_until SECONDS WHAT CMD...: run CMD every 20 ms until it succeeds.
# Returns 1, and logs it, when SECONDS (or the budget) run out first.
wait_until() {
	local secs what=$2 deadline
	secs=$(left_s "$1")
	shift 2
	tick
	deadline=$((NOW_US + secs * 1000000))
	until "$@"; do
		tick
		if ((NOW_US >= deadline)); then
			log "timed out after ${secs}s waiting for $what"
			return 1
		fi
		sleep 0.02
	done
}

# arm PID SECONDS: start a guard that kills PID's process group after
# SECONDS, for await. Arming before asking for a release keeps the guard's
# start out of the time measured.
arm() {
	ARMED_SECS=$(left_s "$2")
	# shellcheck disable=SC2016 # expanded by the inner bash
	"${SETSID[@]}" bash -c 'sleep "$1"; kill -KILL -- "-$2" 2>/dev/null || kill -KILL "$2"' \
		guard "$ARMED_SECS" "$1" </dev/null >/dev/null 2>&1 &
	GUARD_PID=$!
}

# await PID: wait for our child PID to exit, noticed at once (bash's wait,
# not polling), then disarm the guard. Sets EXIT_RC and EXIT_AT (epoch
# seconds when the exit was seen).
await() {
	wait "$1"
	EXIT_RC=$?
	EXIT_AT=${EPOCHREALTIME:-$(date +%s.%6N)}
	signal_group KILL "$GUARD_PID"
	wait "$GUARD_PID" 2>/dev/null
	GUARD_PID=""
	if ((EXIT_RC == 137)); then
		log "pid $1 was killed (exit 137; the guard fires after ${ARMED_SECS}s)"
	fi
}

# wait_exit PID SECONDS: arm, then await.
wait_exit() {
	arm "$1" "$2"
	await "$1"
}

# Conditions for wait_until.
has_event() { grep -q "\"event\":\"$2\"" "$1" 2>/dev/null; }
count_events() {
	local n
	n=$(grep -c "\"event\":\"$2\"" "$1" 2>/dev/null) || true
	echo "${n:-0}"
}
more_events() { (($(count_events "$1" "$2") > $3)); }
holding_or_gone() { has_event "$1" holding || gone "$2"; }
line_or_gone() { grep -q -- "$2" "$1" 2>/dev/null || gone "$3"; }
samples_seen() { [[ -s $TIMELINE ]]; }

# mem_now prints the latest memory.used sample (MiB).
mem_now() {
	local m
	m=$(tail -n 1 "$TIMELINE" 2>/dev/null | awk -F', *' '{ print $3 }')
	[[ $m =~ ^[0-9]+$ ]] && echo "$m"
}
mem_at_least() {
	local m
	m=$(mem_now) && ((m >= $1))
}
mem_at_most() {
	local m
	m=$(mem_now) && ((m <= $1))
}

# median_mem FROM TO: median memory.used (MiB) sampled between two epoch times.
median_mem() {
	awk -F', *' -v a="$1" -v b="$2" '$1 >= a && $1 <= b && $3 ~ /^[0-9]+$/ { print $3 }' "$TIMELINE" |
		sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'
}

# smi ARGS...: nvidia-smi on the checked GPU, bounded.
smi() { timeout 30 nvidia-smi -i "$GPU_UUID" "$@"; }

# status_kb PID FIELD: a field of /proc/PID/status in kB (VmRSS, VmHWM).
status_kb() {
	local key value rest
	[[ -r /proc/$1/status ]] || return 1
	while read -r key value rest; do
		if [[ $key == "$2:" ]]; then
			echo "$value"
			return 0
		fi
	done 2>/dev/null <"/proc/$1/status"
	return 1
}

# record_memory NAME PID: the resident memory of PID now and at its peak,
# as NAME_rss_kb and NAME_hwm_kb.
record_memory() {
	local rss hwm
	rss=$(status_kb "$2" VmRSS) && record "$1_rss_kb" "$rss"
	hwm=$(status_kb "$2" VmHWM) && record "$1_hwm_kb" "$hwm"
	log "$1: VmRSS ${rss:-?} kB, VmHWM ${hwm:-?} kB"
}

# holder_of WRAP_PID: the pid of the holder that keepgpu wrap started (its
# child running "hold --supervised").
holder_of() {
	local f stat ppid pid
	for f in /proc/[0-9]*/stat; do
		{ read -r stat <"$f"; } 2>/dev/null || continue
		stat=${stat##*) }
		read -r _ ppid _ <<<"$stat"
		[[ $ppid == "$1" ]] || continue
		pid=${f#/proc/}
		pid=${pid%/stat}
		if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- '--supervised'; then
			echo "$pid"
			return 0
		fi
	done
	return 1
}

# wrap_done PID: wait_until's condition for a keepgpu wrap run; on the way it
# keeps the latest resident memory of the wrapper and of its holder (the
# peak, VmHWM, only grows).
wrap_done() {
	local hwm rss
	gone "$1" && return 0
	# A process on its way out has no Vm lines: keep both readings or neither.
	if hwm=$(status_kb "$1" VmHWM) && rss=$(status_kb "$1" VmRSS); then
		WRAP_HWM=$hwm WRAP_RSS=$rss
	fi
	if [[ -z $HOLDER_PID ]] && HOLDER_PID=$(holder_of "$1"); then
		PIDS+=("$HOLDER_PID")
		log "the wrap's holder is pid $HOLDER_PID"
	fi
	if [[ -n $HOLDER_PID ]] && hwm=$(status_kb "$HOLDER_PID" VmHWM) &&
		rss=$(status_kb "$HOLDER_PID" VmRSS); then
		HOLDER_HWM=$hwm HOLDER_RSS=$rss
	fi
	return 1
}

# event_message FILE EVENT: the "message" of the first EVENT in a JSON stream.
event_message() {
	grep -m 1 "\"event\":\"$2\"" "$1" 2>/dev/null | sed -n 's/.*"message":"\([^"]*\)".*/\1/p'
}

# wait_holding NAME PID: wait until keepgpu hold says it holds; logs why not.
wait_holding() {
	if wait_until 40 "$1 to hold" holding_or_gone "$WORK/$1.err" "$2" &&
		has_event "$WORK/$1.err" holding; then
		log "$1: $(event_message "$WORK/$1.err" holding)"
		return 0
	fi
	log "$1 did not hold; its stderr ends: $(tail -c 1500 "$WORK/$1.err" 2>/dev/null)"
	return 1
}

# release_wait NAME PID: after a release was asked for (the guard armed
# before), wait for the holder to exit, then for memory.used to come back to
# the baseline.
release_wait() {
	await "$2"
	record "$1.exited" "$EXIT_AT"
	record "$1.rc" "$EXIT_RC"
	mem_wait 10 "memory.used back to the baseline" mem_at_most $((BASE_MIB + BASE_TOL_MIB))
	log "$1: exit $EXIT_RC; $(event_message "$WORK/$1.err" released)"
	sleep 0.3 # a few samples at the baseline before the next step
}

# ----------------------------------------------------------------- sampler

# start_sampler: one nvidia-smi for the whole run, a line every SAMPLE_MS,
# each prefixed with the time it arrived: "epoch,timestamp, memory.used
# [MiB], utilization.gpu [%], power.draw [W]". stdbuf makes nvidia-smi
# write line by line into the pipe; its own timestamp column is there in
# case it does not.
start_sampler() {
	# shellcheck disable=SC2016 # expanded by the inner bash
	"${SETSID[@]}" bash -c '
		sb=(); command -v stdbuf >/dev/null && sb=(stdbuf -oL)
		"${sb[@]}" nvidia-smi -i "$1" -lms "$2" --format=csv,noheader,nounits \
			--query-gpu=timestamp,memory.used,utilization.gpu,power.draw |
			while IFS= read -r line; do printf "%s,%s\n" "${EPOCHREALTIME:-$(date +%s.%6N)}" "$line"; done' \
		sampler "$GPU_UUID" "$SAMPLE_MS" </dev/null >>"$TIMELINE" 2>>"$WORK/sampler.err" &
	SAMPLER_PID=$!
	log "started the nvidia-smi sampler (pid $SAMPLER_PID, every ${SAMPLE_MS} ms)"
}

stop_sampler() {
	local i
	[[ -n $SAMPLER_PID ]] || return 0
	signal_group INT "$SAMPLER_PID"
	for ((i = 0; i < 40; i++)); do
		gone "$SAMPLER_PID" && break
		sleep 0.05
	done
	signal_group KILL "$SAMPLER_PID"
	SAMPLER_PID=""
}

# ------------------------------------------------------------------ checks

# 1. The card, the driver, the versions; the idle baseline.
check_environment() {
	local q name driver total mode persist others torch_v kg_v
	log "== 1. environment"
	timeout 30 nvidia-smi >>"$LOG" 2>&1
	timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee -a "$LOG" >&2
	q=$(timeout 30 nvidia-smi -i 0 --format=csv,noheader,nounits \
		--query-gpu=uuid,name,driver_version,memory.total,compute_mode,persistence_mode 2>&1)
	IFS=, read -r GPU_UUID name driver total mode persist <<<"${q//, /,}"
	if [[ $GPU_UUID != GPU-* ]]; then
		log "cannot read GPU 0 from nvidia-smi: $q"
		echo "no NVIDIA GPU here ($q)"
		exit 2
	fi
	record env.date "$(date '+%Y-%m-%d %H:%M:%S %z')"
	record env.host "$(uname -srm)"
	record env.uuid "$GPU_UUID"
	record env.gpu_name "$name"
	record env.driver "$driver"
	record env.mem_total_mib "$total"
	record env.compute_mode "$mode"
	record env.persistence "$persist"
	record env.sample_ms "$SAMPLE_MS"
	kg_v=$(timeout 10 "$KG" version 2>&1 | head -n 1)
	record env.keepgpu "$kg_v"
	# Importing torch once also warms the page cache for the children.
	torch_v=$(timeout 120 "$PYTHON" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)' 2>&1 | tail -n 1)
	record env.torch "$torch_v"
	log "GPU 0: $name ($GPU_UUID), $total MiB, driver $driver, compute mode $mode, persistence $persist"
	log "keepgpu: $kg_v; PyTorch: $torch_v"
	[[ $mode == Default ]] || log "warning: compute mode $mode: the foreign process and the handoffs may fail"
	# Everything from here sees this one GPU as CUDA device 0.
	if [[ -n ${CUDA_VISIBLE_DEVICES:-} ]]; then
		log "CUDA_VISIBLE_DEVICES was $CUDA_VISIBLE_DEVICES; now $GPU_UUID"
	fi
	export CUDA_VISIBLE_DEVICES=$GPU_UUID GPU_CHECK_UUID=$GPU_UUID
	others=$(smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader 2>&1)
	if [[ -n $others ]]; then
		log "warning: the GPU is already in use, figures may be off: $others"
		record env.other_processes "$others"
	fi
}

# 1. Idle: sampling starts; the median memory.used before anything else
# runs is the baseline every "held" and "back" below is measured from.
sample_idle() {
	local last
	start_sampler
	wait_until 5 "the first nvidia-smi sample" samples_seen
	mark idle.begin
	nap "$IDLE_SECS"
	mark idle.end
	BASE_MIB=$(median_mem 0 "$MARK")
	if [[ -z $BASE_MIB ]]; then
		BASE_MIB=$(smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -n 1)
		log "warning: no nvidia-smi samples yet; the baseline is one nvidia-smi call"
	fi
	[[ $BASE_MIB =~ ^[0-9]+$ ]] || BASE_MIB=0
	record base.mib "$BASE_MIB"
	export GPU_CHECK_BASE_MIB=$BASE_MIB
	# Live: the latest sample arrived within the last second. If nvidia-smi's
	# output comes in blocks, the waits on memory.used below are skipped (the
	# analysis then goes by nvidia-smi's own timestamps).
	last=$(tail -n 1 "$TIMELINE" 2>/dev/null | cut -d, -f1)
	tick
	SAMPLER_LIVE=0
	[[ $last =~ ^[0-9]+\.[0-9]{6}$ ]] && ((NOW_US - ${last/./} <= 1000000)) && SAMPLER_LIVE=1
	((SAMPLER_LIVE)) || log "warning: nvidia-smi's samples do not arrive as taken (buffered output?)"
	log "baseline memory.used $BASE_MIB MiB ($(wc -l <"$TIMELINE") samples so far)"
}

# mem_wait SECONDS WHAT CONDITION MIB: wait_until for a memory.used
# condition, or a short pause when the samples do not arrive live.
mem_wait() {
	if ((SAMPLER_LIVE)); then
		wait_until "$1" "$2" "$3" "$4"
	else
		sleep 1
	fi
}

# 2-5. keepgpu hold at --util 30: it starts, holds 2 GiB, runs its kernel
# for UTIL30_SECS of sampling, and releases on SIGTERM.
check_hold_util30() {
	local pid
	log "== 2-5. keepgpu hold --vram 2GiB --util 30: start, VRAM, utilization, memory, SIGTERM"
	mark hold30.launch
	run_bg hold30 "$KG" hold --gpus all --vram 2GiB --util 30 --log-format json
	pid=$BG_PID
	record hold30.pid "$pid"
	if ! wait_holding hold30 "$pid"; then
		signal_group TERM "$pid"
		return
	fi
	mem_wait 5 "memory.used up by 2 GiB" mem_at_least $((BASE_MIB + 2048))
	timeout 20 "$KG" list-gpus --json >"$WORK/hold30.list-gpus.json" 2>&1
	record hold30.list_gpus_rc $?
	smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits >"$WORK/hold30.apps.csv" 2>&1
	log "compute processes (pid, MiB): $(tr '\n' ';' <"$WORK/hold30.apps.csv")"
	sleep 1 # NVML's utilization covers up to the last second
	mark util30.begin
	nap "$UTIL30_SECS"
	mark util30.end
	record_memory hold30.holder "$pid"
	arm "$pid" 20
	mark hold30.term
	kill -TERM "$pid"
	release_wait hold30 "$pid"
}

# 4-5. keepgpu hold at --util 60 for UTIL60_SECS of sampling, released by
# the --until-file appearing.
check_util60_until_file() {
	local pid flag=$WORK/release60
	log "== 4-5. keepgpu hold --vram 2GiB --util 60 --until-file: utilization, release"
	if ! have_time 40; then
		skip hold60 util60
		return
	fi
	mark hold60.launch
	run_bg hold60 "$KG" hold --gpus all --vram 2GiB --util 60 --log-format json --until-file "$flag"
	pid=$BG_PID
	if ! wait_holding hold60 "$pid"; then
		signal_group TERM "$pid"
		return
	fi
	sleep 1
	mark util60.begin
	nap "$UTIL60_SECS"
	mark util60.end
	arm "$pid" 20
	mark hold60.touch
	: >"$flag"
	release_wait hold60 "$pid"
}

# 5. keepgpu hold at --util 100, released by SIGTERM while its kernel runs
# (it always does): the stop word in mapped host memory must end it within
# microseconds, or the release waits for the rest of the 100 ms window.
check_stop_util100() {
	local pid
	log "== 5. keepgpu hold --vram 256MiB --util 100: SIGTERM while the kernel runs"
	if ! have_time 25; then
		skip hold100
		return
	fi
	mark hold100.launch
	run_bg hold100 "$KG" hold --gpus all --vram 256MiB --util 100 --log-format json
	pid=$BG_PID
	if ! wait_holding hold100 "$pid"; then
		signal_group TERM "$pid"
		return
	fi
	sleep 0.35 # into a window, not at its edge
	arm "$pid" 20
	mark hold100.term
	kill -TERM "$pid"
	release_wait hold100 "$pid"
}

# 6. Handoff to PyTorch: the child calls `keepgpu ready`, then allocates
# more of the card than it could have if keepgpu still held its 8 GiB.
check_handoff() {
	local pid
	log "== 6. handoff: keepgpu wrap --vram 8GiB -- python3 gpu_child.py handoff"
	if ! have_time 45; then
		skip handoff
		return
	fi
	WRAP_HWM="" WRAP_RSS="" HOLDER_PID="" HOLDER_HWM="" HOLDER_RSS=""
	mark handoff.launch
	run_bg handoff env GPU_CHECK_HELD_MIB=8192 "$KG" wrap --vram 8GiB -- "$PYTHON" "$WORK/gpu_child.py" handoff
	pid=$BG_PID
	wait_until 150 "the handoff child" wrap_done "$pid"
	wait_exit "$pid" 10
	record handoff.rc "$EXIT_RC"
	record handoff.wrap_hwm_kb "$WRAP_HWM"
	record handoff.wrap_rss_kb "$WRAP_RSS"
	record handoff.holder_hwm_kb "$HOLDER_HWM"
	record handoff.holder_rss_kb "$HOLDER_RSS"
	log "handoff: exit $EXIT_RC; wrapper VmHWM ${WRAP_HWM:-?} kB, holder VmHWM ${HOLDER_HWM:-?} kB"
	log "handoff child: $(tr '\n' ' ' <"$WORK/handoff.out" | tail -c 1500)"
	log "handoff wrap: $(tr '\n' ' ' <"$WORK/handoff.err" | tail -c 1500)"
	mem_wait 15 "memory.used back to the baseline" mem_at_most $((BASE_MIB + BASE_TOL_MIB))
}

# 7. Backoff: a foreign PyTorch process on the held GPU pauses the kernel;
# its exit resumes it.
check_backoff() {
	local pid fpid paused0 resumed0
	log "== 7. backoff: keepgpu hold --util 30 --interval 500ms, then a foreign PyTorch process"
	if ! have_time 45; then
		skip backoff foreign
		return
	fi
	run_bg backoff "$KG" hold --gpus all --vram 2GiB --util 30 --interval 500ms --log-format json
	pid=$BG_PID
	if ! wait_holding backoff "$pid"; then
		signal_group TERM "$pid"
		return
	fi
	sleep 1.5 # a few telemetry rounds alone first
	paused0=$(count_events "$WORK/backoff.err" paused)
	resumed0=$(count_events "$WORK/backoff.err" resumed)
	mark foreign.launch
	run_bg foreign "$PYTHON" "$WORK/gpu_child.py" foreign "$FOREIGN_SECS"
	fpid=$BG_PID
	record foreign.pid "$fpid"
	wait_until 90 "the foreign process's first kernel" line_or_gone "$WORK/foreign.out" '"first_kernel"' "$fpid"
	wait_until 10 "keepgpu to pause its kernel" more_events "$WORK/backoff.err" paused "$paused0" &&
		log "backoff: $(grep '"event":"paused"' "$WORK/backoff.err" | tail -n 1 | sed -n 's/.*"message":"\([^"]*\)".*/\1/p')"
	wait_exit "$fpid" $((FOREIGN_SECS + 40))
	record foreign.exited "$EXIT_AT"
	record foreign.rc "$EXIT_RC"
	log "foreign process: exit $EXIT_RC; $(tr '\n' ' ' <"$WORK/foreign.out" | tail -c 600) $(tail -c 600 "$WORK/foreign.err")"
	wait_until 10 "keepgpu to resume its kernel" more_events "$WORK/backoff.err" resumed "$resumed0" &&
		log "backoff: kernel resumed"
	sleep 0.2
	arm "$pid" 20
	kill -TERM "$pid"
	release_wait backoff "$pid"
}

# 8. The wrapped command opening the GPU itself releases keepgpu's hold.
check_gpu_use() {
	local pid
	log "== 8. release on GPU use: keepgpu wrap --vram 4GiB -- python3 gpu_child.py gpu-use"
	if ! have_time 30; then
		skip gpuuse
		return
	fi
	run_bg gpuuse env GPU_CHECK_HELD_MIB=4096 "$KG" wrap --vram 4GiB -- "$PYTHON" "$WORK/gpu_child.py" gpu-use
	pid=$BG_PID
	wait_exit "$pid" 120
	record gpuuse.rc "$EXIT_RC"
	log "gpu-use: exit $EXIT_RC; child: $(tr '\n' ' ' <"$WORK/gpuuse.out" | tail -c 800)"
	log "gpu-use wrap: $(tr '\n' ' ' <"$WORK/gpuuse.err" | tail -c 1000)"
}

# ------------------------------------------------------------ report, exit

# collect_events copies the raw output of every process into events.log.
collect_events() {
	local f
	{
		for f in "$RECORD" "$WORK"/*.err "$WORK"/*.out "$WORK"/*.json "$WORK"/*.csv; do
			[[ -f $f ]] || continue
			printf '===== %s =====\n' "${f##*/}"
			tail -c 200000 "$f"
			printf '\n'
		done
	} >"$LOGDIR/events.log" 2>/dev/null
}

# report prints the table once: analyze.py computes every figure from what
# was recorded, prints the table and writes results.md.
report() {
	local table
	((REPORTED)) && return
	REPORTED=1
	stop_sampler
	collect_events
	table=$(timeout 60 "$PYTHON" "$WORK/analyze.py" "$WORK" "$LOGDIR" 2>>"$LOG")
	REPORT_RC=$?
	if [[ -z $table ]]; then
		table="analyze.py failed (exit $REPORT_RC); see $LOG"
		REPORT_RC=1
	fi
	((REPORT_RC <= 1)) || REPORT_RC=1
	printf '%s\n' "$table" >>"$LOG"
	[[ -n ${OUT:-} ]] || log "logs: $LOGDIR"
	printf '\n%s\n' "$table"
}

cleanup() {
	stop_all
	stop_sampler
	[[ -n $GUARD_PID ]] && signal_group KILL "$GUARD_PID"
	[[ -n $NAP_PID ]] && kill "$NAP_PID" 2>/dev/null
	[[ -n $WATCHDOG_PID ]] && signal_group KILL "$WATCHDOG_PID"
	if [[ -n ${OUT:-} && -d ${WORK:-} ]]; then
		collect_events
		rm -rf "$WORK"
	fi
}

# on_signal: the budget's watchdog (SIGTERM) or an interrupt: stop
# everything and report what was measured so far.
on_signal() {
	trap ':' TERM INT HUP # already stopping
	log "stopped by SIG$1 (the ${BUDGET_S}s budget ran out, or an interrupt): reporting what was measured"
	record run.interrupted "SIG$1"
	stop_all
	report
	exit 1
}

start_watchdog() {
	# shellcheck disable=SC2016 # expanded by the inner bash
	"${SETSID[@]}" bash -c 'sleep "$1"; kill -TERM "$2"' watchdog $((BUDGET_S + 15)) "$$" \
		</dev/null >/dev/null 2>&1 &
	WATCHDOG_PID=$!
}

# ------------------------------------------------------------ the helpers

write_helpers() {
	cat >"$WORK/gpu_child.py" <<'PY'
"""PyTorch processes for gpu-check.sh; each prints JSON lines on stdout.

  gpu_child.py handoff          under `keepgpu wrap --vram 8GiB`: waits until
                                keepgpu holds, runs `keepgpu ready`, then
                                allocates and writes nearly the whole card
  gpu_child.py gpu-use          under `keepgpu wrap --vram 4GiB`: waits until
                                keepgpu holds, uses the GPU, and waits until
                                keepgpu has let go
  gpu_child.py foreign SECONDS  a foreign process: float16 matmuls

Environment: GPU_CHECK_UUID, GPU_CHECK_BASE_MIB (idle memory.used),
GPU_CHECK_HELD_MIB (what keepgpu holds).
"""
import json
import os
import subprocess
import sys
import time

GIB = 1 << 30


def emit(event, **fields):
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


def memory_used_mib():
    out = subprocess.run(
        ["nvidia-smi", "-i", os.environ["GPU_CHECK_UUID"],
         "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, timeout=20).stdout
    return int(out.split()[0])


def wait_until_held(timeout=20.0):
    """Polls nvidia-smi until memory.used shows keepgpu's hold."""
    want = int(os.environ["GPU_CHECK_BASE_MIB"]) + int(os.environ["GPU_CHECK_HELD_MIB"])
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if memory_used_mib() >= want:
                emit("held", waited_s=time.time() - t0)
                return True
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            pass
        time.sleep(0.05)
    emit("held", waited_s=time.time() - t0, timed_out=True)
    return False


def handoff():
    import torch
    wait_until_held()
    t0 = time.time()
    try:
        rc = subprocess.run(["keepgpu", "ready"], timeout=90).returncode
    except subprocess.TimeoutExpired:
        rc = -1
    t1 = time.time()
    emit("ready", rc=rc, ready_ms=(t1 - t0) * 1e3, t_call=t0)
    torch.cuda.init()
    free, total = torch.cuda.mem_get_info()
    emit("cuda", free=free, total=total, torch=torch.__version__, init_ms=(time.time() - t1) * 1e3)
    # More than could fit beside keepgpu's 8 GiB: 90 % of the card or all
    # but 4 GiB, whichever is more, in whole 2 MiB pages.
    n = max(int(0.9 * total), total - 4 * GIB) // (2 << 20) * (2 << 20)
    t2 = time.time()
    try:
        x = torch.empty(n, dtype=torch.uint8, device="cuda")
        x.fill_(1)
        torch.cuda.synchronize()
        ok = int(x[-1].item()) == 1
    except Exception as e:  # torch.cuda.OutOfMemoryError above all
        emit("alloc", ok=False, bytes=n, error=f"{type(e).__name__}: {e}"[:400])
        return 1
    emit("alloc", ok=ok, bytes=n, ms=(time.time() - t2) * 1e3)
    if ok:
        print("OK", flush=True)
    del x
    return 0 if ok and rc == 0 else 1


def gpu_use():
    import torch
    wait_until_held()
    base = int(os.environ["GPU_CHECK_BASE_MIB"]) << 20
    t0 = time.time()
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    t1 = time.time()
    # keepgpu has let go once free memory is within 2.5 GiB of the idle
    # card: its 4 GiB gone, only our context and the driver's reserve left.
    released = False
    while time.time() - t1 < 20:
        free, total = torch.cuda.mem_get_info()
        if free >= total - base - int(2.5 * GIB):
            released = True
            break
        time.sleep(0.005)
    t2 = time.time()
    # From the first CUDA call: NVML may list this process, and keepgpu
    # release, while its context is still being created.
    emit("gpu_use", released=released, t_cuda_call=t0, first_kernel_ms=(t1 - t0) * 1e3,
         release_ms=(t2 - t0) * 1e3, free=free, total=total)
    time.sleep(1.0)  # exit only once keepgpu has said why it released
    return 0 if released else 1


def foreign(seconds):
    import torch
    emit("imported")
    t0 = time.time()
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    emit("first_kernel", t_cuda_call=t0)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    n, end = 0, time.time() + seconds
    while time.time() < end:
        for _ in range(10):
            torch.matmul(a, b)
        torch.cuda.synchronize()
        n += 10
    emit("done", matmuls=n)
    return 0


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "handoff":
        sys.exit(handoff())
    if mode == "gpu-use":
        sys.exit(gpu_use())
    if mode == "foreign":
        sys.exit(foreign(float(sys.argv[2])))
    sys.exit(f"gpu_child.py: unknown mode {mode!r}")
PY

	cat >"$WORK/analyze.py" <<'PY'
"""The figures of gpu-check.sh, all computed here from what it recorded.

Usage: analyze.py WORK LOGDIR. Reads WORK/record.tsv (raw facts; times in
epoch seconds), LOGDIR/timeline.csv (every nvidia-smi sample), keepgpu's JSON
event streams (WORK/NAME.err) and the PyTorch children's JSON lines
(WORK/NAME.out). Prints the Markdown table, writes LOGDIR/results.md, exits
0 when every check with a target passed, else 1. How each input was read
goes to stderr (the log).
"""
import json
import os
import re
import statistics
import sys
import time
from datetime import datetime

WORK, LOGDIR = sys.argv[1], sys.argv[2]
BASE_TOL_MIB = 128  # "back to the baseline": within this of idle memory.used
GIB = 1 << 30


def note(msg):
    print("analyze: " + msg, file=sys.stderr)


class Missing(Exception):
    """An input of a figure was not recorded: the step failed or never ran."""


def read(name):
    try:
        with open(os.path.join(WORK, name), errors="replace") as f:
            return f.read()
    except OSError:
        return ""


REC = {}
for _line in read("record.tsv").splitlines():
    _k, _, _v = _line.partition("\t")
    REC[_k] = _v


def rec(key, kind=float):
    v = REC.get(key, "")
    if v == "":
        skipped = REC.get(key.split(".")[0] + ".skipped")
        raise Missing(f"skipped: {skipped}" if skipped else f"{key} not recorded")
    try:
        return kind(v)
    except ValueError:
        raise Missing(f"{key} = {v!r}") from None


GO_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def go_time(s):
    """Epoch seconds of a Go time in JSON (RFC 3339, nanoseconds)."""
    m = GO_TIME.match(s or "")
    if not m:
        raise ValueError(f"not a Go time: {s!r}")
    zone = "+00:00" if m[3] == "Z" else m[3]
    return datetime.fromisoformat(m[1] + zone).timestamp() + float("0." + (m[2] or "0"))


def events(name):
    """keepgpu's JSON events in WORK/NAME.err, each given "t" in epoch seconds."""
    out = []
    for line in read(name + ".err").splitlines():
        try:
            e = json.loads(line)
            if isinstance(e, dict):
                e["t"] = go_time(e.get("time"))
                out.append(e)
        except (ValueError, TypeError):
            continue
    return out


def of_kind(evs, kind, after=None):
    return [e for e in evs if e.get("event") == kind and (after is None or e["t"] >= after)]


def child(name):
    """A PyTorch child's JSON lines in WORK/NAME.out, by their "event"."""
    out = {}
    for line in read(name + ".out").splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if isinstance(d, dict) and "event" in d:
            out[d["event"]] = d
    return out


SMI_TIME = re.compile(r"^(\d{4})/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d+))?$")


def smi_time(s):
    """Epoch seconds of nvidia-smi's timestamp column (local time), or None."""
    m = SMI_TIME.match(s.strip())
    if not m:
        return None
    y, mo, d, h, mi, se = (int(x) for x in m.groups()[:6])
    return time.mktime((y, mo, d, h, mi, se, 0, 0, -1)) + float("0." + (m[7] or "0"))


def number(s):
    try:
        return float(s)
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


class Timeline:
    """The nvidia-smi samples: (time, memory.used MiB, utilization %, power W).

    Each line carries two clocks: when the line arrived through the pipe and
    nvidia-smi's own timestamp. Arrival is used when the lines came one by
    one (a steady lag); if nvidia-smi's output was buffered (a lag that
    wanders), its own timestamps are.
    """

    def __init__(self, path):
        rows = []
        try:
            with open(path, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            lines = []
        for line in lines:
            parts = [p.strip() for p in line.split(",")]
            if len(parts) < 5:
                continue
            try:
                arrived = float(parts[0])
            except ValueError:
                continue
            mem = number(parts[2])
            if mem is not None:
                rows.append((arrived, smi_time(parts[1]), mem, number(parts[3]), number(parts[4])))
        lags = sorted(r[0] - r[1] for r in rows if r[1] is not None)
        self.clock = "arrival"
        if lags:
            p5, p50, p95 = (lags[int(q * (len(lags) - 1))] for q in (0.05, 0.5, 0.95))
            note(f"timeline: {len(rows)} samples; arrival minus nvidia-smi's timestamp: "
                 f"p5 {p5 * 1e3:.0f} ms, median {p50 * 1e3:.0f} ms, p95 {p95 * 1e3:.0f} ms")
            if p95 - p5 > 0.25:
                self.clock = "nvidia-smi"
        note(f"timeline: times from {self.clock}")
        use_smi = self.clock == "nvidia-smi"
        self.samples = sorted((r[1] if use_smi and r[1] is not None else r[0],) + r[2:] for r in rows)

    def between(self, t0, t1):
        return [s for s in self.samples if t0 <= s[0] <= t1]

    def first(self, t0, pred):
        """The first sample at or after t0 for which pred holds, or None."""
        return next((s for s in self.samples if s[0] >= t0 and pred(s)), None)

    def period_ms(self):
        d = [b[0] - a[0] for a, b in zip(self.samples, self.samples[1:])]
        if not d:
            raise Missing("no nvidia-smi samples")
        return statistics.median(d) * 1e3, max(d) * 1e3


TL = Timeline(os.path.join(LOGDIR, "timeline.csv"))
ROWS = []


def figure(name, target=""):
    """Adds a row at once: the decorated function returns (measured, ok),
    ok being True, False or None (no target). A failure in one figure costs
    that row only."""
    def run(fn):
        try:
            measured, ok = fn()
        except Missing as e:
            measured, ok = f"n/a ({e})", (False if target else None)
        except Exception as e:  # a bug here must not lose the other rows
            measured, ok = f"n/a ({type(e).__name__}: {e})", (False if target else None)
        ROWS.append((name, measured, target or "–", {True: "yes", False: "**NO**", None: "–"}[ok]))
        return fn
    return run


def base():
    return rec("base.mib")


def ran(prefix):
    """Raises Missing when the step that records PREFIX.* was skipped."""
    if REC.get(prefix + ".skipped"):
        raise Missing("skipped: " + REC[prefix + ".skipped"])


def window(prefix):
    w = TL.between(rec(prefix + ".begin"), rec(prefix + ".end"))
    if not w:
        raise Missing(f"no nvidia-smi samples in the {prefix} window")
    return w


def mean_of(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def fmt(v, spec=".0f", unit=""):
    return "n/a" if v is None else f"{v:{spec}}{unit}"


def duration_ms(s):
    """Milliseconds in a Go duration string ("3.1ms", "850µs", "1.2s")."""
    units = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "μs": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}
    total, found = 0.0, False
    for value, unit in re.findall(r"([0-9.]+)(ns|us|µs|μs|ms|s|m|h)", s):
        total += float(value) * units[unit]
        found = True
    return total if found else None


def memory_mb(prefix):
    return rec(prefix + "_rss_kb") * 1024 / 1e6, rec(prefix + "_hwm_kb") * 1024 / 1e6


# ------------------------------------------------------------- the figures

@figure("idle: memory.used (the baseline) · board power")
def _():
    power = mean_of(s[3] for s in window("idle"))
    return f"{base():.0f} MiB · {fmt(power, '.0f', ' W')}", None


@figure("nvidia-smi sample period (the resolution of memory.used times)")
def _():
    med, worst = TL.period_ms()
    return f"median {med:.0f} ms · max {worst:.0f} ms ({len(TL.samples)} samples)", None


@figure("PTX loads and launches; every CUDA/NVML call succeeds",
        "holds; utilization > 0; no error, kernel-failed or telemetry event")
def _():
    ev = events("hold30")
    if not of_kind(ev, "holding"):
        errors = [e.get("message", "") for e in of_kind(ev, "error")]
        raise Missing(f"keepgpu hold did not hold: {errors[0][:200]}" if errors else
                      "keepgpu hold did not hold; see events.log")
    every = ev + events("hold60") + events("backoff")
    bad = [e for e in every if e.get("event") in ("error", "kernel-failed")]
    telemetry = of_kind(every, "telemetry")
    for e in bad + telemetry:
        note(f"event: {e.get('event')}: {e.get('message') or e.get('reason')}")
    util = mean_of(s[2] for s in window("util30"))
    ok = not bad and not telemetry and (util or 0) > 0
    return (f"held · utilization {fmt(util, '.0f', ' %')} · {len(bad)} error/kernel-failed · "
            f"{len(telemetry)} telemetry"), ok


@figure("start → VRAM held (memory.used + 2 GiB) · → keepgpu's \"holding\"", "≤ 1000 ms")
def _():
    t0, b = rec("hold30.launch"), base()
    s = TL.first(t0, lambda s: s[1] >= b + 2048)
    if s is None:
        raise Missing("memory.used never rose by 2 GiB")
    holding = of_kind(events("hold30"), "holding")
    own = (holding[0]["t"] - t0) * 1e3 if holding else None
    ms = (s[0] - t0) * 1e3
    return f"{ms:.0f} ms · {fmt(own, '.0f', ' ms')}", ms <= 1000 and own is not None and own <= 1000


@figure("VRAM held as NVML sees it (memory.used − baseline)", "2.00 GiB (--vram) + a context ≤ 1 GiB")
def _():
    held = statistics.median(s[1] for s in window("util30")) - base()
    pid = rec("hold30.pid", int)
    own = None
    for line in read("hold30.apps.csv").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[0] == str(pid):
            own = number(parts[1])
    return (f"{held / 1024:.2f} GiB (the holder's process: {fmt(own and own / 1024, '.2f', ' GiB')})",
            2048 <= held <= 3072)


for _util in (30, 60):
    @figure(f"utilization.gpu at --util {_util} ({'10' if _util == 30 else '5'} s)", f"{_util} ± 5 %")
    def _(util=_util):
        u = [s[2] for s in window(f"util{util}") if s[2] is not None]
        if not u:
            raise Missing("no utilization readings")
        m = statistics.fmean(u)
        return f"mean {m:.1f} % · sd {statistics.pstdev(u):.1f} · {len(u)} samples", abs(m - util) <= 5


@figure("board power: idle · --util 30 · --util 60")
def _():
    def power(prefix):
        try:
            return mean_of(s[3] for s in window(prefix))
        except Missing:
            return None
    return " · ".join(fmt(power(p), ".0f", " W") for p in ("idle", "util30", "util60")), None


@figure("kernel paused with keepgpu alone on the GPU", "0 times")
def _():
    if not of_kind(events("hold30"), "holding"):
        raise Missing("keepgpu hold never held")
    n = len(of_kind(events("hold30"), "paused")) + len(of_kind(events("hold60"), "paused"))
    launch = REC.get("foreign.launch")
    if launch:
        n += len([e for e in of_kind(events("backoff"), "paused") if e["t"] < float(launch)])
    return f"{n} times", n == 0


@figure("holder memory (keepgpu hold, 2 GiB on 1 GPU)", "VmHWM ≤ 40 MB")
def _():
    rss, hwm = memory_mb("hold30.holder")
    return f"VmRSS {rss:.1f} MB · VmHWM {hwm:.1f} MB", hwm <= 40


@figure("keepgpu list-gpus --json while holding", "lists the holder's pid")
def _():
    if rec("hold30.list_gpus_rc", int) != 0:
        return f"exit {REC['hold30.list_gpus_rc']}: {read('hold30.list-gpus.json')[:200]}", False
    gpus = json.loads(read("hold30.list-gpus.json"))["gpus"]
    g = next((g for g in gpus if g.get("uuid") == REC.get("env.uuid")), None)
    if g is None:
        raise Missing("the GPU is not in the list")
    pids = [p.get("pid") for p in g.get("processes") or []]
    used = g.get("memory_used")
    used = "n/a" if used is None else f"{used / (1 << 20):.0f} MiB"
    return (f"memory_used {used} · utilization {g.get('utilization')} % · processes {pids}",
            rec("hold30.pid", int) in pids)


def release(prefix, asked):
    t0, exited, rc = rec(f"{prefix}.{asked}"), rec(f"{prefix}.exited"), rec(f"{prefix}.rc", int)
    b = base()
    back = TL.first(t0, lambda s: s[1] <= b + BASE_TOL_MIB)
    back_ms = (back[0] - t0) * 1e3 if back else None
    # keepgpu's summary "released" event carries its own release time.
    own = next((e["release_ms"] for e in of_kind(events(prefix), "released") if "release_ms" in e), None)
    exit_ms = (exited - t0) * 1e3
    period, _ = TL.period_ms()
    ok = rc == 0 and exit_ms <= 10 and back_ms is not None and back_ms <= 10 + period
    return (f"{exit_ms:.1f} ms · {fmt(back_ms, '.0f', ' ms')} (keepgpu's own release: "
            f"{fmt(own, '.1f', ' ms')}{'' if rc == 0 else f'; exit {rc}'})"), ok


@figure("SIGTERM → holder exited · → memory.used at the baseline", "≤ 10 ms · ≤ 10 ms + 1 sample")
def _():
    return release("hold30", "term")


@figure("--until-file appears → holder exited · → memory.used at the baseline", "≤ 10 ms · ≤ 10 ms + 1 sample")
def _():
    return release("hold60", "touch")


@figure("SIGTERM at --util 100, kernel running (the stop word) → holder exited · → memory.used at the baseline",
        "≤ 10 ms · ≤ 10 ms + 1 sample")
def _():
    return release("hold100", "term")


@figure("`keepgpu ready` in a PyTorch child under wrap (returns once the holder exited)", "≤ 10 ms")
def _():
    ran("handoff")
    r = child("handoff").get("ready")
    if r is None:
        raise Missing("the child never called keepgpu ready; see events.log")
    m = re.search(r"released the GPUs after \S+ \(keepgpu ready; (\S+) to release\)", read("handoff.err"))
    inner = f"wrap's SIGTERM → holder exited: {m[1]}" if m else "no release line from wrap"
    status = "" if r["rc"] == 0 else f"; exit {r['rc']}"
    return f"{r['ready_ms']:.1f} ms ({inner}){status}", r["rc"] == 0 and r["ready_ms"] <= 10


@figure("PyTorch after `keepgpu ready`: free memory, then allocate and write",
        "succeeds (it could not with keepgpu's 8 GiB still held)")
def _():
    c = child("handoff")
    rc = rec("handoff.rc", int)
    cuda, alloc = c.get("cuda"), c.get("alloc")
    if cuda is None:
        raise Missing(f"the child never reached CUDA (exit {rc}); see events.log")
    free = f"free {cuda['free'] / GIB:.1f} of {cuda['total'] / GIB:.1f} GiB"
    if alloc is None:
        return f"{free} · no allocation (exit {rc})", False
    if not alloc.get("ok"):
        return f"{free} · {alloc['bytes'] / GIB:.1f} GiB failed: {alloc.get('error', '')[:120]}", False
    return (f"{free} · {alloc['bytes'] / GIB:.1f} GiB allocated and written in {alloc['ms']:.0f} ms · exit {rc}",
            rc == 0)


@figure("wrapper · its holder memory (keepgpu wrap, 8 GiB)", "VmHWM ≤ 15 MB · ≤ 40 MB")
def _():
    wrss, whwm = memory_mb("handoff.wrap")
    hrss, hhwm = memory_mb("handoff.holder")
    return (f"VmRSS {wrss:.1f} · VmHWM {whwm:.1f} MB · VmRSS {hrss:.1f} · VmHWM {hhwm:.1f} MB",
            whwm <= 15 and hhwm <= 40)


@figure("a foreign PyTorch process → kernel paused (--interval 500ms)",
        "≤ 1.5 s (interval + 1 NVML sample)")
def _():
    ran("foreign")
    first = child("foreign").get("first_kernel")
    if first is None:
        raise Missing("the foreign process never ran a kernel; see events.log")
    paused = of_kind(events("backoff"), "paused", after=rec("foreign.launch"))
    if not paused:
        raise Missing("no paused event")
    p = paused[0]
    after_kernel, after_call = p["t"] - first["t"], p["t"] - first["t_cuda_call"]
    return (f"{after_kernel:.2f} s after its first kernel finished ({after_call:.2f} s after its first "
            f"CUDA call) · {p.get('reason', '')}"), after_kernel <= 1.5


@figure("the foreign process exits → kernel resumed", "≤ 1.5 s")
def _():
    exited = rec("foreign.exited")
    launch = rec("foreign.launch")
    resumed = of_kind(events("backoff"), "resumed", after=exited)
    flaps = len(of_kind(events("backoff"), "resumed", after=launch)) - len(resumed)
    if not resumed:
        raise Missing("no resumed event after it exited")
    d = resumed[0]["t"] - exited
    return f"{d:.2f} s{'' if not flaps else f' (it also resumed {flaps}× while the process ran)'}", d <= 1.5


@figure("the wrapped command uses the GPU → keepgpu releases",
        "wrap says so; the 4 GiB come back; exit 0")
def _():
    ran("gpuuse")
    g = child("gpuuse").get("gpu_use")
    rc = rec("gpuuse.rc", int)
    said = re.search(r"released the GPUs after \S+ \(the command started using gpu \d+", read("gpuuse.err"))
    if g is None:
        return f"the child never used the GPU (exit {rc}); wrap said so: {'yes' if said else 'no'}", False
    back = f"{g['release_ms']:.0f} ms" if g.get("released") else "never"
    return (f"its first CUDA call → the 4 GiB back: {back} · wrap said so: {'yes' if said else 'no'} · exit {rc}",
            bool(said) and bool(g.get("released")) and rc == 0)


# ------------------------------------------------------------------ output

def header():
    r = REC.get
    lines = [
        f"date: {r('env.date', '?')}",
        f"GPU: {r('env.gpu_name', '?')} ({r('env.uuid', '?')}), {r('env.mem_total_mib', '?')} MiB, "
        f"driver {r('env.driver', '?')}, compute mode {r('env.compute_mode', '?')}, "
        f"persistence {r('env.persistence', '?')}",
        f"host: {r('env.host', '?')}",
        f"keepgpu: {r('env.keepgpu', '?')} · PyTorch: {r('env.torch', '?')}",
        f"single measurements; memory.used, utilization.gpu and power.draw from one "
        f"`nvidia-smi -lms {r('env.sample_ms', '?')}` (times: {TL.clock}); MB = 10⁶ bytes",
    ]
    if r("env.other_processes"):
        lines.append(f"other processes on the GPU at the start: {r('env.other_processes')}")
    if r("run.interrupted"):
        lines.append(f"the run was cut short ({r('run.interrupted')}): later rows are n/a")
    return lines


def main():
    checks = [row for row in ROWS if row[2] != "–"]
    passed = sum(row[3] == "yes" for row in checks)
    out = ["## keepgpu on a real GPU (scripts/gpu-check.sh)", ""]
    out += ["- " + h for h in header()]
    out += ["", "| figure | measured | target | ok? |", "|---|---|---|---|"]
    out += [f"| {f} | {m.replace('|', '/')} | {t} | {ok} |" for f, m, t, ok in ROWS]
    out += ["", f"{passed} of {len(checks)} checks passed."]
    text = "\n".join(out)
    print(text)
    with open(os.path.join(LOGDIR, "results.md"), "w") as f:
        f.write(text + "\n")
    return 0 if passed == len(checks) else 1


sys.exit(main())
PY
}

# -------------------------------------------------------------------- main

main() {
	if ! command -v nvidia-smi >/dev/null 2>&1; then
		echo "no NVIDIA GPU here"
		exit 2
	fi
	if [[ $# -ne 1 || ! -f $1 || ! -x $1 ]]; then
		echo "usage: bash scripts/gpu-check.sh KEEPGPU_BINARY (build it first: go build -o .gpu/keepgpu .)" >&2
		exit 64
	fi
	if ! timeout 60 nvidia-smi -L >/dev/null 2>&1; then
		echo "no NVIDIA GPU here (nvidia-smi -L fails)"
		exit 2
	fi
	if ! command -v "$PYTHON" >/dev/null 2>&1; then
		echo "gpu-check.sh needs $PYTHON with PyTorch (GPU_CHECK_PYTHON names another)" >&2
		exit 64
	fi
	KG=$(readlink -f -- "$1")
	SETSID=()
	command -v setsid >/dev/null 2>&1 && SETSID=(setsid)

	tick
	START_US=$NOW_US
	DEADLINE_US=$((START_US + BUDGET_S * 1000000))
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX") || exit 1
	LOGDIR=${OUT:-$WORK}
	mkdir -p "$LOGDIR" || exit 1
	LOG=$LOGDIR/gpu-check.log
	TIMELINE=$LOGDIR/timeline.csv
	RECORD=$WORK/record.tsv
	: >"$LOG"
	: >"$TIMELINE"
	: >"$RECORD"
	trap cleanup EXIT
	trap 'on_signal TERM' TERM
	trap 'on_signal INT' INT
	trap 'on_signal HUP' HUP
	start_watchdog

	# `keepgpu` on PATH for `keepgpu ready`; no KEEPGPU_* defaults from outside.
	mkdir "$WORK/bin" && ln -s "$KG" "$WORK/bin/keepgpu"
	export PATH="$WORK/bin:$PATH"
	local v
	for v in $(compgen -e | grep '^KEEPGPU_'); do
		unset "$v"
	done
	write_helpers
	log "gpu-check: keepgpu $KG; budget ${BUDGET_S}s; logs in $LOGDIR"

	check_environment
	sample_idle
	check_hold_util30
	check_util60_until_file
	check_stop_util100
	check_handoff
	check_backoff
	check_gpu_use

	log "done; stopping everything"
	stop_all
	report
	exit "$REPORT_RC"
}

main "$@"
