#!/usr/bin/env bash
# AMD's own ROCm user-space libraries, checked without a GPU: Debian
# bookworm's libamdhip64-5 and librocm-smi64-1 (ROCm 5.2) and the library
# packages they depend on that this machine lacks are fetched with
# apt-get download and unpacked with dpkg-deb -x into a temporary
# directory; nothing is installed. Then, one line per check and a summary
# at the end (exit 1 if any failed):
#
#   fetch    the packages download and unpack
#   ldd      every unpacked library finds all of its own dependencies
#   hip      keepgpu's HIP loader (hip.Load, through LD_LIBRARY_PATH) finds
#            every entry point it resolves, and the runtime's answer without
#            a device comes through as hipErrorNoDevice
#   rocm-smi keepgpu's ROCm SMI loader finds every entry point it needs;
#            rsmi_init fails cleanly, and what ROCm SMI writes to standard
#            error is kept off it
#   cli      the keepgpu binary (CGO_ENABLED=0) with these libraries alone:
#            list-gpus and hold say plainly that there is no AMD GPU
#            (hipErrorNoDevice), wrap runs the command (and --require-gpu
#            refuses to), nothing crashes, and every line on standard error
#            is keepgpu's own
#
#   scripts/rocm-test.sh [--keep]
#
# Needs Go, apt-get and dpkg-deb, and Debian's bookworm main in apt's
# sources (an apt-get update may be needed first). --keep leaves the
# temporary directory in place.
set -euo pipefail
cd "$(dirname "$0")/.."

keep=0
case ${1:-} in
--keep) keep=1 ;;
-h | --help)
	sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
	;;
"") ;;
*)
	echo "rocm-test: unknown argument $1" >&2
	exit 2
	;;
esac

begin=$(date +%s)
W=$(mktemp -d /tmp/kgrocm.XXXXXX)
cleanup() {
	if [ "$keep" = 1 ]; then
		echo "rocm-test: kept $W"
	else
		rm -rf "$W"
	fi
}
trap cleanup EXIT

# shellcheck source=scripts/lib/check.sh
. scripts/lib/check.sh
summary() {
	echo "rocm-test: $passed passed, $failed failed, $(($(date +%s) - begin)) s"
	[ "$failed" = 0 ]
}

# 1. fetch: the two packages and the libraries they need that are not
# installed here (apt-cache's recursive Depends, virtual packages left out).
roots=(libamdhip64-5 librocm-smi64-1)
mapfile -t deps < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
	--no-breaks --no-replaces --no-enhances "${roots[@]}" 2>/dev/null | grep -v '^[ <]' | sort -u)
want=()
for p in "${deps[@]}"; do
	if [[ " ${roots[*]} " == *" $p "* ]] || ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		want+=("$p")
	fi
done
mkdir -p "$W/debs" "$W/root"
if [ ${#deps[@]} = 0 ] || ! log=$(cd "$W/debs" && apt-get -qq download "${want[@]}" 2>&1); then
	fail "fetch: apt-get download ${want[*]:-${roots[*]}} (is bookworm main in apt's sources? apt-get update?)" "${log:-apt-cache knows no $roots}"
	summary
	exit 1
fi
for deb in "$W"/debs/*.deb; do
	dpkg-deb -x "$deb" "$W/root"
done
hipver=$(dpkg-deb -f "$W"/debs/libamdhip64-5_*.deb Version)
pass "fetch: ${#want[@]} packages ($(du -ch "$W"/debs/*.deb | tail -n 1 | cut -f1) of .deb files): ${want[*]}"
note "fetch: libamdhip64-5 $hipver, librocm-smi64-1 $(dpkg-deb -f "$W"/debs/librocm-smi64-1_*.deb Version)"

libpath=$(find "$W/root" -name '*.so*' -type f -printf '%h\n' | sort -u | paste -sd:)

# 2. ldd
unresolved=$(find "$W/root" -name '*.so*' -type f -exec env LD_LIBRARY_PATH="$libpath" ldd {} + 2>&1 |
	grep 'not found' | sort -u || true)
if [ -z "$unresolved" ]; then
	pass "ldd: the $(find "$W/root" -name '*.so*' -type f | wc -l) unpacked libraries find all their dependencies"
else
	fail "ldd: unpacked libraries miss dependencies" "$unresolved"
fi

# 3, 4. keepgpu's loaders, built as test binaries and run with the
# unpacked libraries on the search path and no fake in front of them.
# realtest NAME PACKAGE: runs PACKAGE's TestRealLibrary; each subtest is a
# check, and what it logged is shown as notes.
realtest() {
	local name=$1 pkg=$2 out rc=0 sub
	if ! out=$(go test -c -o "$W/$name.test" "$pkg" 2>&1); then
		fail "$name: go test -c $pkg" "$out"
		return
	fi
	out=$(env -u FAKEGPU_DIR -u ROCR_VISIBLE_DEVICES -u HIP_VISIBLE_DEVICES KEEPGPU_ROCM_LIBS="$W/root" \
		LD_LIBRARY_PATH="$libpath" timeout 120 "$W/$name.test" -test.run '^TestRealLibrary$' -test.v 2>&1) || rc=$?
	for sub in symbols no_device; do
		if grep -q -- "--- PASS: TestRealLibrary/$sub" <<<"$out"; then
			pass "$name: ${what[$name/$sub]}"
		else
			fail "$name: ${what[$name/$sub]} (exit status $rc)" "$out"
		fi
	done
	grep -E '^ +real_test\.go:[0-9]+: ' <<<"$out" | sed -E 's/^ +real_test\.go:[0-9]+: //' | while IFS= read -r l; do note "$name: $l"; done
}
declare -A what=(
	[hip/symbols]="every HIP entry point keepgpu resolves is exported by ROCm $hipver's libamdhip64"
	[hip/no_device]="without a device, loading answers the runtime's own hipErrorNoDevice"
	[rocm-smi/symbols]="every ROCm SMI entry point keepgpu needs is exported"
	[rocm-smi/no_device]="without a driver, rsmi_init fails cleanly and ROCm SMI's stderr stays off the terminal"
)
realtest hip ./hip/
realtest rocm-smi ./rocmsmi/

# 5. cli: the keepgpu binary, as a user on an AMD node without a GPU runs
# it. kg RC REGEX DESC ARGS...: runs keepgpu ARGS with the unpacked
# libraries alone on the search path; passes when it exits RC, its
# standard output and error together match REGEX, no line of its standard
# error is someone else's, and it did not crash.
if ! out=$(CGO_ENABLED=0 go build -o "$W/keepgpu" . 2>&1); then
	fail "cli: CGO_ENABLED=0 go build" "$out"
else
	kg() {
		local want=$1 re=$2 desc=$3 rc=0 out err
		shift 3
		out=$(cd "$W" && env -u FAKEGPU_DIR -u ROCR_VISIBLE_DEVICES -u HIP_VISIBLE_DEVICES -u CUDA_VISIBLE_DEVICES \
			-u KEEPGPU_PLATFORM -u KEEP_GPU_PLATFORM XDG_RUNTIME_DIR="$W" LD_LIBRARY_PATH="$libpath" \
			timeout 60 "$W/keepgpu" "$@" 2>"$W/stderr") || rc=$?
		err=$(cat "$W/stderr")
		if [ "$rc" = "$want" ] && grep -Eq -- "$re" <<<"$out"$'\n'"$err" &&
			! grep -Evq '^keepgpu: ' <<<"${err:-keepgpu: }" && ! grep -Eq 'panic|SIGSEGV|core dumped' <<<"$err"; then
			pass "cli: $desc"
			note "cli: keepgpu $*: $(head -c 300 <<<"${err:-$out}")"
		else
			fail "cli: $desc (keepgpu $*: exit status $rc, want $want)" "stdout: $out" "stderr: $err"
		fi
	}
	kg 0 '^no GPU: no AMD GPU: hipGetDeviceCount: hipErrorNoDevice' \
		"list-gpus lists no GPU and says the runtime's hipErrorNoDevice" list-gpus
	kg 0 '"note": "no AMD GPU: hipGetDeviceCount: hipErrorNoDevice' \
		"list-gpus --json --platform rocm: an empty list, and why" list-gpus --json --platform rocm
	kg 1 '^keepgpu: holding nothing: no AMD GPU: hipGetDeviceCount: hipErrorNoDevice' \
		"hold fails with hipErrorNoDevice" hold
	kg 0 '^ran$' "wrap runs the command, with one warning" wrap -- sh -c 'sleep 0.5; echo ran'
	kg 125 '^keepgpu: --require-gpu: holding nothing: no AMD GPU: .*hipErrorNoDevice' \
		"wrap --require-gpu refuses to start the command" wrap --require-gpu -- echo ran
	kg 1 '^keepgpu: holding nothing: libcuda.so.1 not found' "hold --platform cuda names the missing NVIDIA driver" hold --platform cuda
fi

summary
