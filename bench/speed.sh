#!/bin/bash
# Decode speed and streaming on a TinyLlama-1.1B-shaped synthetic model.
#   bench/speed.sh [BUILD_DIR] [WORK_DIR]   (after `make`)
# Builds the model with ../shared/scripts/synth_hf.py (SYNTH=), converts it in
# TIERED's default mode (--scheme tiered, "default" below), at TIERED --bpw 4.5
# and lossless, and prints two markdown tables:
#  1. per mode and thread count: prompt tokens/s (128-token prompt), generation
#     tokens/s (64 tokens), weight bytes read per generated token, the memory
#     read bandwidth measured in the same run, and generation as a fraction of
#     the bandwidth bound (bandwidth / bytes per token); with GGML_BENCH (a
#     ggml_bench binary built from ../shared/peers/ggml_bench.c) also ggml's
#     matrix-vector bound for q4_K_M and q3_K_M and nsq's ratio to the faster;
#  2. the default mode under --max-memory at 100%, 50% and 33% of its weights:
#     generation tokens/s and peak RSS, page cache warm and (--cold) cold.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
W=${2:-/tmp/nsq-speed}
SYNTH=${SYNTH:-../shared/scripts/synth_hf.py}
PY=/usr/bin/python3
THREADS=${THREADS:-1 2}
mkdir -p "$W"
[ -f "$W/hf/config.json" ] || $PY "$SYNTH" "$W/hf" >/dev/null
declare -A OPTS=([default]="--scheme tiered" [bpw4.5]="--scheme tiered --bpw 4.5" [lossless]="--lossless")
for mode in default bpw4.5 lossless; do
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

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(date -u +%F)"
echo
echo "| mode | threads | file MB | prompt tok/s | generation tok/s | weights MB/token | bandwidth GB/s | bound tok/s | generation / bound |"
echo "|---|---|---|---|---|---|---|---|---|"
declare -A GEN
for mode in default bpw4.5 lossless; do
    m="$W/$mode.nsq"
    mb=$(plan_mib "$m" "weights read per token")
    for t in $THREADS; do
        bw=$("$B/bench/membw" "$t" | cut -d' ' -f1)
        read -r pp gen _ <<<"$(run "$m" "$t")"
        GEN[$mode-$t]=$gen
        awk -v mode="$mode" -v t="$t" -v size="$(stat -c %s "$m")" -v pp="$pp" -v gen="$gen" -v mb="$mb" -v bw="$bw" 'BEGIN {
            bytes = mb * 1048576; bound = bw * 1e9 / bytes
            printf "| %s | %d | %.0f | %.1f | %.1f | %.0f | %.1f | %.1f | %.0f %% |\n", mode, t, size / 1e6, pp, gen, bytes / 1e6, bw, bound, 100 * gen / bound }'
    done
done
if [ -n "${GGML_BENCH:-}" ]; then
    echo
    echo "| ggml_bench (matrix-vector only, 2 threads) | tok/s bound |"
    echo "|---|---|"
    best=0
    for mix in q4_K_M q3_K_M; do
        r=$("$GGML_BENCH" "$mix" 2 | sed -n 's/.*-> \([0-9.]*\) tok\/s.*/\1/p')
        echo "| $mix | $r |"
        best=$(awk -v a="$best" -v b="$r" 'BEGIN { print (b > a ? b : a) }')
    done
    echo
    awk -v n="${GEN[default-2]:-0}" -v g="$best" 'BEGIN { printf "nsq default mode, 2 threads: %.1f tok/s = %.2f x the faster ggml mix (%.1f tok/s)\n", n, n / g, g }'
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
