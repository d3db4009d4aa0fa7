#!/bin/bash
# One file, any memory budget: quality against the resident bytes of the
# layer matrices, for
#   - one file with refinement levels (--bpw 2.5,3.5,4.5 --router) run under
#     --max-memory at 30 ... 100 % of its layer blocks: each block's depth
#     chosen from the file's predicted damages; below the bases, blocks
#     skipped by the static routing policy (--route static);
#   - the same file with every block at one depth (0: the base);
#   - the same file with skip-only routing (each block skipped or at full depth);
#   - files converted separately for each size (--bpw X, no levels);
#   - llama.cpp's ladder (bench/llamacpp.tsv, weights only).
# Prints a markdown table and writes OUT_DIR/budget.tsv and OUT_DIR/budget.png
# (gnuplot). KLD and PPL on the evaluation text against the lossless file,
# f32 activations (--exact: the weights alone, as llama.cpp's figures).
#   bench/budget.sh [BUILD_DIR] [OUT_DIR]     (after `make`)
# Environment: MAX_WINDOWS (default 400 windows of 256 tokens; empty: the
# whole text), LEVELS (default 2.5,3.5,4.5), DIRECT (default
# "2.5 3.0 3.5 4.0 4.5"), FRACS (default "0.3 0.4 0.5 0.6 0.7 0.8 0.9 1.0"),
# REPLOT (a budget.tsv from an earlier run: only print and plot it),
# THREADS (--threads for every tool), PY (python3 with numpy).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
OUT=${2:-$(mktemp -d)}
MODEL=fixtures/models/tiny-llama
TEXT=fixtures/corpus/eval-dev.txt
LEVELS=${LEVELS:-2.5,3.5,4.5}
DIRECT=${DIRECT:-2.5 3.0 3.5 4.0 4.5}
FRACS=${FRACS:-0.3 0.4 0.5 0.6 0.7 0.8 0.9 1.0}
PY=${PY:-/usr/bin/python3}
WIN=(--max-windows "${MAX_WINDOWS-400}")
[ -n "${MAX_WINDOWS-400}" ] || WIN=()
TH=()
[ -n "${THREADS:-}" ] && TH=(--threads "$THREADS")
mkdir -p "$OUT"
TSV=$OUT/budget.tsv

# ppl FILE SERIES LABEL [OPTIONS...]: one row of the table
ppl() {
    local f=$1 series=$2 label=$3
    shift 3
    "$B/nsq-perplexity" --quiet --json --exact "${TH[@]}" "${WIN[@]}" "$@" --kld "$OUT/lossless.nsq" "$f" "$TEXT" |
        $PY -c '
import json, sys
r = json.load(sys.stdin)
series, label, elements = sys.argv[1], sys.argv[2], float(sys.argv[3])
layer = r["weights_peak_bytes"] - r["weights_pinned_bytes"]
p = r["predicted_kld"]
print("%s\t%s\t%d\t%.4f\t%.4f\t%.6f\t%s" % (series, label, layer, 8.0 * layer / elements, r["ppl"], r["base"]["mean_kld"],
                                          "" if p is None else "%.6f" % p))' "$series" "$label" "$ELEMENTS" >>"$TSV"
}

if [ -z "${REPLOT:-}" ]; then
    printf 'series\tpoint\tlayer_bytes\tbody_bpw\tppl\tkld\tpredicted_kld\n' >"$TSV"
    "$B/nsq-convert" --quiet --lossless "$MODEL" "$OUT/lossless.nsq"
    conv=$("$B/nsq-convert" --quiet --json "${TH[@]}" --bpw "$LEVELS" --router "$MODEL" "$OUT/levels.nsq")
    ELEMENTS=$($PY -c 'import json, sys; print(json.loads(sys.argv[1])["body_elements"])' "$conv")
    # Resident weight bytes at full depth and at depth 0, from runs without a budget.
    peak() { "$B/nsq-perplexity" --quiet --json "${TH[@]}" --max-windows 1 "$@" "$OUT/levels.nsq" "$TEXT" |
        $PY -c 'import json, sys; r = json.load(sys.stdin); print(r["weights_peak_bytes"], r["weights_pinned_bytes"])'; }
    read -r full pinned < <(peak)
    read -r bases _ < <(peak --refine-levels 0)
    for frac in $FRACS; do
        budget=$($PY -c "print(int($pinned + $frac * ($full - $pinned)))")
        if [ "$budget" -ge "$bases" ]; then
            ppl "$OUT/levels.nsq" levels "$frac" --max-memory "$budget"
        else # the bases do not fit: skip blocks
            ppl "$OUT/levels.nsq" levels "$frac" --max-memory "$budget" --route static
        fi
        ppl "$OUT/levels.nsq" skiponly "$frac" --max-memory "$budget" --route skip-only
    done
    for k in $(seq 0 $(($(tr -cd , <<<"$LEVELS" | wc -c)))); do # every block at depth k
        ppl "$OUT/levels.nsq" depth "$k" --refine-levels "$k"
    done
    for b in $DIRECT; do
        "$B/nsq-convert" --quiet "${TH[@]}" --bpw "$b" "$MODEL" "$OUT/direct-$b.nsq"
        ppl "$OUT/direct-$b.nsq" direct "$b"
    done
else
    [ "$REPLOT" -ef "$TSV" ] || cp "$REPLOT" "$TSV"
fi

echo "| series | point | layer MiB | body bpw | PPL | mean KLD | predicted KLD |"
echo "|---|---|---|---|---|---|---|"
awk -F'\t' 'NR > 1 { printf "| %s | %s | %.3f | %.3f | %.3f | %.5f | %s |\n", $1, $2, $3 / 1048576, $4, $5, $6, $7 == "" ? "–" : sprintf("%.5f", $7) }' "$TSV"
if command -v gnuplot >/dev/null; then
    for s in levels skiponly direct depth; do awk -F'\t' -v s=$s '$1 == s { print $4, $6 }' "$TSV" | sort -n >"$OUT/$s.dat"; done
    gnuplot -e "set terminal pngcairo size 800,520 font 'sans,10'; set output '$OUT/budget.png';
        set logscale y; set xrange [0.5:6]; set xlabel 'resident bits per layer weight (body bpw)'; set ylabel 'mean KLD vs lossless';
        set grid; set key top right; set title 'tiny-llama: one file under a memory budget';
        plot '$OUT/levels.dat' with linespoints pt 7 lw 2 title 'one file, --bpw $LEVELS: depths by predicted damage',
             '$OUT/skiponly.dat' with linespoints pt 5 title 'same file, skip-only routing',
             '$OUT/depth.dat' with points pt 6 ps 2 lw 2 title 'same file, every block at one depth',
             '$OUT/direct.dat' with linespoints pt 9 title 'a file converted for each size',
             'bench/llamacpp.tsv' using 2:3 with points pt 4 ps 1.3 lc rgb 'black' title 'llama.cpp + imatrix'"
    echo "plot: $OUT/budget.png" >&2
fi
