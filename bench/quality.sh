#!/bin/bash
# Quality of each conversion mode against the lossless file: body and whole-file
# bits per weight, perplexity on the evaluation text, its change, mean KL
# divergence and top-1 agreement. Prints a markdown table.
#   bench/quality.sh [BUILD_DIR] [OUT_DIR] [MODEL...]   (after `make`)
# Evaluation text: fixtures/corpus/eval-dev.txt (windows of 256 tokens).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
OUT=${2:-$(mktemp -d)}
TEXT=fixtures/corpus/eval-dev.txt
PY=/usr/bin/python3
MODES=(
    "seed split 10:20:70|--tiers 10:20:70"
    "--bpw 3.0|--bpw 3.0"
    "--bpw 4.5|--bpw 4.5"
    "uniform 4-bit|--tiers 0:100:0"
    "uniform 2-bit|--tiers 0:0:100"
    "10:20:70 + --refine 2|--tiers 10:20:70 --refine 2"
)
shift 2 || true
MODELS=("${@:-tiny-llama}")
[ $# -gt 0 ] || MODELS=(tiny-llama tiny-gpt2)
echo "| model | mode | body bpw | file bpw | PPL | ΔPPL % | mean KLD | top-1 % |"
echo "|---|---|---|---|---|---|---|---|"
for model in "${MODELS[@]}"; do
    base="$OUT/$model-lossless.nsq"
    "$B/nsq-convert" --quiet --lossless "fixtures/models/$model" "$base"
    for entry in "${MODES[@]}"; do
        name=${entry%%|*} args=${entry#*|}
        f="$OUT/$model-$(echo "$args" | tr -c 'a-z0-9' '_').nsq"
        # shellcheck disable=SC2086
        conv=$("$B/nsq-convert" --quiet --json $args "fixtures/models/$model" "$f")
        ppl=$("$B/nsq-perplexity" --quiet --json --kld "$base" "$f" "$TEXT")
        $PY - "$model" "$name" "$conv" "$ppl" <<'PY'
import json, sys
model, name, conv, ppl = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
b = ppl["base"]
body = conv["bpw_body_with_refinements"]
print("| %s | %s | %.3f | %.3f | %.3f | %+.2f | %.5f | %.2f |" % (
    model, name, body, conv["bpw_file"], ppl["ppl"], b["delta_ppl_percent"], b["mean_kld"], b["top1_agreement_percent"]))
PY
    done
done
