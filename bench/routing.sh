#!/bin/bash
# Block routing under a memory budget: perplexity and peak RSS at budgets of
# 50, 65, 80 and 100 % of the file, for the router, the static policy, the
# best static skip set, random choices and the per-window oracle. Each model
# is converted with one layer per block, a 2-bit base and one 2-bit
# refinement (--tiers 0:0:100 --refine 2), the router fitted on the
# calibration text; evaluation windows are scored after their first 32 tokens
# (the prompt every policy decides from). Prints a markdown table and writes
# OUT_DIR/routing.tsv and OUT_DIR/routing.png (gnuplot).
#   bench/routing.sh [BUILD_DIR] [OUT_DIR] [MODEL...]   (after `make`)
# Environment: CALIB (default ../shared/corpus/calib.txt), ROUTER_WINDOWS
# (calibration windows of 128 tokens, default 128), MAX_WINDOWS (evaluation
# windows of CTX tokens, default 128), CTX (default 256), SEEDS (random
# policy seeds, default 5), JOBS (parallel evaluations, default: cores),
# PY (a Python 3 for the tables), REPLOT (a routing.tsv from an earlier run: only print its table and plot it).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
OUT=${2:-$(mktemp -d)}
TEXT=fixtures/corpus/eval-dev.txt
CALIB=${CALIB:-../shared/corpus/calib.txt}
RW=${ROUTER_WINDOWS:-128}
MW=${MAX_WINDOWS:-128}
CTX=${CTX:-256}
SEEDS=${SEEDS:-5}
JOBS=${JOBS:-$(nproc)}
PY=${PY:-/usr/bin/python3}
PCTS=(50 65 80 100)
shift 2 || true
MODELS=("$@")
[ $# -gt 0 ] || MODELS=(tiny-llama tiny-gpt2)
mkdir -p "$OUT"
TSV="$OUT/routing.tsv"
if [ -n "${REPLOT:-}" ]; then
    [ "$REPLOT" -ef "$TSV" ] || cp "$REPLOT" "$TSV"
else
    [ -r "$CALIB" ] || { echo "bench/routing.sh: calibration text $CALIB not readable (set CALIB)" >&2; exit 2; }
    jobs=()
    for model in "${MODELS[@]}"; do
        f="$OUT/$model-router.nsq"
        "$B/nsq-convert" --quiet --tiers 0:0:100 --refine 2 --calib "$CALIB" --calib-tokens 16384 --router \
            --router-windows "$RW" --threads "$JOBS" "fixtures/models/$model" "$f"
        "$B/nsq-inspect" --json "$f" >"$OUT/$model-inspect.json"
        size=$(stat -c %s "$f")
        for pct in "${PCTS[@]}"; do
            modes=(router static skip-only oracle)
            for s in $(seq 1 "$SEEDS"); do modes+=("random:$s"); done
            for mode in "${modes[@]}"; do jobs+=("$model $pct $((size * pct / 100)) $mode"); done
        done
    done
    # one evaluation per process, one thread each: the oracle's are the long ones, so they go first
    printf '%s\n' "${jobs[@]}" | sort -k4,4r | xargs -P "$JOBS" -L 1 sh -c \
        '"$0" --quiet --json --threads 1 --ctx '"$CTX"' --max-windows '"$MW"' --route "$4" --max-memory "$3" \
             "'"$OUT"'/$1-router.nsq" '"$TEXT"' >"'"$OUT"'/$1-$2-$(echo "$4" | tr : _).json"' "$B/nsq-perplexity"
    $PY - "$OUT" "$TSV" "${MODELS[@]}" <<'PY'
import json, sys, glob, os
out, tsv, models = sys.argv[1], sys.argv[2], sys.argv[3:]
rows = []
for model in models:
    meta = {m["key"]: m["value"] for m in json.load(open(f"{out}/{model}-inspect.json"))["metadata"]}
    size = os.path.getsize(f"{out}/{model}-router.nsq")
    for path in sorted(glob.glob(f"{out}/{model}-*-*.json")):
        name = os.path.basename(path)[len(model) + 1:-5]
        if name == "inspect": continue
        pct, mode = name.split("-", 1)
        r = json.load(open(path))
        rt = r["route"]
        rows.append([model, pct, str(rt["budget_bytes"]), mode, "%.4f" % r["ppl"], "%.0f" % rt["mean_weight_bytes"],
                     "%.1f" % r["peak_rss_mib"], str(r["weights_peak_bytes"]), str(rt["skip"]), str(rt["base"]),
                     str(rt["full"]), "%.6f" % rt["mean_predicted_damage"], str(size),
                     "%.4f" % meta["provenance.router.heldout_spearman"],
                     "%.4f" % meta["provenance.router.heldout_spearman_static"],
                     "%.4f" % meta["provenance.router.heldout_spearman_within"]])
with open(tsv, "w") as f:
    f.write("model\tpct\tbudget\tmode\tppl\tmean_weights\tpeak_rss_mib\tweights_peak\tskip\tbase\tfull\tpred\tfile\t"
            "rho_router\trho_static\trho_within\n")
    for r in rows: f.write("\t".join(r) + "\n")
PY
fi
$PY - "$TSV" <<'PY'
import sys, csv, statistics
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
models = sorted({r["model"] for r in rows}, key=lambda m: [r["model"] for r in rows].index(m))
print("| model | budget | router | static | skip only | random (5 seeds, mean) | oracle | router / static | "
      "router peak RSS MiB | weights MiB | router choices skip/base/full |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for m in models:
    for pct in ["50", "65", "80", "100"]:
        g = {r["mode"]: r for r in rows if r["model"] == m and r["pct"] == pct}
        if "router" not in g: continue
        rnd = [float(r["ppl"]) for k, r in g.items() if k.startswith("random")]
        ro, st = float(g["router"]["ppl"]), float(g["static"]["ppl"])
        print(f"| {m} | {pct} % ({int(g['router']['budget']) / 1048576:.2f} MiB) | {ro:.2f} | {st:.2f} | "
              f"{float(g['skip-only']['ppl']):.2f} | {statistics.mean(rnd):.2f} (min {min(rnd):.2f}) | "
              f"{float(g['oracle']['ppl']):.2f} | {ro / st:.3f} | {g['router']['peak_rss_mib']} | "
              f"{int(g['router']['weights_peak']) / 1048576:.2f} | "
              f"{g['router']['skip']}/{g['router']['base']}/{g['router']['full']} |")
print()
print("| model | held-out rank correlation, router | static policy | per block and choice, across prompts |")
print("|---|---|---|---|")
for m in models:
    r = next(r for r in rows if r["model"] == m)
    print(f"| {m} | {r['rho_router']} | {r['rho_static']} | {r['rho_within']} |")
PY
if command -v gnuplot >/dev/null; then
    gp="set terminal pngcairo size 1100,460 font 'sans,10'; set output '$OUT/routing.png'; set multiplot layout 1,${#MODELS[@]};"
    gp+="set logscale y; set xrange [45:105]; set yrange [30:20000]; set xlabel 'memory budget, % of the file'; set ylabel 'perplexity'; set grid; set key top right;"
    for model in "${MODELS[@]}"; do
        for s in router static skip-only oracle; do
            awk -F'\t' -v m="$model" -v s="$s" '$1 == m && $4 == s { print $2, $5 }' "$TSV" | sort -n >"$OUT/$model-$s.dat"
        done
        awk -F'\t' -v m="$model" '$1 == m && $4 ~ /^random/ { s[$2] += $5; n[$2]++ } END { for (p in s) print p, s[p] / n[p] }' \
            "$TSV" | sort -n >"$OUT/$model-random.dat"
        d="$OUT/$model"
        gp+="set title '$model'; plot '$d-router.dat' with linespoints pt 7 title 'router', '$d-static.dat' with linespoints pt 5 title 'static policy',"
        gp+=" '$d-skip-only.dat' with linespoints pt 9 title 'skip only', '$d-random.dat' with linespoints pt 13 title 'random (mean of 5)',"
        gp+=" '$d-oracle.dat' with linespoints dt 2 pt 6 title 'oracle (per window)';"
    done
    gnuplot -e "$gp unset multiplot"
    for model in "${MODELS[@]}"; do rm -f "$OUT/$model"-*.dat; done
    echo "plot: $OUT/routing.png" >&2
fi
