# tests/routing.sh - tool-level tests of block routing: nsq-convert --router,
# the router and static policy in the file, and --route / --skip-blocks in
# nsq-run and nsq-perplexity. Sourced by tests/run.sh, whose check/exit_code/
# stderr_says helpers and $TMP it uses, and after tests/runtime.sh (rt_*):
#   routing_tests BUILD_DIR

RO_CALIB=fixtures/corpus/calib-router.txt

ro_inspect() { # ro_inspect BUILD FILE PYTHON-CONDITION-ON-d: the --json listing satisfies it
    "$1/nsq-inspect" --json "$2" | $RT_PY -c "import json,sys; d=json.load(sys.stdin); m={e['key']: e['value'] for e in d['metadata']}; sys.exit(not ($3))"
}

ro_mib() { # ro_mib FILE PERCENT: that share of FILE's size, in bytes
    echo $(($(stat -c %s "$1") * $2 / 100))
}

# The route lines of nsq-run: total bytes within the budget, and as many
# blocks run as asked.
ro_route_fits() {
    local b=$1 m=$2 pct=$3 budget
    budget=$(ro_mib "$m" "$pct")
    "$b/nsq-run" "$m" "Once upon a time" -n 4 --route --max-memory "$budget" --route-print --stats 2>"$TMP/ro.err" >/dev/null || return 1
    awk -v B="$budget" '/^route: [0-9.]+ MiB of weights/ { if ($2 * 1048576 > B + 1) bad = 1; seen = 1 }
        /weights resident: peak/ { for (i = 1; i <= NF; i++) if ($i == "peak") if ($(i + 1) * 1048576 > B + 1048) bad = 1 }
        END { exit bad || !seen }' "$TMP/ro.err" || { cat "$TMP/ro.err"; return 1; }
}

ro_route_k() { # --route K: exactly K blocks run
    local b=$1 m=$2 k=$3 n
    n=$("$b/nsq-run" "$m" "Once upon a time" -n 1 --route "$k" --route-print 2>&1 >/dev/null | grep -c -E '^route: block [0-9]+ (base|full)')
    [ "$n" = "$k" ] || { echo "$n blocks ran, want $k"; return 1; }
}

ro_ppl() { # ro_ppl BUILD FILE [options]: the perplexity on a few windows
    local b=$1 m=$2; shift 2
    "$b/nsq-perplexity" --json --quiet --max-windows 3 --ctx 128 "$@" "$m" fixtures/corpus/eval-dev.txt |
        $RT_PY -c 'import json,sys; print(json.load(sys.stdin)["ppl"])'
}

ro_ppl_budget() { # a tight budget costs perplexity; a full one gives all-FULL's, whatever decides
    local b=$1 m=$2 full tight oracle static
    full=$(ro_ppl "$b" "$m" --route --max-memory "$(ro_mib "$m" 100)") &&
        static=$(ro_ppl "$b" "$m" --route static --max-memory "$(ro_mib "$m" 100)") &&
        oracle=$(ro_ppl "$b" "$m" --route oracle --max-memory "$(ro_mib "$m" 100)") &&
        tight=$(ro_ppl "$b" "$m" --route --max-memory "$(ro_mib "$m" 65)") || return 1
    echo "full $full static $static oracle $oracle 65% $tight"
    [ "$full" = "$static" ] && [ "$full" = "$oracle" ] && $RT_PY -c "import sys; sys.exit(not $tight > $full * 1.01)"
}

routing_tests() {
    local b=$1
    local d="$TMP/ro-${b//\//_}"
    local m="$d/router.nsq" plain="$d/plain.nsq" C="$b/nsq-convert"
    mkdir -p "$d"
    check "$b --router needs calibration (TIERED)" stderr_says "--router needs calibration" "$C" --router --scheme tiered fixtures/models/tiny-llama "$d/x.nsq"
    check "$b --router needs calibration (--no-calib)" stderr_says "--router needs calibration" "$C" --router --no-calib fixtures/models/tiny-llama "$d/x.nsq"
    check "$b --router with --lossless" exit_code 2 "$C" --router --lossless --calib "$RO_CALIB" fixtures/models/tiny-llama "$d/x.nsq"
    check "$b --router-windows 4" exit_code 2 "$C" --router --calib "$RO_CALIB" --router-windows 4 fixtures/models/tiny-llama "$d/x.nsq"
    head -c 2500 fixtures/corpus/calib-small.txt >"$d/short.txt"
    check "$b --router on too short a text" stderr_says "the router needs 8 windows" "$C" --quiet --scheme tiered --router --calib "$d/short.txt" --calib-probe 0 fixtures/models/tiny-llama "$d/x.nsq"
    check "$b no output left by a failed --router" bash -c "! ls '$d'/x.nsq* 2>/dev/null"
    check "$b convert tiny-llama --router" "$C" --quiet --tiers 0:0:100 --refine 2 --calib "$RO_CALIB" --calib-tokens 512 \
        --router --router-windows 8 fixtures/models/tiny-llama "$m"
    check "$b convert tiny-llama without a router" "$C" --quiet --tiers 0:0:100 --refine 2 fixtures/models/tiny-llama "$plain"
    check "$b router file verifies" "$b/nsq-verify" "$m"
    check "$b router round-trips through nsq-inspect" ro_inspect "$b" "$m" \
        "d['router']['hidden_dim'] == 0 and d['router']['input_dim'] == 256 and d['router']['choices'] == ['base'] + ['skip|base|full'] * 6 + ['base'] and len(m['router.static_damage']) == 24 and m['provenance.router.windows'] == 8 and all(v >= 0 for v in m['router.static_damage']) and m['router.static_damage'][5] == 0"
    check "$b skipping layer 0 is the costliest skip" ro_inspect "$b" "$m" \
        "max(range(1, 7), key=lambda k: m['router.static_damage'][3 * k]) == 1"
    # A budget that holds everything gives exactly the unrouted output.
    rt_ids_logits ro-plain "$b" "$m"
    rt_ids_logits ro-full "$b" "$m" --route --max-memory "$(ro_mib "$m" 100)"
    check "$b --route, full budget: the unrouted output" rt_same ro-plain ro-full
    rt_ids_logits ro-static "$b" "$m" --max-memory "$(ro_mib "$m" 100)"
    check "$b --max-memory, full budget (static policy): the unrouted output" rt_same ro-plain ro-static
    rt_ids_logits ro-skip "$b" "$m" --skip-blocks 3
    check "$b --skip-blocks changes the output" bash -c "! cmp -s '$TMP/ro-plain.f32' '$TMP/ro-skip.f32'"
    rt_ids_logits ro-plain2 "$b" "$plain"
    rt_ids_logits ro-skip2 "$b" "$plain" --skip-blocks 3
    check "$b --skip-blocks without a router changes the output" bash -c "! cmp -s '$TMP/ro-plain2.f32' '$TMP/ro-skip2.f32'"
    check "$b --skip-blocks 0 refused" stderr_says "block 0 cannot be skipped" "$b/nsq-run" "$m" --skip-blocks 0 --prompt-ids 1 -n 1
    check "$b --skip-blocks out of range" stderr_says "block 9 does not exist" "$b/nsq-run" "$m" --skip-blocks 9 --prompt-ids 1 -n 1
    check "$b --route without a router" stderr_says "has no router" "$b/nsq-run" "$plain" --route --prompt-ids 1 -n 1
    check "$b --route within the budget (65%)" ro_route_fits "$b" "$m" 65
    check "$b --route within the budget (50%)" ro_route_fits "$b" "$m" 50
    check "$b --route below the smallest selection" stderr_says "is below the" "$b/nsq-run" "$m" --route --max-memory 1M --prompt-ids 1 -n 1
    check "$b --route 4 runs 4 blocks" ro_route_k "$b" "$m" 4
    check "$b --route 1 refused (2 blocks always run)" stderr_says "blocks that always run" "$b/nsq-run" "$m" --route 1 --prompt-ids 1 -n 1
    check "$b --route none streams" bash -c "'$b/nsq-run' '$m' --route none --max-memory $(ro_mib "$m" 50) --prompt-ids 1,2 -n 1 --route-print --stats 2>&1 >/dev/null | grep -q 'weights streamed'"
    check "$b --plan --route" bash -c "'$b/nsq-run' '$m' --plan --route --max-memory $(ro_mib "$m" 65) 'Once upon a time' | grep -q 'predicted damage'"
    check "$b nsq-perplexity --route: budgets and policies" ro_ppl_budget "$b" "$m"
    check "$b nsq-perplexity --route needs a longer --ctx" exit_code 2 "$b/nsq-perplexity" --route --ctx 32 "$m" fixtures/corpus/eval-dev.txt
}
