#!/usr/bin/env bash
# The whole test suite: formatting, vet, every Go test with the race
# detector against the project's fake GPU driver libraries (built by the
# tests with gcc), and, as root, the Slurm tests on live one-node and
# three-node clusters (scripts/slurm-test.sh). Needs Go and gcc; no GPU,
# driver or CUDA toolkit. Arguments go to go test; KEEPGPU_SKIP_SLURM=1
# skips Slurm.
set -euo pipefail
cd "$(dirname "$0")/.."

# cgo builds get a private TMPDIR: a stray header in /tmp can break them.
TMPDIR=$(mktemp -d)
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
export CGO_ENABLED=1
export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g} -Wno-deprecated-declarations"

unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
go test -race -count=1 -timeout 20m "$@" ./...

# The Slurm tests start slurmctld, slurmd and munge (installing them if
# missing): they need root.
if [ -n "${KEEPGPU_SKIP_SLURM:-}" ]; then
	echo "Slurm tests skipped (KEEPGPU_SKIP_SLURM is set)"
elif [ "$(id -u)" != 0 ]; then
	echo "Slurm tests skipped: scripts/slurm-test.sh needs root"
else
	scripts/slurm-test.sh
fi
