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

runtime_tests() {
    local b=$1 name
    mkdir -p "$TMP/rt-$b"
    for name in tiny-llama tiny-gpt2; do
        local m="$TMP/rt-$b/$name.nsq"
        check "$b convert $name --lossless for the runtime" "$b/nsq-convert" --quiet --lossless "fixtures/models/$name" "$m"
        check "$b nsq-run $name matches the PyTorch reference" $RT_PY tests/check_refs.py "$b/nsq-run" "$m" "fixtures/models/$name-ref"
        check "$b nsq-run $name is thread-count invariant" rt_thread_invariant "$b" "$m" 1,2,3,4,5,6,7,8
        check "$b nsq-run $name --no-mmap matches" bash -c "'$b/nsq-run' '$m' --prompt-ids 5,6,7 -n 8 --print-ids --ignore-eos > '$TMP/a.ids' && '$b/nsq-run' '$m' --no-mmap --prompt-ids 5,6,7 -n 8 --print-ids --ignore-eos > '$TMP/b.ids' && cmp '$TMP/a.ids' '$TMP/b.ids'"
    done
    check "$b nsq-run context overflow" stderr_says "exceeds the model's context" "$b/nsq-run" "$TMP/rt-$b/tiny-gpt2.nsq" --prompt-ids 1,2,3 -n 100000
    check "$b nsq-run bad ids" exit_code 1 "$b/nsq-run" "$TMP/rt-$b/tiny-gpt2.nsq" --prompt-ids 1,x
    check "$b nsq-run usage" exit_code 2 "$b/nsq-run" "$TMP/rt-$b/tiny-gpt2.nsq"
    check "$b nsq-run --help" exit_code 0 "$b/nsq-run" --help
    check "$b nsq-perplexity --help" exit_code 0 "$b/nsq-perplexity" --help
    check "$b nsq-perplexity missing text" exit_code 1 "$b/nsq-perplexity" "$TMP/rt-$b/tiny-gpt2.nsq" "$TMP/none.txt"
    check "$b nsq-perplexity --kld of a model with itself is 0" bash -c "'$b/nsq-perplexity' --json --quiet --max-windows 2 --kld '$TMP/rt-$b/tiny-gpt2.nsq' '$TMP/rt-$b/tiny-gpt2.nsq' fixtures/corpus/eval-dev.txt | $RT_PY -c 'import json,sys; d=json.load(sys.stdin)[\"base\"]; sys.exit(not (abs(d[\"mean_kld\"]) < 1e-9 and d[\"top1_agreement_percent\"] == 100))'"
    if [ "$b" = build ]; then
        check "$b nsq-perplexity tiny-llama within 0.1% of 52.606" rt_ppl_within "$b" "$TMP/rt-$b/tiny-llama.nsq" 52.606283838173226
        check "$b nsq-perplexity tiny-gpt2 within 0.1% of 74.082" rt_ppl_within "$b" "$TMP/rt-$b/tiny-gpt2.nsq" 74.082
    fi
}
