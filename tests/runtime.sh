# tests/runtime.sh - tool-level tests of nsq-run and nsq-perplexity against the
# PyTorch references in fixtures/models/*-ref. Sourced by tests/run.sh, whose
# check/exit_code/stderr_says helpers and $TMP it uses:
#   runtime_tests BUILD_DIR
# The full-text perplexity runs only against tools built without sanitizers.

RT_PY=/usr/bin/python3

rt_ppl_within() { # rt_ppl_within BUILD MODEL.nsq WANT: PPL on eval-dev within 0.1%
    local out
    out=$("$1/nsq-perplexity" --json --quiet "$2" fixtures/corpus/eval-dev.txt) || return 1
    $RT_PY -c 'import json,sys; d=json.loads(sys.argv[1]); w=float(sys.argv[2]);
print("ppl %.4f want %.4f (%+.4f%%)" % (d["ppl"], w, 100*(d["ppl"]/w-1))); sys.exit(abs(d["ppl"]/w-1) > 0.001)' "$out" "$3"
}

rt_thread_invariant() { # same greedy ids and logits bytes with 1 and 2 threads
    local b=$1 m=$2 ids=$3
    "$b/nsq-run" "$m" --prompt-ids "$ids" -n 16 --ignore-eos --print-ids --threads 1 --dump-logits "$TMP/rt1.f32" >"$TMP/rt1.ids" &&
        "$b/nsq-run" "$m" --prompt-ids "$ids" -n 16 --ignore-eos --print-ids --threads 2 --dump-logits "$TMP/rt2.f32" >"$TMP/rt2.ids" &&
        cmp "$TMP/rt1.ids" "$TMP/rt2.ids" && cmp "$TMP/rt1.f32" "$TMP/rt2.f32"
}

# Greedy ids and logits of a short run, to compare runs: rt_ids_logits TAG BUILD MODEL [nsq-run options]
rt_ids_logits() {
    local tag=$1 b=$2 m=$3; shift 3
    "$b/nsq-run" "$m" --prompt-ids 1,450,495,310,1046,338,263 -n 12 --ignore-eos --print-ids \
        --dump-logits "$TMP/$tag.f32" "$@" >"$TMP/$tag.ids"
}

rt_same() { # rt_same TAG1 TAG2: identical ids and logits bytes
    cmp "$TMP/$1.ids" "$TMP/$2.ids" && cmp "$TMP/$1.f32" "$TMP/$2.f32"
}

# Every kernel level this CPU runs gives the scalar kernels' ids and logits, bit for bit.
rt_kernels_agree() {
    local b=$1 m=$2 k
    NSQ_KERNELS=scalar rt_ids_logits k-scalar "$b" "$m" || return 1
    for k in avx2 native; do
        NSQ_KERNELS=$k rt_ids_logits "k-$k" "$b" "$m" && rt_same k-scalar "k-$k" || { echo "level $k differs"; return 1; }
    done
    NSQ_KERNELS=scalar rt_ids_logits e-scalar "$b" "$m" --exact && rt_ids_logits e-native "$b" "$m" --exact &&
        rt_same e-scalar e-native || { echo "--exact differs between levels"; return 1; }
}

rt_threads_agree() {
    local b=$1 m=$2
    rt_ids_logits th1 "$b" "$m" --threads 1 && rt_ids_logits th3 "$b" "$m" --threads 3 && rt_same th1 th3
}

rt_plan_value() { # rt_plan_value BUILD MODEL LABEL: the MiB figure on the --plan line starting with LABEL
    "$1/nsq-run" "$2" --plan | awk -v l="$3" 'index($0, "  " l) == 1 { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+$/) { print $i; exit } }'
}

# Streamed under a budget (with and without room to read ahead, warm and
# cold), the output is the unlimited run's, bit for bit: that of the base
# blocks, as streaming leaves refinements out.
rt_budget_agrees() {
    local b=$1 m=$2 min
    min=$(rt_plan_value "$b" "$m" "minimum budget") || return 1
    rt_ids_logits full "$b" "$m" --refine-levels 0 || return 1
    for mm in "$min" "$(awk -v a="$min" 'BEGIN { print a * 1.4 }')"; do
        rt_ids_logits "mm" "$b" "$m" --max-memory "${mm}M" --stats 2>"$TMP/mm.err" || { cat "$TMP/mm.err"; return 1; }
        grep -q "weights streamed" "$TMP/mm.err" || { echo "budget ${mm}M did not stream"; cat "$TMP/mm.err"; return 1; }
        rt_same full mm || { echo "budget ${mm}M differs"; return 1; }
    done
    rt_ids_logits cold "$b" "$m" --max-memory "${min}M" --cold && rt_same full cold
}

# Peak resident weights never exceed the budget.
rt_budget_respected() {
    local b=$1 m=$2 min
    min=$(rt_plan_value "$b" "$m" "minimum budget") || return 1
    "$b/nsq-run" "$m" --prompt-ids 1,2,3 -n 4 --max-memory "${min}M" --stats 2>&1 >/dev/null |
        awk '/weights streamed: peak/ { p = $5; for (i = 1; i <= NF; i++) if ($i == "budget") bud = $(i + 2); ok = p <= bud } END { exit !ok }'
}

# With refinements that do not all fit, every block runs and some refinements
# load; the perplexity lies between base-only and fully refined.
rt_refine_degrades() {
    local b=$1 m=$2 all base part ppl
    base=$(rt_plan_value "$b" "$m" "all blocks") && all=$(rt_plan_value "$b" "$m" "refinement levels") || return 1
    part=$(awk -v a="$base" -v r="$all" 'BEGIN { print a + r / 2 + 0.05 }')
    "$b/nsq-run" "$m" --prompt-ids 1,2,3 -n 2 --max-memory "${part}M" --stats 2>"$TMP/rf.err" >/dev/null || return 1
    grep -q "refinement levels loaded per block:.* [0-9]*:0/" "$TMP/rf.err" && grep -q "refinement levels loaded per block:.* [0-9]*:[12]/" "$TMP/rf.err" ||
        { echo "want some refined and some base-only blocks:"; cat "$TMP/rf.err"; return 1; }
    ppl() { "$b/nsq-perplexity" --json --quiet --max-windows 3 "$@" "$m" fixtures/corpus/eval-dev.txt | $RT_PY -c 'import json,sys; print(json.load(sys.stdin)["ppl"])'; }
    local p0 p1 p2
    p0=$(ppl --refine-levels 0) && p1=$(ppl --max-memory "${part}M") && p2=$(ppl) || return 1
    $RT_PY -c 'import sys; a,b,c=map(float,sys.argv[1:]); print(a,b,c); sys.exit(not (c < b < a))' "$p0" "$p1" "$p2"
}

rt_ppl_budget_agrees() {
    local b=$1 m=$2 min a c
    min=$(rt_plan_value "$b" "$m" "minimum budget") || return 1
    a=$("$b/nsq-perplexity" --json --quiet --max-windows 2 "$m" fixtures/corpus/eval-dev.txt | grep -o '"ppl":[^,]*')
    c=$("$b/nsq-perplexity" --json --quiet --max-windows 2 --max-memory "${min}M" "$m" fixtures/corpus/eval-dev.txt | grep -o '"ppl":[^,]*')
    echo "unlimited $a, streamed $c"
    [ -n "$a" ] && [ "$a" = "$c" ]
}

runtime_tests() {
    local b=$1 name
    mkdir -p "$TMP/rt-$b"
    for name in tiny-llama tiny-gpt2 tiny-qwen3 tiny-phi3 tiny-gemma2; do
        local m="$TMP/rt-$b/$name.nsq"
        check "$b convert $name --lossless for the runtime" "$b/nsq-convert" --quiet --lossless "fixtures/models/$name" "$m"
        check "$b nsq-run $name matches the PyTorch reference" $RT_PY tests/check_refs.py "$b/nsq-run" "$m" "fixtures/models/$name-ref"
        check "$b nsq-run $name is thread-count invariant" rt_thread_invariant "$b" "$m" 1,2,3,4,5,6,7,8
        check "$b nsq-run $name --no-mmap matches" bash -c "'$b/nsq-run' '$m' --prompt-ids 5,6,7 -n 8 --print-ids --ignore-eos > '$TMP/a.ids' && '$b/nsq-run' '$m' --no-mmap --prompt-ids 5,6,7 -n 8 --print-ids --ignore-eos > '$TMP/b.ids' && cmp '$TMP/a.ids' '$TMP/b.ids'"
    done
    local q="$TMP/rt-$b/q.nsq" r="$TMP/rt-$b/r.nsq"
    check "$b convert tiny-llama --scheme tiered, one layer a block" "$b/nsq-convert" --quiet --scheme tiered fixtures/models/tiny-llama "$q"
    check "$b convert tiny-gpt2 --refine 2" "$b/nsq-convert" --quiet --refine 2 fixtures/models/tiny-gpt2 "$r"
    for m in "$q" "$r"; do
        check "$b kernel levels agree bit for bit ($(basename "$m"))" rt_kernels_agree "$b" "$m"
        check "$b quantized thread-count invariance ($(basename "$m"))" rt_threads_agree "$b" "$m"
        check "$b --max-memory streaming equals unlimited ($(basename "$m"))" rt_budget_agrees "$b" "$m"
    done
    check "$b --max-memory peak within the budget" rt_budget_respected "$b" "$q"
    check "$b --max-memory below the minimum names it" stderr_says "below the minimum of" "$b/nsq-run" "$q" --max-memory 100K --prompt-ids 1 -n 1
    check "$b --max-memory bad size" exit_code 2 "$b/nsq-run" "$q" --max-memory 12X --prompt-ids 1 -n 1
    check "$b --plan" bash -c "'$b/nsq-run' '$q' --plan --max-memory 3M | grep -q 'expected generation'"
    check "$b --plan names the kernels NSQ_KERNELS chose" bash -c "NSQ_KERNELS=scalar '$b/nsq-run' '$q' --plan | grep -q '^  kernels  *scalar\$'"
    check "$b refinements degrade under a budget" rt_refine_degrades "$b" "$r"
    check "$b nsq-perplexity --max-memory equals unlimited" rt_ppl_budget_agrees "$b" "$q"
    check "$b nsq-run context overflow" stderr_says "exceeds the model's context" "$b/nsq-run" "$TMP/rt-$b/tiny-gpt2.nsq" --prompt-ids 1,2,3 -n 100000
    check "$b nsq-run bad ids" exit_code 1 "$b/nsq-run" "$TMP/rt-$b/tiny-gpt2.nsq" --prompt-ids 1,x
    check "$b nsq-run usage" exit_code 2 "$b/nsq-run" "$TMP/rt-$b/tiny-gpt2.nsq"
    check "$b nsq-run --help" exit_code 0 "$b/nsq-run" --help
    check "$b nsq-perplexity --help" exit_code 0 "$b/nsq-perplexity" --help
    check "$b nsq-perplexity missing text" exit_code 1 "$b/nsq-perplexity" "$TMP/rt-$b/tiny-gpt2.nsq" "$TMP/none.txt"
    check "$b nsq-perplexity --kld of a model with itself is 0" bash -c "'$b/nsq-perplexity' --json --quiet --max-windows 2 --kld '$TMP/rt-$b/tiny-gpt2.nsq' '$TMP/rt-$b/tiny-gpt2.nsq' fixtures/corpus/eval-dev.txt | $RT_PY -c 'import json,sys; d=json.load(sys.stdin)[\"base\"]; sys.exit(not (abs(d[\"mean_kld\"]) < 1e-9 and d[\"top1_agreement_percent\"] == 100))'"
    if [ "$b" = build ]; then
        for name in tiny-llama tiny-gpt2 tiny-qwen3 tiny-phi3 tiny-gemma2; do
            local want
            want=$($RT_PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["perplexity"]["eval-dev"]["ppl"])' \
                "fixtures/models/$name-ref/refs.json")
            check "$b nsq-perplexity $name within 0.1% of PyTorch's $want" rt_ppl_within "$b" "$TMP/rt-$b/$name.nsq" "$want"
        done
    fi
}
