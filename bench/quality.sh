#!/bin/bash
# Quality per bit: each conversion mode against the lossless file, on the
# evaluation text, calibrated (where a mode is) on a separate text. Prints a
# markdown table and writes OUT_DIR/quality.tsv and OUT_DIR/quality.png (gnuplot).
#   bench/quality.sh [BUILD_DIR] [OUT_DIR] [MODEL...]   (after `make`)
# Environment: CALIB (default ../shared/corpus/calib.txt), CALIB_TOKENS (default
# 16384), CALIB_PROBE (default 1024), MAX_WINDOWS (default: the whole text;
# windows of 256 tokens), ACT (exact: f32 activations, the weights alone, as
# the default; int8: the runtime's default activations too), REPLOT (a
# quality.tsv from an earlier run: only print its table and plot it), ONLY (a
# grep -E pattern: run only the modes whose name matches), PY (python3 with
# numpy; default /usr/bin/python3), THREADS (--threads for every tool).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
OUT=${2:-$(mktemp -d)}
TEXT=fixtures/corpus/eval-dev.txt
CALIB=${CALIB:-../shared/corpus/calib.txt}
CT=${CALIB_TOKENS:-16384}
CP=${CALIB_PROBE:-1024}
WINDOWS=()
[ -n "${MAX_WINDOWS:-}" ] && WINDOWS=(--max-windows "$MAX_WINDOWS")
TH=()
[ -n "${THREADS:-}" ] && TH=(--threads "$THREADS")
ACTS=(--exact)
[ "${ACT:-exact}" = int8 ] && ACTS=()
PY=${PY:-/usr/bin/python3}
[ -n "${REPLOT:-}" ] || [ -r "$CALIB" ] || { echo "bench/quality.sh: calibration text $CALIB not readable (set CALIB)" >&2; exit 2; }
# name|options (group|...: the series each row belongs to in the plot)
MODES=(
    "uniform 4-bit (min/max)|fixed|--tiers 0:100:0"
    "uniform 2-bit (min/max)|fixed|--tiers 0:0:100"
    "seed split 10:20:70|seed|--tiers 10:20:70"
    "seed split 10:20:70 + calib|seedc|--tiers 10:20:70 --calib $CALIB --calib-tokens $CT --calib-probe $CP"
    "--bpw 2.5 + calib, groups of 128|bpw|--scheme tiered --bpw 2.5 --group-size 128 --calib $CALIB --calib-tokens $CT --calib-probe $CP"
    "--bpw 3.0 + calib|bpw|--scheme tiered --bpw 3.0 --calib $CALIB --calib-tokens $CT --calib-probe $CP"
    "--bpw 3.5 + calib|bpw|--scheme tiered --bpw 3.5 --calib $CALIB --calib-tokens $CT --calib-probe $CP"
    "--bpw 4.5 + calib|bpw|--scheme tiered --bpw 4.5 --calib $CALIB --calib-tokens $CT --calib-probe $CP"
    "--bpw 6.0 + calib|bpw|--scheme tiered --bpw 6.0 --calib $CALIB --calib-tokens $CT --calib-probe $CP"
    "lattice --bpw 2.5 + calib|lattice|--scheme lattice --bpw 2.5 --calib $CALIB --calib-tokens $CT --calib-probe $CP"
    "lattice --bpw 3.0 + calib|lattice|--scheme lattice --bpw 3.0 --calib $CALIB --calib-tokens $CT --calib-probe $CP"
    "lattice --bpw 3.5 + calib|lattice|--scheme lattice --bpw 3.5 --calib $CALIB --calib-tokens $CT --calib-probe $CP"
    "lattice --bpw 4.0 + calib|lattice|--scheme lattice --bpw 4.0 --calib $CALIB --calib-tokens $CT --calib-probe $CP"
    "lattice --bpw 4.5 + calib|lattice|--scheme lattice --bpw 4.5 --calib $CALIB --calib-tokens $CT --calib-probe $CP"
    "lattice --bpw 5.0 + calib|lattice|--scheme lattice --bpw 5.0 --calib $CALIB --calib-tokens $CT --calib-probe $CP"
    "lattice --bpw 4.0, no calibration|latticenc|--scheme lattice --bpw 4.0 --no-calib"
    "default (lattice, 4 bpw, built-in text)|default|"
    "default --bpw 3.0 (built-in text)|default|--bpw 3.0"
    "default --bpw 2.5 (built-in text)|default|--bpw 2.5"
)
shift 2 || true
MODELS=("$@")
[ $# -gt 0 ] || MODELS=(tiny-llama tiny-gpt2)
mkdir -p "$OUT"
TSV="$OUT/quality.tsv"
echo "| model | mode | body bpw | file bpw | PPL | ΔPPL % | mean KLD | top-1 % |"
echo "|---|---|---|---|---|---|---|---|"
if [ -n "${REPLOT:-}" ]; then
    [ "$REPLOT" -ef "$TSV" ] || cp "$REPLOT" "$TSV"
    awk -F'\t' 'NR > 1 { printf "| %s | %s | %.3f | %.3f | %.3f | %+.2f | %.5f | %.2f |\n", $1, $2, $4, $5, $6, $7, $8, $9 }' "$TSV"
    MODELS=()
fi
[ -n "${REPLOT:-}" ] || printf 'model\tmode\tseries\tbody_bpw\tfile_bpw\tppl\tdelta_ppl\tkld\ttop1\tcalib_s\n' >"$TSV"
for model in "${MODELS[@]}"; do
    base="$OUT/$model-lossless.nsq"
    "$B/nsq-convert" --quiet --lossless "fixtures/models/$model" "$base"
    for entry in "${MODES[@]}"; do
        IFS='|' read -r name series args <<<"$entry"
        [ -z "${ONLY:-}" ] || grep -qE -- "$ONLY" <<<"$name" || continue
        f="$OUT/$model-$(echo "$args" | tr -c 'a-z0-9' '_').nsq"
        # shellcheck disable=SC2086
        conv=$("$B/nsq-convert" --quiet --json "${TH[@]}" $args "fixtures/models/$model" "$f")
        ppl=$("$B/nsq-perplexity" --quiet --json "${TH[@]}" "${WINDOWS[@]}" "${ACTS[@]}" --kld "$base" "$f" "$TEXT")
        $PY - "$model" "$name" "$series" "$conv" "$ppl" "$TSV" <<'PY'
import json, sys
model, name, series, conv, ppl, tsv = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), json.loads(sys.argv[5]), sys.argv[6]
b = ppl["base"]
row = (model, name, series, conv["bpw_body"], conv["bpw_file"], ppl["ppl"], b["delta_ppl_percent"], b["mean_kld"],
       b["top1_agreement_percent"], conv["calibration_seconds"] or 0)
with open(tsv, "a") as f:
    f.write("%s\t%s\t%s\t%.4f\t%.4f\t%.4f\t%.3f\t%.6f\t%.3f\t%.1f\n" % row)
print("| %s | %s | %.3f | %.3f | %.3f | %+.2f | %.5f | %.2f |" % ((row[0], row[1]) + row[3:9]))
PY
    done
done
[ -n "${REPLOT:-}" ] && mapfile -t MODELS < <(awk -F'\t' 'NR > 1 && !seen[$1]++ { print $1 }' "$TSV")
if command -v gnuplot >/dev/null; then
    gp="set terminal pngcairo size 1100,460 font 'sans,10'; set output '$OUT/quality.png'; set multiplot layout 1,${#MODELS[@]};"
    gp+="set logscale y; set xrange [2:8.5]; set xlabel 'body bits per weight'; set ylabel 'mean KLD vs lossless'; set grid; set key top right;"
    for model in "${MODELS[@]}"; do
        for s in bpw seed seedc fixed lattice latticenc default; do
            awk -F'\t' -v m="$model" -v s="$s" '$1 == m && $3 == s { print $4, $8 }' "$TSV" >"$OUT/$model-$s.dat"
        done
        d="$OUT/$model"
        gp+="set title '$model'; plot '$d-bpw.dat' with linespoints pt 7 title '--bpw + calib',"
        gp+=" '$d-seed.dat' with points pt 5 ps 1.5 title 'seed split', '$d-seedc.dat' with points pt 9 ps 1.5 title 'seed split + calib',"
        gp+=" '$d-fixed.dat' with points pt 13 ps 1.5 title 'uniform 4 / 2-bit (min/max)',"
        gp+=" '$d-lattice.dat' with linespoints pt 9 lw 2 title 'lattice --bpw + calib', '$d-latticenc.dat' with points pt 11 ps 1.5 title 'lattice, no calibration',"
        gp+=" '$d-default.dat' with points pt 6 ps 2 lw 2 title 'defaults (built-in text)'"
        [ "$model" = tiny-llama ] && gp+=", 'bench/llamacpp.tsv' using 2:3 with points pt 4 ps 1.3 lc rgb 'black' title 'llama.cpp + imatrix'"
        gp+=";"
    done
    gnuplot -e "$gp unset multiplot"
    echo "plot: $OUT/quality.png" >&2
fi
