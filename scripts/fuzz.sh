#!/usr/bin/env bash
# Runs every Go fuzz target of the module (every func FuzzXxx in a
# *_test.go file) for a bounded time each: KEEPGPU_FUZZTIME (default 12s;
# about two minutes in all on two cores). A failure leaves the input that
# caused it in the package's testdata/fuzz/FuzzXxx/, where `go test` runs
# it from then on: commit it with the fix. Needs only Go.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${KEEPGPU_FUZZTIME:-12s}
failed=0
while read -r file target; do
	pkg=./$(dirname "$file")
	echo "fuzz: $pkg $target ($fuzztime)"
	# -fuzz takes one package and one target at a time.
	out=${TMPDIR:-/tmp}/fuzz.out
	if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >"$out" 2>&1; then
		if grep -q 'context deadline exceeded' "$out" && ! grep -qE 'Failing input written|panic:|_test\.go:[0-9]+:' "$out"; then
			# Go 1.26's fuzz coordinator can report its own -fuzztime
			# deadline as a failure, with no input found (golang/go#75804,
			# fixed in Go 1.27): not a finding.
			echo "fuzz: $target: the coordinator's deadline race (golang/go#75804), no failing input; not a finding"
			continue
		fi
		cat "$out" >&2
		failed=1
	else
		grep -E '^fuzz: elapsed' "$out" | tail -1
	fi
done < <(git ls-files '*_test.go' | xargs grep -Ho '^func Fuzz[A-Za-z0-9_]*' | sed 's/:func / /' | sort)
exit $failed
