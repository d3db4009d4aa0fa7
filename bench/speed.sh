#!/bin/bash
# Decode and prompt speed, and streaming, on a TinyLlama-1.1B-shaped synthetic model.
#   bench/speed.sh [BUILD_DIR] [WORK_DIR]   (after `make`)
# Builds the model with ../shared/scripts/synth_hf.py (SYNTH=), converts it with
# the converter's defaults (LATTICE at 4 bpw, "default" below), at LATTICE
# --bpw 3 ("bpw3") and in TIERED's default mode ("tiered"), and prints:
#  1. per mode and thread count (THREADS, default "1 2"): prompt tokens/s
#     (128-token prompt), generation tokens/s (64 tokens), weight bytes read per
#     generated token, the memory read bandwidth measured in the same run, and
#     generation as a fraction of the bandwidth bound (bandwidth / bytes per
#     token); then the default file on 2 threads with the AVX2 kernels;
#  2. with GGML_BENCH and GGML_PROMPT (binaries built from
#     ../shared/peers/ggml_bench.c and bench/ggml_prompt.c against a ggml built
#     outside the project), ggml's matrix products alone for llama.cpp's q4_K_M
#     and q3_K_M mixes on 2 threads: one token with plain weights (ggml_bench),
#     one token and 128 with the repacked weights llama.cpp uses (ggml_prompt),
#     and nsq's ratios to the faster mix of each;
#  3. the default file under --max-memory at 100%, 50% and 33% of its weights:
#     generation tokens/s and peak RSS, page cache warm and (--cold) cold.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
W=${2:-/tmp/nsq-speed}
SYNTH=${SYNTH:-../shared/scripts/synth_hf.py}
PY=/usr/bin/python3
THREADS=${THREADS:-1 2}
MODES=(default bpw3 tiered)
mkdir -p "$W"
[ -f "$W/hf/config.json" ] || $PY "$SYNTH" "$W/hf" >/dev/null
declare -A OPTS=([default]="" [bpw3]="--bpw 3" [tiered]="--scheme tiered")
for mode in "${MODES[@]}"; do
    # shellcheck disable=SC2086
    [ -f "$W/$mode.nsq" ] || "$B/nsq-convert" --quiet ${OPTS[$mode]} "$W/hf" "$W/$mode.nsq"
done
PROMPT=$(seq -s, 100 227)

run() { # run MODEL THREADS [nsq-run options]: "prompt_tok_s gen_tok_s peak_rss_mib"
    local m=$1 t=$2; shift 2
    "$B/nsq-run" "$m" --prompt-ids "$PROMPT" -n 64 --ignore-eos --print-ids --threads "$t" --stats "$@" 2>&1 >/dev/null |
        sed -n 's/.*(\([0-9.]*\) tok\/s); generated.*(\([0-9.]*\) tok\/s); peak RSS \([0-9.]*\) MiB.*/\1 \2 \3/p'
}
plan_mib() { # plan_mib MODEL LABEL [options]: first MiB figure of that --plan line
    local m=$1 l=$2; shift 2
    "$B/nsq-run" "$m" --plan "$@" | awk -v l="$l" 'index($0, "  " l) == 1 { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+$/) { print $i; exit } }'
}
row() { # row LABEL MODEL THREADS [KERNELS]: one line of the first table (KERNELS: NSQ_KERNELS)
    local label=$1 m=$2 t=$3 level=${4:-} mb bw pp gen
    mb=$(plan_mib "$m" "weights read per token")
    bw=$("$B/bench/membw" "$t" | cut -d' ' -f1)
    read -r pp gen _ <<<"$(NSQ_KERNELS=$level run "$m" "$t")"
    GEN[$label-$t]=$gen PP[$label-$t]=$pp
    awk -v mode="$label" -v t="$t" -v size="$(stat -L -c %s "$m")" -v pp="$pp" -v gen="$gen" -v mb="$mb" -v bw="$bw" 'BEGIN {
        bytes = mb * 1048576; bound = bw * 1e9 / bytes
        printf "| %s | %d | %.0f | %.1f | %.1f | %.0f | %.1f | %.1f | %.0f %% |\n", mode, t, size / 1e6, pp, gen, bytes / 1e6, bw, bound, 100 * gen / bound }'
}

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(date -u +%F)"
echo
echo "| mode | threads | file MB | prompt tok/s | generation tok/s | weights MB/token | bandwidth GB/s | bound tok/s | generation / bound |"
echo "|---|---|---|---|---|---|---|---|---|"
declare -A GEN PP
for mode in "${MODES[@]}"; do
    for t in $THREADS; do row "$mode" "$W/$mode.nsq" "$t"; done
done
row "default, AVX2 kernels" "$W/default.nsq" 2 avx2

if [ -n "${GGML_BENCH:-}" ] && [ -n "${GGML_PROMPT:-}" ]; then
    echo
    echo "| ggml, matrix products only, 2 threads | generation tok/s (ggml_bench) | generation tok/s (ggml_prompt, 1 token) | prompt tok/s (ggml_prompt, 128 tokens) |"
    echo "|---|---|---|---|"
    best=0 best_r=0 best_pp=0
    for mix in q4_K_M q3_K_M; do
        g=$("$GGML_BENCH" "$mix" 2 | sed -n 's/.*-> \([0-9.]*\) tok\/s.*/\1/p')
        r=$("$GGML_PROMPT" "$mix" 2 1 | sed -n 's/.*-> \([0-9.]*\) tok\/s.*/\1/p')
        p=$("$GGML_PROMPT" "$mix" 2 128 | sed -n 's/.*-> \([0-9.]*\) tok\/s.*/\1/p')
        echo "| $mix | $g | $r | $p |"
        best=$(awk -v a="$best" -v b="$g" 'BEGIN { print (b > a ? b : a) }')
        best_r=$(awk -v a="$best_r" -v b="$r" 'BEGIN { print (b > a ? b : a) }')
        best_pp=$(awk -v a="$best_pp" -v b="$p" 'BEGIN { print (b > a ? b : a) }')
    done
    echo
    for mode in default bpw3; do
        awk -v m="$mode" -v n="${GEN[$mode-2]:-0}" -v g="$best" -v r="$best_r" -v p="${PP[$mode-2]:-0}" -v q="$best_pp" 'BEGIN {
            printf "nsq %s, 2 threads: generation %.1f tok/s = %.2f x the faster mix of ggml_bench (%.1f), %.2f x that of ggml_prompt (%.1f); prompt %.1f tok/s = %.2f x (%.1f)\n", m, n, n / g, g, n / r, r, p, p / q, q }'
    done
fi

echo
total=$(plan_mib "$W/default.nsq" "all blocks")
echo "| budget | --max-memory MiB | generation tok/s (warm) | peak RSS MiB (warm) | generation tok/s (cold) | peak RSS MiB (cold) | file MiB read per token | KV cache MiB |"
echo "|---|---|---|---|---|---|---|---|"
kv=$(plan_mib "$W/default.nsq" "KV cache")
for pct in 100 50 33; do
    mm=$(awk -v t="$total" -v p="$pct" 'BEGIN { printf "%.1f", t * p / 100 + (p == 100 ? 1 : 0) }')
    reads=$("$B/nsq-run" "$W/default.nsq" --plan --max-memory "${mm}M" | sed -n 's/.*MiB from memory, \([0-9.]*\) MiB from the file.*/\1/p')
    read -r _ gw rw <<<"$(run "$W/default.nsq" 2 --max-memory "${mm}M")"
    read -r _ gc rc <<<"$(run "$W/default.nsq" 2 --max-memory "${mm}M" --cold)"
    echo "| ${pct} % | $mm | $gw | $rw | $gc | $rc | $reads | $kv |"
done
