#!/usr/bin/env bash
# The whole test suite: formatting, vet, and every Go test with the race
# detector, against the project's fake GPU driver libraries (built by the
# tests with gcc). Needs Go and gcc; no GPU, driver or CUDA toolkit.
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
