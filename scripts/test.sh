#!/usr/bin/env bash
# The whole test suite: formatting, vet, the build as it ships (without
# cgo, for linux/amd64 and linux/arm64), every Go test with the race
# detector against the project's fake GPU driver libraries (built by the
# tests with gcc), the Python package's tests (scripts/python-test.sh;
# KEEPGPU_SKIP_PYTHON=1 skips them), every fuzz target for a bounded time
# (scripts/fuzz.sh; KEEPGPU_SKIP_FUZZ=1 skips it), and, as root, the Slurm
# tests on live one-node and three-node clusters (scripts/slurm-test.sh).
# Needs Go and gcc, and Python 3 with venv, pip and setuptools; no GPU,
# driver or CUDA toolkit. Arguments go to go test; KEEPGPU_SKIP_SLURM=1
# skips Slurm. As root it also runs scripts/compat-test.sh (arm64, an old
# glibc, NVIDIA's libraries, the kernel through ptxas, a release snapshot),
# unless KEEPGPU_SKIP_COMPAT=1, and scripts/rocm-test.sh (AMD's ROCm 5.2
# libraries), unless KEEPGPU_SKIP_ROCM=1.
set -euo pipefail
cd "$(dirname "$0")/.."

# keepgpu itself builds without cgo, but the race detector needs it: the
# test build is a cgo build, and cgo builds get a private TMPDIR (a stray
# header in /tmp can break them).
TMPDIR=$(mktemp -d)
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT

unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
for arch in amd64 arm64; do
	CGO_ENABLED=0 GOARCH=$arch go build -o /dev/null .
done
CGO_ENABLED=1 go test -race -count=1 -timeout 20m "$@" ./...

# The Python package (python/) in a virtual environment, against the fake
# driver, unless KEEPGPU_SKIP_PYTHON=1.
if [ -n "${KEEPGPU_SKIP_PYTHON:-}" ]; then
	echo "Python package tests skipped (KEEPGPU_SKIP_PYTHON is set)"
else
	scripts/python-test.sh
fi

# Every fuzz target for a bounded time (KEEPGPU_FUZZTIME each, default 12s),
# unless KEEPGPU_SKIP_FUZZ=1.
if [ -n "${KEEPGPU_SKIP_FUZZ:-}" ]; then
	echo "fuzzing skipped (KEEPGPU_SKIP_FUZZ is set)"
else
	scripts/fuzz.sh
fi

# The Slurm tests start slurmctld, slurmd and munge (installing them if
# missing): they need root.
if [ -n "${KEEPGPU_SKIP_SLURM:-}" ]; then
	echo "Slurm tests skipped (KEEPGPU_SKIP_SLURM is set)"
elif [ "$(id -u)" != 0 ]; then
	echo "Slurm tests skipped: scripts/slurm-test.sh needs root"
else
	scripts/slurm-test.sh
fi

if [ -n "${KEEPGPU_SKIP_COMPAT:-}" ]; then
	echo "compatibility tests skipped (KEEPGPU_SKIP_COMPAT is set)"
elif [ "$(id -u)" != 0 ]; then
	echo "compatibility tests skipped: scripts/compat-test.sh needs root"
else
	scripts/compat-test.sh
fi

if [ -n "${KEEPGPU_SKIP_ROCM:-}" ]; then
	echo "ROCm library tests skipped (KEEPGPU_SKIP_ROCM is set)"
elif [ "$(id -u)" != 0 ]; then
	echo "ROCm library tests skipped: scripts/rocm-test.sh is run as root, like the other system tests"
else
	scripts/rocm-test.sh
fi
