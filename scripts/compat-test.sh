#!/usr/bin/env bash
# Where keepgpu must run, checked without a GPU: builds keepgpu with
# CGO_ENABLED=0 for linux/amd64 and linux/arm64 and then checks, one line
# per check and a summary at the end (exit 1 if any failed):
#
#   build    both binaries build without cgo; no glibc symbol version above 2.17
#   arm64    the arm64 binary under qemu-user: version, wrap without a driver,
#            hold and list-gpus against the fake driver cross-built for arm64
#   glibc    in a Debian 11 root (glibc 2.31, debootstrap): version, wrap's
#            exit status, hold's error without a driver
#   nvidia   NVIDIA's own libcuda1, libnvidia-ml1 and libnvidia-ptxjitcompiler1
#            535 from Debian non-free, unpacked into a temporary directory and
#            loaded with no kernel module: every symbol keepgpu names is
#            there, and the driver's own errors come through
#   ptx      cuda/keepalive.ptx assembled by ptxas (nvidia-cuda-toolkit 11.8)
#            for sm_50, sm_70, sm_80 and sm_90; cuobjdump -sass shows one spin
#            loop on SR_GLOBALTIMER whose only memory instruction is one
#            volatile load of the stop word (LDG.E.CV, LDG.E.STRONG.SYS): no
#            store, no other load
#   release  a goreleaser v2.15.1 snapshot (.goreleaser.yaml): both tarballs
#            hold a working keepgpu, checksums.txt verifies; a build of a
#            tagged commit prints the tag as its version, and so does
#            `go install module@tag` from a module proxy in a directory
#
#   scripts/compat-test.sh [--keep] [CHECK...]     (default: all of them)
#
# Needs Go, root (apt-get installs what is missing: qemu-user-static,
# gcc-aarch64-linux-gnu, debootstrap...; debootstrap and chroot; registering
# qemu's binfmt handler for the arm64 holder if none is) and Debian's mirror
# (the host in /etc/apt/sources.list*, or KEEPGPU_DEBIAN_MIRROR). NVIDIA's
# packages are fetched with a private apt configuration that lists bookworm's
# non-free component; nothing of it reaches the system's apt sources, and the
# libraries are never installed. KEEPGPU_COMPAT_CACHE names a directory that
# keeps the Debian 11 root, the .deb files and goreleaser between runs
# (default: a temporary directory, removed at the end). --keep leaves the
# temporary directory in place. With KEEPGPU_ARTIFACTS set, the SASS listings
# are saved there.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

all=(build arm64 glibc nvidia ptx release)
keep=0 only=()
while [ $# -gt 0 ]; do
	case $1 in
	--keep) keep=1 ;;
	-h | --help)
		sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	build | arm64 | glibc | nvidia | ptx | release) only+=("$1") ;;
	*)
		echo "compat-test: unknown argument $1 (checks: ${all[*]})" >&2
		exit 2
		;;
	esac
	shift
done
[ ${#only[@]} -gt 0 ] || only=("${all[@]}")
wanted() { [[ " ${only[*]} " == *" $1 "* ]]; }

begin=$(date +%s)
W=$(mktemp -d /tmp/kgcompat.XXXXXX)
chmod 755 "$W"
cache=${KEEPGPU_COMPAT_CACHE:-$W/cache}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
binfmt_registered=0 binfmt_mounted=0
bg_pids=()
cleanup() {
	local pid
	for pid in "${bg_pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	if [ "$binfmt_registered" = 1 ]; then
		echo -1 >/proc/sys/fs/binfmt_misc/qemu-aarch64 || true
	fi
	if [ "$binfmt_mounted" = 1 ]; then
		umount /proc/sys/fs/binfmt_misc || true
	fi
	if [ "$keep" = 1 ]; then
		echo "compat-test: kept $W"
	else
		rm -rf "$W"
	fi
}
trap cleanup EXIT

# shellcheck source=scripts/lib/check.sh
. scripts/lib/check.sh

# expect NAME STATUS REGEX CMD...: runs CMD (at most 120 s) and passes if it
# exits with STATUS and each line of REGEX, an extended regular expression,
# matches a line of its stdout and stderr. The output is kept in $out.
out=
expect() {
	local name=$1 want=$2 re=$3 rc=0 r matched=1
	shift 3
	out=$(timeout 120 "$@" 2>&1) || rc=$?
	while IFS= read -r r; do
		grep -Eq -- "$r" <<<"$out" || matched=0
	done <<<"$re"
	if [ "$rc" = "$want" ] && [ "$matched" = 1 ]; then
		pass "$name"
	else
		fail "$name" "exit status $rc (want $want); output (want /$re/):" "$out"
	fi
}

# need PACKAGE...: installs the Debian packages that are missing (as root),
# or fails the run naming them.
apt_updated=0
need() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
	done
	[ ${#missing[@]} -gt 0 ] || return 0
	if [ "$(id -u)" != 0 ]; then
		echo "compat-test: missing packages ${missing[*]}: install them (apt-get install ${missing[*]}) or run as root" >&2
		exit 2
	fi
	note "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if [ "$apt_updated" = 0 ]; then
		apt-get -o DPkg::Lock::Timeout=300 update -qq
		apt_updated=1
	fi
	apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

need_root() {
	if [ "$(id -u)" != 0 ]; then
		echo "compat-test: the $1 checks need root ($2); run as root or leave them out" >&2
		exit 2
	fi
}

# The Debian mirror this machine's apt uses.
mirror=${KEEPGPU_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
	mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\/.*\/debian\/?$/) { print $i; exit } }') || true
fi
if [ -z "$mirror" ]; then
	mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
		awk '$1 == "URIs:" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\/.*\/debian\/?$/) { print $i; exit } }') || true
fi
mirror=${mirror:-http://deb.debian.org/debian}
mirror=${mirror%/}

command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || {
	echo "compat-test: needs Go (go not on PATH nor in /usr/local/go/bin)" >&2
	exit 2
}

# Everything the checks need is installed first, so that the checks below
# only run and time keepgpu.
pkgs=(binutils)
wanted arm64 && pkgs+=(qemu-user-static libc6-arm64-cross libc6-dev-arm64-cross gcc-aarch64-linux-gnu)
wanted glibc && pkgs+=(debootstrap)
{ wanted glibc || wanted nvidia || wanted ptx; } && pkgs+=(debian-archive-keyring)
wanted release && pkgs+=(git)
wanted arm64 && need_root arm64 "apt-get; qemu's binfmt handler runs the arm64 holder that wrap starts"
wanted glibc && need_root glibc "debootstrap and chroot"
need "${pkgs[@]}"

# goreleaser takes minutes to compile on two cores: start it now, in the
# background, and keep it in the cache.
goreleaser_version=v2.15.1
gobin=$cache/gobin-$goreleaser_version
if wanted release && [ ! -x "$gobin/goreleaser" ]; then
	CGO_ENABLED=0 GOBIN=$gobin go install "github.com/goreleaser/goreleaser/v2@$goreleaser_version" >"$W/goreleaser-install.log" 2>&1 &
	goreleaser_pid=$!
	bg_pids+=("$goreleaser_pid")
fi

# fetch_debs DIR PACKAGE...: downloads the .deb files of bookworm non-free's
# PACKAGEs into DIR (skipping those already there) through a private apt
# configuration that lists only that component, leaving the system's apt
# sources, lists and cache untouched.
fetch_debs() {
	local dir=$1 p apt=$cache/apt missing=()
	shift
	for p in "$@"; do
		compgen -G "$dir/${p}_*.deb" >/dev/null || missing+=("$p")
	done
	[ ${#missing[@]} -gt 0 ] || return 0
	mkdir -p "$dir" "$apt/lists/partial" "$apt/archives/partial"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm non-free" >"$apt/sources.list"
	local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
		-o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
		-o Debug::NoLocking=1 -o APT::Sandbox::User="$(id -un)" -o Acquire::Languages=none -o Acquire::Retries=3
		-o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
		-o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
		-o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false
		-o Acquire::IndexTargets::deb::CNF::DefaultEnabled=false)
	apt-get "${opts[@]}" -qq update
	(cd "$dir" && apt-get "${opts[@]}" -qq download "${missing[@]}")
}

# keepgpu, built the way the release is built.
declare -A bin
build() {
	local arch=$1 t0 rc=0 log
	t0=$(date +%s%N)
	log=$(cd "$repo" && CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath \
		-ldflags "-s -w -X main.version=compat-test" -o "$W/keepgpu-$arch" . 2>&1) || rc=$?
	if [ "$rc" = 0 ]; then
		bin[$arch]=$W/keepgpu-$arch
		pass "build: CGO_ENABLED=0 GOARCH=$arch go build ($((($(date +%s%N) - t0) / 1000000)) ms, $(($(stat -c %s "$W/keepgpu-$arch") / 1024)) KiB)"
	else
		fail "build: CGO_ENABLED=0 GOARCH=$arch go build" "$log"
	fi
}
# glibc_floor FILE: the highest GLIBC_x.y symbol version FILE needs, or "none".
glibc_floor() {
	{ readelf -V --wide "$1" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' || true; } |
		sed 's/GLIBC_//' | sort -uV | tail -n 1 | grep . || echo none
}
# within FLOOR MAX: FLOOR is "none" or a version not above MAX.
within() { [ "$1" = none ] || [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | tail -n 1)" = "$2" ]; }

# 1. build
if wanted build || wanted arm64; then build arm64; fi
if wanted build || wanted glibc || wanted nvidia; then build amd64; fi
for arch in amd64 arm64; do
	[ -n "${bin[$arch]:-}" ] || continue
	floor=$(glibc_floor "${bin[$arch]}")
	interp=$(readelf -l "${bin[$arch]}" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
	if within "$floor" 2.17; then
		pass "build: $arch binary: $([ "$floor" = none ] && echo "no GLIBC_ symbol version" || echo "GLIBC_$floor at most") (readelf -V; limit 2.17), interpreter ${interp:-none}"
	else
		fail "build: $arch binary needs GLIBC_$floor, above 2.17" "$(readelf -V --wide "${bin[$arch]}" | grep 'Name: GLIBC_')"
	fi
done

# 2. arm64 under qemu-user
if wanted arm64; then
	t0=$(date +%s)
	sysroot=/usr/aarch64-linux-gnu
	k=${bin[arm64]:-}
	if [ -z "$k" ]; then
		fail "arm64: no arm64 binary to run"
	else
		# The holder that wrap starts is keepgpu executing itself: the kernel
		# needs qemu's binfmt handler for that. Debian registers it at boot
		# (systemd-binfmt); register it here if nothing did.
		if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
			if [ ! -e /proc/sys/fs/binfmt_misc/register ] &&
				mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; then
				binfmt_mounted=1
			fi
			if cat /usr/lib/binfmt.d/qemu-aarch64.conf >/proc/sys/fs/binfmt_misc/register; then
				binfmt_registered=1
				note "arm64: registered qemu-aarch64 with binfmt_misc for this run"
			else
				fail "arm64: registering qemu-aarch64 with binfmt_misc (wrap's holder cannot start without it)"
			fi
		fi
		export QEMU_LD_PREFIX=$sysroot # -L for every emulated process, the holder too
		q=(qemu-aarch64-static -L "$sysroot")
		expect "arm64: keepgpu version under qemu-aarch64-static" 0 '^keepgpu compat-test \(go[0-9.]+, linux/arm64\)$' "${q[@]}" "$k" version
		# The command outlives the holder's start, so that the holder's
		# reason is shown rather than cut short by the command's exit.
		expect "arm64: wrap without a driver runs the command, passes exit status 7 through" 7 \
			'^the command ran$' "${q[@]}" "$k" wrap -- sh -c 'echo the command ran; sleep 3; exit 7'
		grep -q 'holding nothing: libcuda.so.1 not found' <<<"$out" &&
			pass "arm64: wrap says why it holds nothing (libcuda.so.1 not found)" ||
			fail "arm64: wrap says why it holds nothing" "$out"

		# The fake driver, cross-compiled as internal/fakegpu builds it.
		fl=$W/fake-arm64
		mkdir -p "$fl"
		rc=0
		log=$(for lib in libcuda.so.1:fakecuda.c libnvidia-ml.so.1:fakenvml.c; do
			aarch64-linux-gnu-gcc -shared -fPIC -O2 -Wall -Werror -Wl,-soname,"${lib%%:*}" \
				-o "$fl/${lib%%:*}" "internal/fakegpu/csrc/${lib#*:}" -lpthread || exit 1
		done 2>&1) || rc=$?
		if [ "$rc" = 0 ] && readelf -h "$fl/libcuda.so.1" | grep -q AArch64; then
			pass "arm64: fake libcuda.so.1 and libnvidia-ml.so.1 cross-compiled with aarch64-linux-gnu-gcc"
		else
			fail "arm64: cross-compiling the fake driver libraries" "$log"
		fi
		(cd "$repo" && CGO_ENABLED=0 go build -o "$W/fakegpu" ./internal/fakegpu/cmd/fakegpu)
		node=$W/node-arm64
		"$W/fakegpu" init "$node" 2
		# The emulated dynamic loader searches LD_LIBRARY_PATH: arm64 libraries only.
		fenv=(env FAKEGPU_DIR="$node" LD_LIBRARY_PATH="$fl")
		expect "arm64: list-gpus shows the fake node's 2 GPUs" 0 "$("$W/fakegpu" uuid "$node" 1)" \
			"${fenv[@]}" "${q[@]}" "$k" list-gpus
		expect "arm64: hold --max-hold 1s holds 256 MiB on each GPU and releases" 0 \
			$'holding 2 GPUs: gpu 0 .*256\\.0 MiB.*gpu 1 .*256\\.0 MiB\nreleased 2 GPUs after' \
			"${fenv[@]}" "${q[@]}" "$k" hold --vram 256MiB --max-hold 1s
		# A holder in one emulated process, seen through NVML by another.
		"${fenv[@]}" "${q[@]}" "$k" hold --vram 512MiB --until-file "$W/handover" >"$W/hold-arm64.log" 2>&1 &
		hold_pid=$!
		bg_pids+=("$hold_pid")
		for _ in $(seq 200); do
			grep -q 'holding 2 GPUs' "$W/hold-arm64.log" && break
			kill -0 "$hold_pid" 2>/dev/null || break
			sleep 0.1
		done
		rc=0
		out=$("${fenv[@]}" "${q[@]}" "$k" list-gpus --json 2>&1) || rc=$?
		seen=$(tr -d ' \n' <<<"$out" | grep -o "\"processes\":\[{\"pid\":$hold_pid,\"memory_used\":536870912}\]" | wc -l)
		[ "$rc" = 0 ] && [ "$seen" = 2 ] &&
			pass "arm64: list-gpus --json in another process sees the holder (pid $hold_pid, 512 MiB) on both GPUs" ||
			fail "arm64: list-gpus --json in another process sees the holder (pid $hold_pid, 512 MiB) on both GPUs" "exit status $rc" "$out"
		touch "$W/handover"
		rc=0
		timeout 30 tail --pid="$hold_pid" -f /dev/null || rc=$?
		wait "$hold_pid" || rc=$?
		if [ "$rc" = 0 ] && grep -q 'released 2 GPUs' "$W/hold-arm64.log"; then
			pass "arm64: hold --until-file releases when the file appears, exit status 0"
		else
			fail "arm64: hold --until-file releases when the file appears (exit status $rc)" "$(cat "$W/hold-arm64.log")"
		fi
		procs=$("$W/fakegpu" procs "$node" 0 | awk '$5 == "true"')
		[ -z "$procs" ] && pass "arm64: no live process left on the fake GPUs" ||
			fail "arm64: processes left on GPU 0" "$procs"
		unset QEMU_LD_PREFIX
	fi
	note "arm64: $(($(date +%s) - t0)) s"
fi

# 3. An old glibc: Debian 11
if wanted glibc; then
	t0=$(date +%s)
	root=$cache/bullseye
	if [ ! -e "$root/.complete" ]; then
		rm -rf "$root" "$root.tmp"
		t1=$(date +%s)
		if debootstrap --variant=minbase bullseye "$root.tmp" "$mirror" >"$W/debootstrap.log" 2>&1; then
			touch "$root.tmp/.complete"
			mv "$root.tmp" "$root"
			note "glibc: debootstrap --variant=minbase bullseye from $mirror took $(($(date +%s) - t1)) s ($(du -sm "$root" | cut -f1) MB)"
		else
			fail "glibc: debootstrap --variant=minbase bullseye $root $mirror (if the mirror no longer serves bullseye, KEEPGPU_DEBIAN_MIRROR names another)" \
				"$(tail -n 20 "$W/debootstrap.log")"
		fi
	fi
	k=${bin[amd64]:-}
	if [ -e "$root/.complete" ] && [ -n "$k" ]; then
		libc=$(chroot "$root" /lib/x86_64-linux-gnu/libc.so.6 | sed -n '1s/.*version \([0-9.]*[0-9]\).*/\1/p')
		if within "$libc" 2.33; then
			pass "glibc: the Debian 11 root has glibc $libc"
		else
			fail "glibc: the Debian 11 root has glibc $libc, not an old one"
		fi
		install -m 755 "$k" "$root/usr/local/bin/keepgpu"
		# Commands run in the root with /proc and /dev mounted, in a private
		# mount namespace that ends with them, and a clean environment.
		chrooted=(unshare --mount --propagation private --fork sh -c 'mount -t proc proc "$1/proc" && mount --rbind /dev "$1/dev" && exec chroot "$@"'
			sh "$root" env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root)
		expect "glibc: keepgpu version in Debian 11" 0 '^keepgpu compat-test \(go[0-9.]+, linux/amd64\)$' \
			"${chrooted[@]}" keepgpu version
		expect "glibc: wrap -- sh -c '...; exit 42' runs the command and exits 42" 42 '^the command ran$' \
			"${chrooted[@]}" keepgpu wrap -- sh -c 'echo the command ran; sleep 1; exit 42'
		grep -q 'holding nothing: libcuda.so.1 not found' <<<"$out" &&
			pass "glibc: wrap says why it holds nothing (libcuda.so.1 not found)" ||
			fail "glibc: wrap says why it holds nothing" "$out"
		expect "glibc: wrap passes a signal death through as 128+N (SIGTERM: 143)" 143 '' \
			"${chrooted[@]}" keepgpu wrap -- sh -c 'kill -TERM $$'
		expect "glibc: hold without a driver exits 1 with a clear error" 1 \
			'^keepgpu: holding nothing: libcuda\.so\.1 not found \(no NVIDIA driver on this node\?\)' \
			"${chrooted[@]}" keepgpu hold
		expect "glibc: list-gpus without a driver exits 1 naming libnvidia-ml.so.1" 1 'libnvidia-ml\.so\.1' \
			"${chrooted[@]}" keepgpu list-gpus
	elif [ -z "$k" ]; then
		fail "glibc: no amd64 binary to run"
	fi
	note "glibc: $(($(date +%s) - t0)) s"
fi

# 4. NVIDIA's user-space libraries, with no kernel module.
if wanted nvidia; then
	t0=$(date +%s)
	debs=$cache/debs
	if ! fetch_debs "$debs" libcuda1 libnvidia-ml1 libnvidia-ptxjitcompiler1 >"$W/apt-nvidia.log" 2>&1; then
		fail "nvidia: apt-get download libcuda1 libnvidia-ml1 libnvidia-ptxjitcompiler1 (bookworm non-free)" "$(cat "$W/apt-nvidia.log")"
	else
		nv=$W/nvidia
		for p in libcuda1 libnvidia-ml1 libnvidia-ptxjitcompiler1; do
			dpkg-deb -x "$(ls "$debs/${p}_"*.deb | tail -n 1)" "$nv"
		done
		ver=$(dpkg-deb -f "$(ls "$debs"/libcuda1_*.deb | tail -n 1)" Version)
		note "nvidia: $(du -ch "$debs"/libcuda1_*.deb "$debs"/libnvidia-ml1_*.deb "$debs"/libnvidia-ptxjitcompiler1_*.deb | tail -n 1 | cut -f1) of .deb files, driver $ver"
		lib=$(dirname "$(find "$nv" -name libcuda.so.1 | head -n 1)")
		# Names of the driver entry points in keepgpu's sources, checked
		# against what NVIDIA's libraries export.
		syms=$(cd "$repo" && cat $(ls cuda/*.go nvml/*.go 2>/dev/null | grep -v _test.go) |
			grep -o '"\(cu\|nvml\)[A-Z][A-Za-z0-9_]*"' | tr -d '"' | sort -u)
		nm -D --defined-only "$lib/libcuda.so.1" "$lib/libnvidia-ml.so.1" | awk 'NF == 3 { print $3 }' >"$W/exported"
		missing=()
		for s in $syms; do
			grep -qx "$s" "$W/exported" || missing+=("$s")
		done
		n=$(wc -w <<<"$syms")
		if [ "$n" -gt 10 ] && [ ${#missing[@]} = 0 ]; then
			pass "nvidia: all $n cu*/nvml* symbols named in keepgpu's sources are exported by driver $ver"
		else
			fail "nvidia: symbols keepgpu names that driver $ver lacks (of $n): ${missing[*]:-}"
		fi
		if [ -e /proc/driver/nvidia ] || grep -q '^nvidia ' /proc/modules 2>/dev/null; then
			note "nvidia: an NVIDIA kernel module is loaded here: the no-driver answers cannot be checked"
		else
			k=${bin[amd64]:-}
			if [ -z "$k" ]; then
				fail "nvidia: no amd64 binary to run"
			else
				nenv=(env -u FAKEGPU_DIR LD_LIBRARY_PATH="$lib")
				expect "nvidia: list-gpus: no GPU, cuInit: CUDA_ERROR_NO_DEVICE (100), exit status 0" 0 \
					'^no GPU: cuInit: CUDA_ERROR_NO_DEVICE \(100\)$' "${nenv[@]}" "$k" list-gpus
				expect "nvidia: hold: cuInit: CUDA_ERROR_NO_DEVICE (100), exit status 1" 1 \
					'^keepgpu: holding nothing: cuInit: CUDA_ERROR_NO_DEVICE \(100\)$' "${nenv[@]}" "$k" hold
				expect "nvidia: wrap -- sh -c 'sleep 1; exit 5': the command runs, exit status 5, cuInit's answer shown" 5 \
					'holding nothing: cuInit: CUDA_ERROR_NO_DEVICE \(100\)' "${nenv[@]}" "$k" wrap -- sh -c 'sleep 1; exit 5'
				expect "nvidia: wrap --require-gpu exits 125 without running the command" 125 \
					'CUDA_ERROR_NO_DEVICE' "${nenv[@]}" "$k" wrap --require-gpu -- sh -c 'echo the command ran'
				! grep -q 'the command ran' <<<"$out" || fail "nvidia: wrap --require-gpu ran the command" "$out"
			fi
		fi
	fi
	note "nvidia: $(($(date +%s) - t0)) s"
fi

# 5. The keep-alive kernel through NVIDIA's assembler.
if wanted ptx; then
	t0=$(date +%s)
	debs=$cache/debs
	if ! fetch_debs "$debs" nvidia-cuda-toolkit >"$W/apt-toolkit.log" 2>&1; then
		fail "ptx: apt-get download nvidia-cuda-toolkit (bookworm non-free)" "$(cat "$W/apt-toolkit.log")"
	else
		deb=$(ls "$debs"/nvidia-cuda-toolkit_*.deb | tail -n 1)
		tk=$W/toolkit
		mkdir -p "$tk"
		# cuobjdump -sass runs nvdisasm from its own directory.
		dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tk" ./usr/bin/ptxas ./usr/bin/cuobjdump ./usr/bin/nvdisasm
		note "ptx: $(du -h "$deb" | cut -f1) nvidia-cuda-toolkit $(dpkg-deb -f "$deb" Version); ptxas, cuobjdump and nvdisasm need only libc ($(ldd "$tk"/usr/bin/* | grep -c 'not found') libraries missing)"
		ptxas=$tk/usr/bin/ptxas cuobjdump=$tk/usr/bin/cuobjdump
		for sm in 50 70 80 90; do
			cubin=$W/keepalive.sm_$sm.cubin
			if ! log=$("$ptxas" -v -arch=sm_$sm -o "$cubin" cuda/keepalive.ptx 2>&1); then
				fail "ptx: ptxas -arch=sm_$sm cuda/keepalive.ptx" "$log"
				continue
			fi
			if ! sass=$("$cuobjdump" -sass "$cubin" 2>&1); then
				fail "ptx: cuobjdump -sass keepalive.sm_$sm.cubin" "$sass"
				continue
			fi
			[ -z "${KEEPGPU_ARTIFACTS:-}" ] || { mkdir -p "$KEEPGPU_ARTIFACTS" && echo "$sass" >"$KEEPGPU_ARTIFACTS/keepalive.sm_$sm.sass"; }
			# One instruction per line: address, predicate, opcode, operands.
			# Maxwell's listing pairs dual-issued instructions in braces,
			# "{ A ;" and "B }" on the next line: drop the braces and end
			# the second with its semicolon.
			ins=$(sed -e 's|^\( *\/\*[0-9a-f]\{4\}\*\/ *\){ *|\1|' -e 's|^\( *\/\*[0-9a-f]\{4\}\*\/.*[^ ]\) *}$|\1 ;|' <<<"$sass" |
				sed -n 's|^ *\/\*\([0-9a-f]\{4\}\)\*\/ *\(@!\{0,1\}U\{0,1\}P[0-9T]\{1,\} \{1,\}\)\{0,1\}\([A-Z][A-Z0-9_.]*\)\(.*\);.*|\1 \2 \3 \4|p' |
				awk '{ addr = $1; if ($2 ~ /^@/) { pred = $2; op = $3; $1 = $2 = $3 = "" } else { pred = "-"; op = $2; $1 = $2 = "" }; gsub(/^ +/, ""); print addr, pred, op, $0 }')
			total=$(grep -Ec '^ *\/\*[0-9a-f]{4}\*\/ ' <<<"$sass" || true)
			# Memory instructions of every SASS generation: loads and stores
			# (generic LD/ST, LDG/STG, LDL/STL, LDS/STS, LDSM, LDGSTS),
			# atomics and reductions (not the warp-level REDUX), surface and
			# texture access, cache control, and Hopper's bulk copies.
			# LDC/ULDC read the constant bank (the kernel's parameters and
			# the stack pointer's initial value): no memory traffic.
			mem=$(awk '{ op = $3; sub(/\..*/, "", op) }
				op != "LDC" && op != "ULDC" && op ~ /^(LD[A-Z]*|ST[A-Z]*|ATOM[A-Z]*|RED|REDG|REDAS|SU(LD|ST|ATOM|RED)|TEX[A-Z]*|TLD[0-9A-Z]*|TXD|TXQ|TMML|CCTL[A-Z]*|UTMA[A-Z]*|UBLK[A-Z]*)$/' <<<"$ins")
			nmem=$(grep -c . <<<"$mem" || true)
			# The one memory instruction must be the stop word's read: a
			# global or generic load (LDG/LD), volatile, so not cached in
			# L1 (.CV before Volta, .STRONG.SYS since).
			load=$(awk '$3 ~ /^LDG?\./ && $3 ~ /\.(CV|STRONG\.SYS|STRONG\.GPU|VOLATILE)(\.|$)/' <<<"$mem")
			# Backward conditional branches close the loop; a branch to
			# itself after EXIT is the compiler's end-of-program guard. The
			# kernel has one loop: every backward branch goes to one head.
			loops=$(awk '$3 ~ /^BRA/ { t = ""; for (i = 4; i <= NF; i++) if ($i ~ /^0x[0-9a-f]+,?$/) t = $i
				gsub(/^0x|,$/, "", t); while (length(t) < length($1)) t = "0" t
				if (t != "" && t < $1 && $2 != "-") print t, $1 }' <<<"$ins")
			nheads=$(cut -d' ' -f1 <<<"$loops" | sort -u | grep -c . || true)
			timer=0 inloop=0 from="" to=""
			if [ "$nheads" = 1 ]; then
				from=$(head -n 1 <<<"$loops" | cut -d' ' -f1)
				to=$(cut -d' ' -f2 <<<"$loops" | sort | tail -n 1)
				timer=$(awk -v from="$from" -v to="$to" '$1 >= from && $1 <= to && /SR_GLOBALTIMER/' <<<"$ins" | grep -c . || true)
				inloop=$(awk -v from="$from" -v to="$to" '$1 >= from && $1 <= to' <<<"$load" | grep -c . || true)
			fi
			spills=$(grep -o '[0-9]* bytes stack frame, [0-9]* bytes spill stores, [0-9]* bytes spill loads' <<<"$log" || true)
			nins=$(grep -c . <<<"$ins")
			if [ "$nmem" != 1 ] || [ "$inloop" != 1 ] || [ "$nins" != "$total" ] || grep -qi warning <<<"$log" || ! grep -q ' 0 bytes gmem' <<<"$log" || [ "$nheads" != 1 ] || [ "$timer" = 0 ] || [ "$spills" != "0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads" ] ||
				! grep -q 'Function : keepalive' <<<"$sass" || ! grep -qw EXIT <<<"$ins"; then
				fail "ptx: sm_$sm: want one loop reading SR_GLOBALTIMER whose only memory instruction is one volatile load of the stop word (no store), no ptxas warning, no gmem, no stack" \
					"instructions parsed: $nins of $total" "memory instructions: ${mem:-none}" "volatile loads in the loop: $inloop" "loops (target, branch): ${loops:-none}" "ptxas -v:" "$log" "$sass"
			else
				pass "ptx: sm_$sm: $nins instructions, one loop (0x$from..0x$to) reading SR_GLOBALTIMER; its only memory instruction $(cut -d' ' -f3 <<<"$load") (the stop word), no store; no warning, 0 bytes gmem, $spills"
			fi
		done
	fi
	note "ptx: $(($(date +%s) - t0)) s"
fi

# 6. A snapshot release with goreleaser.
if wanted release; then
	t0=$(date +%s)
	if [ -n "${goreleaser_pid:-}" ]; then
		wait "$goreleaser_pid" || {
			fail "release: go install github.com/goreleaser/goreleaser/v2@$goreleaser_version" "$(tail -n 30 "$W/goreleaser-install.log")"
		}
		note "release: goreleaser $goreleaser_version compiled in the background, ready $(($(date +%s) - begin)) s after the start"
	fi
	gr=$gobin/goreleaser
	if [ -x "$gr" ]; then
		# A copy of the working tree (committed or not; a tree without git
		# works too) as a fresh repository with one commit, so that the
		# snapshot and the tagged build see this tree and the checkout's own
		# dist/ and tags stay untouched.
		src=$W/release-src
		mkdir -p "$src"
		if git -C "$repo" rev-parse --git-dir >/dev/null 2>&1; then
			(cd "$repo" && git ls-files -z --cached --others --exclude-standard |
				while IFS= read -r -d '' f; do [ ! -e "$f" ] || printf '%s\0' "$f"; done |
				tar -c --null -T - -f -) | tar -x -C "$src"
		else
			(cd "$repo" && tar -c --exclude=./.git --exclude=./dist --exclude=./.ci/artifacts -f - .) | tar -x -C "$src"
		fi
		git -C "$src" init -q
		git -C "$src" remote add origin "$(git -C "$repo" remote get-url origin 2>/dev/null || echo "file://$repo")"
		git -C "$src" add -A
		git -C "$src" -c user.name=keepgpu -c user.email=release@keepgpu.invalid commit -qm "release check"
		rc=0
		log=$(cd "$src" && "$gr" release --snapshot --clean 2>&1) || rc=$?
		if [ "$rc" != 0 ]; then
			fail "release: goreleaser release --snapshot --clean" "$(tail -n 40 <<<"$log")"
		else
			pass "release: goreleaser release --snapshot --clean"
			dist=$src/dist
			sver=$(grep -o '"version": *"[^"]*"' "$dist/metadata.json" | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/')
			(cd "$dist" && sha256sum -c checksums.txt >"$W/sha.log" 2>&1) &&
				[ "$(grep -c ': OK$' "$W/sha.log")" = 2 ] &&
				pass "release: checksums.txt verifies both tarballs (sha256sum -c)" ||
				fail "release: checksums.txt" "$(cat "$dist/checksums.txt" "$W/sha.log")"
			for arch in amd64 arm64; do
				tgz=$dist/keepgpu_${sver}_linux_$arch.tar.gz
				x=$W/release-$arch
				mkdir -p "$x"
				if [ ! -f "$tgz" ] || ! tar -xzf "$tgz" -C "$x" || [ ! -x "$x/keepgpu" ]; then
					fail "release: $(basename "$tgz") holds an executable keepgpu" "$(ls "$dist")" "$(tar -tzvf "$tgz" 2>&1)"
					continue
				fi
				info=$(go version -m "$x/keepgpu")
				floor=$(glibc_floor "$x/keepgpu")
				if grep -q "GOARCH=$arch" <<<"$info" && grep -q 'CGO_ENABLED=0' <<<"$info" && grep -q -- '-trimpath=true' <<<"$info" &&
					! readelf -S "$x/keepgpu" | grep -q '\.symtab' && within "$floor" 2.17; then
					pass "release: $(basename "$tgz"): keepgpu for $arch, CGO_ENABLED=0, -trimpath, stripped, $([ "$floor" = none ] && echo "no GLIBC_ symbol version" || echo "GLIBC_$floor at most") ($(($(stat -c %s "$x/keepgpu") / 1024)) KiB)"
				else
					fail "release: $(basename "$tgz"): keepgpu for $arch, CGO_ENABLED=0, -trimpath, stripped" "glibc floor $floor" "$info"
				fi
				run=("$x/keepgpu")
				[ "$arch" = amd64 ] || run=(qemu-aarch64-static -L /usr/aarch64-linux-gnu "$x/keepgpu")
				if [ "$arch" = amd64 ] || command -v qemu-aarch64-static >/dev/null; then
					expect "release: $arch keepgpu version prints the snapshot's version v$sver" 0 \
						"^keepgpu v$sver \\(go[0-9.]+, linux/$arch\\)\$" "${run[@]}" version
				fi
			done
			# The version comes from the git tag.
			git -C "$src" tag v1.9.8
			rc=0
			log=$(cd "$src" && "$gr" build --single-target --clean --output "$W/tagged" 2>&1) || rc=$?
			if [ "$rc" = 0 ]; then
				expect "release: a build of the commit tagged v1.9.8 prints keepgpu v1.9.8" 0 \
					'^keepgpu v1\.9\.8 \(go[0-9.]+, linux/amd64\)$' "$W/tagged" version
			else
				fail "release: goreleaser build --single-target of a tagged commit" "$(tail -n 40 <<<"$log")"
			fi
			# go install module@version, served by a module proxy in a
			# directory (the other modules come from the Go module cache and
			# proxy), into a private module cache: the binary reports the
			# module version.
			mod=$(cd "$repo" && go list -m)
			px=$W/proxy/$mod/@v
			mkdir -p "$px"
			echo '{"Version":"v1.9.8"}' >"$px/v1.9.8.info"
			cp "$src/go.mod" "$px/v1.9.8.mod"
			git -C "$src" archive --format=zip --prefix="$mod@v1.9.8/" -o "$px/v1.9.8.zip" v1.9.8
			echo v1.9.8 >"$px/list"
			rc=0
			log=$(cd "$W" && CGO_ENABLED=0 GOBIN=$W/gobin GOMODCACHE=$W/modcache GOFLAGS=-modcacherw GONOSUMDB="$mod" \
				GOPROXY="file://$W/proxy,file://$(go env GOMODCACHE)/cache/download,$(go env GOPROXY)" \
				go install "$mod@v1.9.8" 2>&1) || rc=$?
			if [ "$rc" = 0 ]; then
				expect "release: go install $mod@v1.9.8 prints keepgpu v1.9.8" 0 \
					'^keepgpu v1\.9\.8 \(go[0-9.]+, linux/amd64\)$' "$W/gobin/keepgpu" version
			else
				fail "release: go install $mod@v1.9.8 from a local module proxy" "$log"
			fi
		fi
	fi
	note "release: $(($(date +%s) - t0)) s"
fi

echo "compat-test: $passed passed, $failed failed in $(($(date +%s) - begin)) s"
[ "$failed" = 0 ]
