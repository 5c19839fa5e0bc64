#!/usr/bin/env bash
# The Python package (python/) against the project's fake GPU driver: builds
# keepgpu (without cgo, as it ships), the fakegpu tool and the fake driver
# libraries, makes a virtual environment in a temporary directory, installs
# the package there as the README says (pip install --no-index
# --no-build-isolation ./python; setuptools comes from the system, hence
# --system-site-packages), and runs python/tests with unittest, KeepGPU's
# documented Python examples among them. Needs Go, gcc and Python 3 with
# venv, pip and setuptools (Debian: python3-venv python3-pip
# python3-setuptools, which bring python3-wheel); no GPU. PYTHON names the
# interpreter (default: the first of /usr/bin/python3 and python3 that has
# them); arguments go to unittest (-k PATTERN, -v, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

W=$(mktemp -d /tmp/kgpy.XXXXXX)
trap 'rm -rf "$W"' EXIT
# A private TMPDIR for the cgo and gcc builds, and short enough for the
# Unix sockets keepgpu wrap makes in it.
mkdir "$W/tmp"
export TMPDIR=$W/tmp

CGO_ENABLED=0 go build -o "$W/bin/keepgpu" .
go build -o "$W/bin/fakegpu" ./internal/fakegpu/cmd/fakegpu
"$W/bin/fakegpu" build "$W/lib"

# pip builds the package with the system's setuptools, which before 70.1
# needs the wheel package for it.
can_build='import ensurepip, setuptools
try:
    import setuptools.command.bdist_wheel
except ImportError:
    import wheel'
py=${PYTHON:-}
if [ -z "$py" ]; then
	for c in /usr/bin/python3 python3; do
		if command -v "$c" >/dev/null && "$c" -c "$can_build" 2>/dev/null; then
			py=$c
			break
		fi
	done
fi
if [ -z "$py" ]; then
	echo "python-test: no Python 3 with venv, setuptools and wheel (Debian: apt-get install python3-venv python3-pip python3-setuptools)" >&2
	exit 1
fi
"$py" -m venv --system-site-packages "$W/venv"
# Installed from a copy, so that the build leaves nothing in the checkout.
cp -r python "$W/python"
(cd "$W" && venv/bin/python -m pip install --quiet --no-index --no-build-isolation ./python)
rm -rf "$W/python"

# From a directory without the sources: the tests import the installed
# package.
cd "$W"
venv/bin/python -c 'import keepgpu, sys; sys.exit(0 if keepgpu.__file__.startswith(sys.argv[1]) else "keepgpu imported from " + keepgpu.__file__)' "$W/venv/"
KEEPGPU_BIN=$W/bin/keepgpu FAKEGPU=$W/bin/fakegpu LD_LIBRARY_PATH=$W/lib CONSOLE_LOG_LEVEL=WARNING \
	venv/bin/python -m unittest discover -s "$repo/python/tests" -t "$repo/python/tests" "$@"
