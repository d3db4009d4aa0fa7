#!/bin/bash
# Long fuzz runs: RUNS executions per target, split over JOBS processes that
# share one scratch corpus (build-fuzz/corpus-<target>). Prints, per target, the
# executions summed over its processes and any crash; exits 1 on a crash.
# FUZZ_MAX_TIME (seconds, per target) stops a target early; FUZZ_BIN is where
# the binaries are (default build-fuzz).
#   fuzz/long.sh RUNS JOBS TARGET...
set -uo pipefail
cd "$(dirname "$0")/.."
runs=$1 jobs=$2; shift 2
bin=${FUZZ_BIN:-build-fuzz}
status=0
mkdir -p build-fuzz/artifacts
for t in "$@"; do
    mkdir -p "build-fuzz/corpus-$t" "build-fuzz/long-$t"
    start=$(date +%s)
    for j in $(seq 1 "$jobs"); do
        "$bin/$t" -runs=$(((runs + jobs - 1) / jobs)) -max_total_time="${FUZZ_MAX_TIME:-0}" -seed="$j" \
            -timeout=25 -rss_limit_mb=4096 $([ -f "fuzz/$t.dict" ] && echo "-dict=fuzz/$t.dict") \
            -print_final_stats=1 -artifact_prefix=build-fuzz/artifacts/ \
            "build-fuzz/corpus-$t" "fuzz/corpus/$t" >"build-fuzz/long-$t/$j.log" 2>&1 &
    done
    failed=0
    for j in $(jobs -p); do wait "$j" || failed=1; done
    execs=$(grep -h stat::number_of_executed_units "build-fuzz/long-$t"/*.log | awk '{s += $2} END {print s + 0}')
    cov=$(grep -h "cov:" "build-fuzz/long-$t"/*.log | tail -1 | grep -o 'cov: [0-9]*')
    echo "$t: $execs executions in $(($(date +%s) - start)) s on $jobs processes, $cov, $([ $failed = 0 ] && echo 'no crash' || echo CRASH)"
    if [ $failed != 0 ]; then
        status=1
        grep -h -A30 "ERROR\|invariant failed" "build-fuzz/long-$t"/*.log | head -60
    fi
done
exit $status
