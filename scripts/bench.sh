#!/usr/bin/env bash
# The benchmark: builds keepgpu and measures, against the project's fake GPU
# driver libraries, ready → holder exited for every ready source, the cost
# of `keepgpu wrap -- true`, stdout throughput through --ready-marker and the
# memory of the wrapper and the holder. Prints a Markdown table on stdout,
# progress on stderr. Extra arguments go to the driver (internal/bench),
# for example -n 20. Needs Go and gcc; no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

# cgo builds get a private TMPDIR: a stray header in /tmp can break them.
TMPDIR=$(mktemp -d)
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
export CGO_CFLAGS="-O2 -g -Wno-deprecated-declarations"

go build -o "$TMPDIR/keepgpu" .
go run ./internal/bench -keepgpu "$TMPDIR/keepgpu" "$@"
