#!/usr/bin/env bash
# The benchmark: builds keepgpu and measures it against the project's fake
# GPU driver libraries. The stable figures come first: the holder's CPU per
# held GPU and its kernel launches per GPU on 1, 8 and 16 fake GPUs, and the
# wrapper's CPU per GiB relayed through --ready-marker, before and after the
# match. Then SIGTERM → holder exited, ready → holder exited for every ready
# source, the cost of `keepgpu wrap -- true` (against true, tini and
# dumb-init) and of starting keepgpu (against a Go hello world), stdout
# throughput (a median of interleaved runs) and the memory of the wrapper
# and the holder. Prints a Markdown table on stdout, progress on stderr.
# Needs Go and gcc (for the fake libraries); no GPU. tini and dumb-init
# are compared where installed (Debian: apt-get install tini dumb-init).
#
#   scripts/bench.sh [--baseline REV] [DRIVER ARGS...]
#
# --baseline REV also builds keepgpu at git revision REV (for example main)
# and measures its holding and relay figures in the same run, the two
# binaries taking turns, shown beside each figure. Other arguments go to
# the driver (internal/bench), for example -n 20 or -only holding.
set -euo pipefail
cd "$(dirname "$0")/.."

baseline=
if [ "${1:-}" = --baseline ]; then
	[ $# -ge 2 ] || { echo "bench: --baseline needs a git revision" >&2; exit 2; }
	baseline=$2
	shift 2
fi

TMPDIR=$(mktemp -d)
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT

CGO_ENABLED=0 go build -o "$TMPDIR/keepgpu" .
args=()
if [ -n "$baseline" ]; then
	mkdir "$TMPDIR/baseline"
	git archive "$baseline" | tar -x -C "$TMPDIR/baseline"
	# An older revision may need cgo (go-nvml); a private TMPDIR keeps a
	# stray header in /tmp from breaking that build.
	(cd "$TMPDIR/baseline" && CGO_CFLAGS="-O2 -g -Wno-deprecated-declarations" go build -o "$TMPDIR/keepgpu-baseline" .)
	args=(-baseline "$TMPDIR/keepgpu-baseline")
fi
go run ./internal/bench -keepgpu "$TMPDIR/keepgpu" "${args[@]}" "$@"
