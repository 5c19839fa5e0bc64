#!/usr/bin/env bash
# The benchmark: builds keepgpu and measures, against the project's fake GPU
# driver libraries, ready → holder exited for every ready source, the cost
# of `keepgpu wrap -- true`, stdout throughput through --ready-marker and the
# memory of the wrapper and the holder. Prints a Markdown table on stdout,
# progress on stderr. Extra arguments go to the driver (internal/bench),
# for example -n 20. Needs Go and gcc (for the fake libraries); no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

TMPDIR=$(mktemp -d)
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT

CGO_ENABLED=0 go build -o "$TMPDIR/keepgpu" .
go run ./internal/bench -keepgpu "$TMPDIR/keepgpu" "$@"
