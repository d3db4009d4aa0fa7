#!/bin/bash
# The test suite: cmocka unit tests, tool-level tests and the conformance set,
# once per build directory given (e.g. a plain and a sanitizer build), then the
# fuzz smoke runs when FUZZ=1. Ends with "N passed, N failed".
#   tests/run.sh BUILD_DIR...
set -uo pipefail
cd "$(dirname "$0")/.."
PASS=0 FAIL=0
FAILED=()
CONF=fixtures/conformance
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

ok() { PASS=$((PASS + 1)); }
bad() { FAIL=$((FAIL + 1)); FAILED+=("$1"); echo "FAIL: $1" >&2; }
check() { # check NAME COMMAND...: passes when the command exits 0
    local name=$1; shift
    if "$@" >"$TMP/out" 2>&1; then ok; else bad "$name"; sed 's/^/    /' "$TMP/out" | tail -20 >&2; fi
}

# Each cmocka test case counts once; TAP output names the failures.
run_unit() {
    local bin=$1 tap
    tap=$(CMOCKA_MESSAGE_OUTPUT=tap "$bin" 2>&1)
    local rc=$? p f
    p=$(grep -c '^ok ' <<<"$tap")
    f=$(grep -c '^not ok ' <<<"$tap")
    PASS=$((PASS + p))
    FAIL=$((FAIL + f))
    grep '^not ok ' <<<"$tap" | while read -r line; do echo "FAIL: $bin: $line" >&2; done
    if [ "$f" -gt 0 ] || [ "$rc" -ne 0 ] || [ "$p" -eq 0 ]; then
        FAILED+=("$bin")
        [ "$f" -gt 0 ] || { FAIL=$((FAIL + 1)); echo "FAIL: $bin exited $rc" >&2; tail -20 <<<"$tap" >&2; }
    fi
}

# nsq-verify gives each conformance file its listed status and rule, and the
# exit status that goes with it.
verify_manifest() { # verify_manifest BUILD [FLAG]
    local b=$1 flag=${2:-} file status rule got
    grep -v '^#' "$CONF/MANIFEST" | while read -r file status rule; do
        got=$("$b/nsq-verify" --json $flag "$CONF/$file" 2>/dev/null)
        local rc=$?
        local want_rc=1
        [ "$status" = NSQ_OK ] && want_rc=0
        if [ $rc -ne $want_rc ] || ! grep -q "\"status\":\"$status\"" <<<"$got" ||
            { [ "$rule" != - ] && ! grep -q "\"rule\":\"$rule\"" <<<"$got"; }; then
            echo "$file: want $status $rule (exit $want_rc), got exit $rc: $got"
            return 1
        fi
    done
}

inspect_matches() {
    local b=$1 json flags=$2
    for json in "$CONF"/*.json; do
        local nsq=${json%.json}.nsq
        (cd "$CONF" && "$OLDPWD/$b/nsq-inspect" --json --blocks --tensors $flags "$(basename "$nsq")") >"$TMP/inspect.json" ||
            { echo "$nsq: nsq-inspect failed"; return 1; }
        cmp -s "$TMP/inspect.json" "$json" || { echo "$nsq: output differs from $json"; diff <(tr ',' '\n' <"$json") <(tr ',' '\n' <"$TMP/inspect.json") | head; return 1; }
    done
}

regenerates_identically() {
    local b=$1
    tests/gen-conformance.sh "$b" "$TMP/conf" >/dev/null || return 1
    diff -r "$TMP/conf" "$CONF"
}

# tests/check-version.sh fails, saying what to do, on a copy of the tree where
# the spec or nsq.h moved to another format version and the set did not follow.
version_mismatch_caught() {
    local edit v=$TMP/ver
    for edit in "spec/nsq-format.md|s/\(version\) [0-9]*\.[0-9]*/\1 99.99/" "libnsq/nsq.h|s/\(NSQ_FORMAT_MINOR\) [0-9]*/\1 99/"; do
        rm -rf "$v" && mkdir -p "$v/spec" "$v/libnsq" "$v/fixtures" &&
            cp spec/nsq-format.md "$v/spec/" && cp libnsq/nsq.h "$v/libnsq/" && cp -r "$CONF" "$v/fixtures/" &&
            tests/check-version.sh "$v" >/dev/null || return 1
        sed -i "${edit#*|}" "$v/${edit%%|*}"
        tests/check-version.sh "$v" >"$TMP/ver.out" && { echo "passed after editing ${edit%%|*}"; return 1; }
        grep -q "make conformance" "$TMP/ver.out" || return 1
    done
}

exit_code() { # exit_code WANT COMMAND...
    local want=$1; shift
    "$@" >"$TMP/ec.out" 2>"$TMP/ec.err"
    local rc=$?
    [ $rc -eq "$want" ] || { echo "exit $rc, want $want: $*"; cat "$TMP/ec.err"; return 1; }
}

stderr_says() { # stderr_says PATTERN COMMAND...
    local pat=$1; shift
    "$@" >/dev/null 2>"$TMP/se.err"
    grep -q -- "$pat" "$TMP/se.err" || { echo "stderr lacks '$pat':"; cat "$TMP/se.err"; return 1; }
}

# fails_cleanly SECONDS WANT PATTERN COMMAND...: within SECONDS the command
# exits WANT, its stderr says PATTERN and holds no sanitizer report.
fails_cleanly() {
    local secs=$1 want=$2 pat=$3; shift 3
    timeout "$secs" "$@" >"$TMP/fc.out" 2>"$TMP/fc.err"
    local rc=$?
    if [ $rc -ne "$want" ] || ! grep -q -- "$pat" "$TMP/fc.err" || grep -q "Sanitizer\|runtime error" "$TMP/fc.err"; then
        echo "exit $rc (want $want), stderr should say '$pat': $*"; head -20 "$TMP/fc.err"; return 1
    fi
}

truncated_copy() { head -c 5000 "$CONF/router.nsq" >"$TMP/trunc.nsq"; echo "$TMP/trunc.nsq"; }

tool_tests() {
    local b=$1 t
    for t in nsq-inspect nsq-verify; do
        check "$b/$t --help" exit_code 0 "$b/$t" --help
        check "$b/$t --version" exit_code 0 "$b/$t" --version
        check "$b/$t bad option" exit_code 2 "$b/$t" --no-such-option x.nsq
        check "$b/$t no file" exit_code 2 "$b/$t"
        check "$b/$t missing file" exit_code 1 "$b/$t" "$TMP/does-not-exist.nsq"
        check "$b/$t missing file message" stderr_says "does-not-exist.nsq" "$b/$t" "$TMP/does-not-exist.nsq"
        check "$b/$t truncated" stderr_says "R-HDR-5" "$b/$t" "$(truncated_copy)"
        check "$b/$t valid" exit_code 0 "$b/$t" "$CONF/router.nsq"
    done
    check "$b nsq-verify conformance manifest" verify_manifest "$b"
    check "$b nsq-verify --no-mmap manifest" verify_manifest "$b" --no-mmap
    check "$b nsq-inspect --json matches conformance" inspect_matches "$b" ""
    check "$b nsq-inspect --json --no-mmap matches" inspect_matches "$b" --no-mmap
    check "$b nsq-inspect human output" bash -c "'$b/nsq-inspect' --blocks --tensors '$CONF/router.nsq' | grep -q 'lm_head.weight'"
}

source tests/convert.sh
source tests/runtime.sh
source tests/routing.sh
source tests/hessian.sh
source tests/lattice.sh
source tests/arch.sh
source tests/bindings.sh
source tests/install.sh
source tests/kaitai.sh
for f in tests/hostile_*.sh; do source "$f"; done
for b in "$@"; do
    for t in "$b"/tests/test_*; do
        [ -x "$t" ] && run_unit "$t"
    done
    tool_tests "$b"
    convert_tests "$b"
    runtime_tests "$b"
    routing_tests "$b"
    hessian_tests "$b"
    lattice_tests "$b"
    arch_tests "$b"
    bindings_tests "$b"
    for fn in $(declare -F | awk '$3 ~ /^hostile_.*_tests$/ {print $3}'); do "$fn" "$b"; done
done
check "conformance files regenerate identically" regenerates_identically "$1"
check "format version: spec, nsq.h and the conformance set agree" tests/check-version.sh
check "format version check fails when they disagree" version_mismatch_caught
install_tests "$1"
kaitai_tests "$1"

if [ "${FUZZ:-0}" = 1 ]; then
    for t in fuzz/fuzz_*.c; do
        t=$(basename "$t" .c)
        check "fuzz smoke $t" bash -c "make -s fuzz-smoke FUZZ_TARGETS=$t FUZZ_TIME=${FUZZ_TIME:-15}"
    done
fi

if [ ${#FAILED[@]} -gt 0 ]; then
    echo "failed:" >&2
    printf '  %s\n' "${FAILED[@]}" >&2
fi
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
