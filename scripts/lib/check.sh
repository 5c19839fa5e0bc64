# Sourced by the check scripts (compat-test.sh, rocm-test.sh): one line per
# check, counted for the summary.
passed=0 failed=0
pass() {
	echo "ok    $1"
	passed=$((passed + 1))
}
# fail NAME DETAIL...: a failed check; DETAIL lines are printed indented.
fail() {
	echo "FAIL  $1"
	shift
	printf '%s\n' "$@" | sed 's/^/      /' | head -n 40
	failed=$((failed + 1))
}
note() { echo "--    $*"; }
