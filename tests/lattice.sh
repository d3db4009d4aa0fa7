# tests/lattice.sh - nsq-convert --scheme lattice end to end: files that
# verify and inspect as LATTICE within their bit budget, that the runtime runs
# (int8 and --exact alike), KL divergences against the lossless model that
# order as they should, calibration, determinism and usage errors. Sourced by
# tests/run.sh, whose check/exit_code/stderr_says helpers and $TMP it uses:
#   lattice_tests BUILD_DIR
# The divergences and the calibrated conversions run only against tools built
# without sanitizers; the others are --no-calib (quick, and what they test
# does not depend on calibration).

LT_PY=/usr/bin/python3
LT_TEXT=fixtures/corpus/eval-dev.txt
LT_CALIB=(--calib fixtures/corpus/calib-router.txt --calib-tokens 1024 --calib-probe 128)
LT_IDS=1,450,495,310,1046,338,263

lt_sanitized() { grep -aqE '__(asan|ubsan|msan|tsan)_' "$1/nsq-convert"; }

lt_convert() { # lt_convert B MODEL NAME [OPTIONS...]: $LTD/NAME.nsq and its JSON summary
    local b=$1 model=$2 out=$LTD/$3.nsq
    shift 3
    rm -f "$out"
    "$b/nsq-convert" "fixtures/models/$model" "$out" --quiet --json "$@" >"$out.summary"
}

# nsq-verify (with and without --model) passes; nsq-inspect names the
# feature and every layer matrix is LATTICE, out-major (rows = outputs, as
# GPT-2's transposed Conv1D weights must come out); the body takes at most
# TARGET bits per weight and no more than 0.15 below it.
lt_file_ok() { # lt_file_ok B NAME TARGET
    local b=$1 f=$LTD/$2.nsq
    "$b/nsq-verify" "$f" && "$b/nsq-verify" --model "$f" || return 1
    "$b/nsq-inspect" --tensors "$f" >"$f.txt" && grep -q "^required features: lattice" "$f.txt" &&
        grep -Eq "lattice +block [0-9]+ .*rotation block [0-9]+ +stages e8" "$f.txt" || { echo "nsq-inspect:"; head -5 "$f.txt"; return 1; }
    "$b/nsq-inspect" --json --tensors "$f" >"$f.json" || return 1
    "$LT_PY" - "$f.json" "$f.summary" "$3" <<'EOF'
import json, sys
d, s, target = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), float(sys.argv[3])
m = {e["key"]: e["value"] for e in d["metadata"]}
hidden, inter, n = m["model.hidden_size"], m["model.intermediate_size"], m["model.n_layers"]
gpt2 = m["general.architecture"] == "gpt2"
want = ({"attn.c_attn": [3 * hidden, hidden], "attn.c_proj": [hidden, hidden], "mlp.c_fc": [inter, hidden],
         "mlp.c_proj": [hidden, inter]} if gpt2 else
        {"q_proj": [hidden, hidden], "o_proj": [hidden, hidden], "gate_proj": [inter, hidden],
         "up_proj": [inter, hidden], "down_proj": [hidden, inter]})
lat = {t["name"]: t for t in d["tensors"] if t["scheme"] == "lattice"}
bad = []
if "lattice" not in d["required_features"]:
    bad.append("no lattice feature")
if len(lat) != n * (4 if gpt2 else 7):
    bad.append("%d lattice tensors" % len(lat))
for name, t in lat.items():
    key = next((k for k in want if name.endswith(k + ".weight")), None)
    if key and t["shape"] != want[key] or t["shape"][1] % t["group_size"] or not t["stages"]:
        bad.append("%s: %s, block %d, stages %s" % (name, t["shape"], t["group_size"], t["stages"]))
if not (target - 0.15 <= s["bpw_body"] <= target) or s["bpw_target"] != target:
    bad.append("bpw_body %s, target %s" % (s["bpw_body"], s["bpw_target"]))
print("; ".join(bad) or "ok: %d lattice tensors, bpw_body %s" % (len(lat), s["bpw_body"]))
sys.exit(bool(bad))
EOF
}

lt_run() { # lt_run B NAME TAG [nsq-run options]: 24 greedy ids into $LTD/NAME.TAG.ids
    local b=$1 f=$LTD/$2.nsq tag=$3
    shift 3
    "$b/nsq-run" "$f" --prompt-ids "$LT_IDS" -n 24 --ignore-eos --print-ids "$@" >"$f.$tag.ids" || return 1
    [ "$(wc -w <"$f.$tag.ids")" -eq 24 ] || { echo "want 24 ids:"; cat "$f.$tag.ids"; return 1; }
}

# lt_int8_exact B NAME: the default int8 path against --exact on the first 200
# tokens of the text: mean KL(exact || int8) below 1e-3 and every logit within
# 0.25 (the largest logit is about 16). Near-ties may flip the greedy token.
lt_int8_exact() {
    local b=$1 f=$LTD/$2.nsq ids
    ids=$(head -c 1500 "$LT_TEXT" | "$b/nsq-tokenize" "$f" --ids --add-special | tr ' ' ',' | cut -d, -f1-200) || return 1
    "$b/nsq-run" "$f" --prompt-ids "$ids" -n 1 --dump-logits "$f.int8.logits" >/dev/null &&
        "$b/nsq-run" "$f" --prompt-ids "$ids" -n 1 --exact --dump-logits "$f.exact.logits" >/dev/null || return 1
    "$LT_PY" - "$f.exact.logits" "$f.int8.logits" <<'PY'
import sys
import numpy as np
e, q = (np.fromfile(p, dtype="<f4").astype(np.float64).reshape(200, -1) for p in sys.argv[1:3])
def logp(x):
    x = x - x.max(1, keepdims=True)
    return x - np.log(np.exp(x).sum(1, keepdims=True))
kl = (np.exp(logp(e)) * (logp(e) - logp(q))).sum(1).mean()
dev = np.abs(e - q).max()
print(f"mean KL {kl:.3g}, largest logit difference {dev:.3g}")
sys.exit(not (kl < 1e-3 and dev < 0.25))
PY
}

lt_kld() { # lt_kld B NAME BASE: mean KL(BASE || NAME) on 8 windows, --exact, into $LTD/NAME.kld
    local out
    out=$("$1/nsq-perplexity" "$LTD/$2.nsq" "$LT_TEXT" --exact --kld "$LTD/$3.nsq" --max-windows 8 --json --quiet) || return 1
    "$LT_PY" -c 'import json, sys; print(json.loads(sys.argv[1])["base"]["mean_kld"])' "$out" >"$LTD/$2.kld"
}

lt_kld_below() { # lt_kld_below NAME BOUND|NAME2: NAME's KLD below a number or below NAME2's
    local a b=$2
    a=$(cat "$LTD/$1.kld") || return 1
    [ -f "$LTD/$2.kld" ] && b=$(cat "$LTD/$2.kld")
    echo "KLD of $1: $a, want below $2 ($b)"
    "$LT_PY" -c 'import sys; sys.exit(not float(sys.argv[1]) < float(sys.argv[2]))' "$a" "$b"
}

# Below the smallest budget: exit 1, the minimum named, no file; that minimum
# (rounded up) is then reachable.
lt_minimum() { # lt_minimum B
    local b=$1 min
    lt_convert "$b" tiny-llama low --scheme lattice --bpw 1.0 --no-calib 2>"$LTD/low.err"
    [ $? -eq 1 ] && [ ! -e "$LTD/low.nsq" ] || { echo "want exit 1 and no file"; cat "$LTD/low.err"; return 1; }
    min=$(sed -n 's/.*--bpw 1.000 is below what this model can reach (\([0-9.]*\) with every matrix at its fewest bits).*/\1/p' "$LTD/low.err")
    [ -n "$min" ] || { echo "no minimum named:"; cat "$LTD/low.err"; return 1; }
    min=$(awk -v m="$min" 'BEGIN { printf "%.3f", m + 0.001 }')
    lt_convert "$b" tiny-llama low --scheme lattice --bpw "$min" --no-calib && lt_file_ok "$b" low "$min"
}

# A copy of tiny-llama (sharded) with one weight of layer 0's up_proj set to +inf (bf16 0x7f80).
lt_inf_model() {
    local d=$LTD/inf-model
    rm -rf "$d" && cp -r fixtures/models/tiny-llama "$d" && chmod -R u+w "$d" &&
        $LT_PY - "$d" <<'PY'
import json, struct, sys
name = "model.layers.0.mlp.up_proj.weight"
p = sys.argv[1] + "/" + json.load(open(sys.argv[1] + "/model.safetensors.index.json"))["weight_map"][name]
b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
t = json.loads(b[8:8 + n])[name]
assert t["dtype"] == "BF16"
o = 8 + n + t["data_offsets"][0] + 2 * 1000
b[o:o + 2] = b"\x80\x7f"
open(p, "wb").write(b)
PY
}

# A file with refinement levels (--bpw 2.5,3.5,4.5): it verifies and needs
# the LATTICE_LEVELS and LATTICE_E8S features; its base and full depth are within their
# budgets; every layer block has levels.
lt_levels_ok() { # lt_levels_ok B NAME
    local b=$1 f=$LTD/$2.nsq
    "$b/nsq-verify" "$f" && "$b/nsq-verify" --model "$f" || return 1
    "$b/nsq-inspect" --json --blocks --tensors "$f" >"$f.json" || return 1
    "$LT_PY" - "$f.json" "$f.summary" <<'EOF'
import json, sys
d, s = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
bad = []
if d["required_features"] != ["lattice", "lattice_levels", "lattice_e8s"]:
    bad.append("features %s" % d["required_features"])
if not (2.35 <= s["bpw_body"] <= 2.5 and 4.35 <= s["bpw_body_with_refinements"] <= 4.5):
    bad.append("bpw %s, with levels %s" % (s["bpw_body"], s["bpw_body_with_refinements"]))
layers = [bl for bl in d["blocks"] if bl["kind"] == "layers"]
if any(len(bl["refinements"]) < 1 for bl in layers):
    bad.append("a layer block without levels: %s" % [len(bl["refinements"]) for bl in layers])
lat = [t for t in d["tensors"] if t["scheme"] == "lattice"]
if not any(t.get("refinements") for t in lat):
    bad.append("no tensor has levels")
print("; ".join(bad) or "ok: %d lattice tensors, levels per layer block %s" % (len(lat), [len(bl["refinements"]) for bl in layers]))
sys.exit(bool(bad))
EOF
}

# Loaded to depth k (each layer block's first k levels), the layer blocks
# take at most the k-th budget of --bpw X,Y,...: a block stores only the
# levels its matrices add stages to, so one that skipped a level would give a
# reader that loads k levels a deeper depth's stages.
lt_depths_within() { # lt_depths_within B NAME X,Y,...
    "$1/nsq-inspect" --json --blocks --tensors "$LTD/$2.nsq" >"$LTD/$2.depths.json" || return 1
    "$LT_PY" - "$LTD/$2.depths.json" "$3" <<'EOF'
import json, sys
d, budgets = json.load(open(sys.argv[1])), [float(x) for x in sys.argv[2].split(",")]
layer_blocks = {bl["index"] for bl in d["blocks"] if bl["kind"] == "layers"}
bits, elements = [0.0] * len(budgets), 0
for t in d["tensors"]:
    if t["block"] not in layer_blocks:
        continue
    n = 1
    for x in t["shape"]:
        n *= x
    elements += n
    for k in range(len(budgets)):
        bits[k] += 8 * (t["size"] + sum(r["size"] for r in t.get("refinements", []) if r["level"] <= k))
bpw = [b / elements for b in bits]
print("depths at %s bpw, budgets %s" % (["%.4f" % x for x in bpw], budgets))
sys.exit(any(x > budgets[k] + 1e-9 for k, x in enumerate(bpw)))
EOF
}

lt_kld_depth() { # lt_kld_depth B NAME BASE K: as lt_kld with every block at depth K, into $LTD/NAME.K.kld
    local out
    out=$("$1/nsq-perplexity" "$LTD/$2.nsq" "$LT_TEXT" --exact --refine-levels "$4" --kld "$LTD/$3.nsq" --max-windows 8 --json --quiet) || return 1
    "$LT_PY" -c 'import json, sys; print(json.loads(sys.argv[1])["base"]["mean_kld"])' "$out" >"$LTD/$2.$4.kld"
}

# Halfway between the bases and full depth, --plan predicts the quality and
# loads some levels but not all; with room for everything it loads all and
# predicts no loss.
lt_levels_plan() { # lt_levels_plan B NAME
    local b=$1 f=$LTD/$2.nsq full base
    full=$("$b/nsq-perplexity" "$f" "$LT_TEXT" --max-windows 1 --json --quiet | "$LT_PY" -c 'import json, sys; print(json.load(sys.stdin)["weights_peak_bytes"])') &&
        base=$("$b/nsq-perplexity" "$f" "$LT_TEXT" --max-windows 1 --refine-levels 0 --json --quiet | "$LT_PY" -c 'import json, sys; print(json.load(sys.stdin)["weights_peak_bytes"])') || return 1
    "$b/nsq-run" "$f" --plan --max-memory $(((full + base) / 2)) >"$f.plan" || return 1
    grep -Eq "predicted quality .*mean KL divergence 0\.0*[1-9]" "$f.plan" && grep -q "levels fit" "$f.plan" &&
        ! grep -Eq " (0|([0-9]+)) of \2 levels fit" "$f.plan" || { cat "$f.plan"; return 1; }
    "$b/nsq-run" "$f" --plan --max-memory "$full" >"$f.plan" &&
        grep -q "predicted quality .*mean KL divergence 0.00000 " "$f.plan" && grep -Eq " ([0-9]+) of \1 levels fit" "$f.plan" ||
        { cat "$f.plan"; return 1; }
}

lattice_tests() {
    local b=$1 m
    LTD=$TMP/lt-$(echo "${b%/}" | tr / _)
    rm -rf "$LTD"
    mkdir -p "$LTD"

    # ---- files ----
    for m in tiny-llama tiny-gpt2; do
        check "$b lattice: convert $m --lossless" lt_convert "$b" $m $m-ll --lossless
        check "$b lattice: convert $m --scheme lattice --bpw 3 --no-calib" lt_convert "$b" $m $m-3 --scheme lattice --bpw 3 --no-calib
        check "$b lattice: convert $m --scheme lattice --no-calib (4 bpw)" lt_convert "$b" $m $m-4 --scheme lattice --no-calib
        check "$b lattice: $m 3 bpw verifies and inspects as lattice" lt_file_ok "$b" $m-3 3
        check "$b lattice: $m 4 bpw verifies and inspects as lattice" lt_file_ok "$b" $m-4 4
        check "$b lattice: $m 3 bpw greedy decoding" lt_run "$b" $m-3 int8
        check "$b lattice: $m 4 bpw greedy decoding" lt_run "$b" $m-4 int8
    done
    check "$b lattice: the default budget is --bpw 4" bash -c "'$b/nsq-convert' fixtures/models/tiny-llama '$LTD/x4.nsq' --quiet --scheme lattice --bpw 4 --no-calib && cmp '$LTD/x4.nsq' '$LTD/tiny-llama-4.nsq'"
    check "$b lattice: same file on 1 and 2 threads" bash -c "'$b/nsq-convert' fixtures/models/tiny-gpt2 '$LTD/t1.nsq' --quiet --scheme lattice --bpw 3 --no-calib --threads 1 && cmp '$LTD/t1.nsq' '$LTD/tiny-gpt2-3.nsq'"
    check "$b lattice: the int8 path stays within KL 1e-3 of --exact" lt_int8_exact "$b" tiny-llama-4

    # ---- usage ----
    check "$b lattice: --scheme bogus is a usage error" exit_code 2 "$b/nsq-convert" fixtures/models/tiny-llama "$LTD/x.nsq" --scheme bogus
    check "$b lattice: --scheme bogus names the schemes" stderr_says "scheme is lattice or tiered, not 'bogus'" \
        "$b/nsq-convert" fixtures/models/tiny-llama "$LTD/x.nsq" --scheme bogus
    check "$b lattice: --bpw below the minimum names it, which is reachable" lt_minimum "$b"
    check "$b lattice: --refine is refused with --scheme lattice" exit_code 2 "$b/nsq-convert" fixtures/models/tiny-llama "$LTD/x.nsq" --scheme lattice --refine 2
    check "$b lattice: --tiers is refused with --scheme lattice" stderr_says "TIERED options" "$b/nsq-convert" fixtures/models/tiny-llama "$LTD/x.nsq" --scheme lattice --tiers 10:20:70
    check "$b lattice: make a model with an infinite weight" lt_inf_model
    check "$b lattice: an infinite weight fails cleanly" exit_code 1 "$b/nsq-convert" "$LTD/inf-model" "$LTD/inf.nsq" --quiet --scheme lattice --no-calib
    check "$b lattice: an infinite weight is named" stderr_says "model.layers.0.mlp.up_proj.weight: a weight is not finite" "$b/nsq-convert" "$LTD/inf-model" "$LTD/inf.nsq" --quiet --scheme lattice --no-calib
    check "$b lattice: a failed conversion leaves no file" test ! -e "$LTD/inf.nsq"
    check "$b lattice: --lossless wins over --scheme lattice" bash -c "'$b/nsq-convert' fixtures/models/tiny-llama '$LTD/xl.nsq' --quiet --scheme lattice --lossless && cmp '$LTD/xl.nsq' '$LTD/tiny-llama-ll.nsq'"
    lt_sanitized "$b" && return 0

    # ---- divergences from the lossless model ----
    check "$b lattice: convert tiny-llama TIERED --bpw 4" lt_convert "$b" tiny-llama tiered-4 --scheme tiered --bpw 4
    check "$b lattice: --scheme tiered --bpw 4 is all TIERED" bash -c "! grep -q lattice '$LTD/tiered-4.nsq.summary' && '$b/nsq-inspect' --tensors '$LTD/tiered-4.nsq' | grep -q '^required features: none' && ! '$b/nsq-inspect' --tensors '$LTD/tiered-4.nsq' | grep -q ' lattice '"
    for m in tiny-llama-3 tiny-llama-4 tiered-4; do
        check "$b lattice: KLD of $m" lt_kld "$b" $m tiny-llama-ll
    done
    for m in tiny-gpt2-3 tiny-gpt2-4; do
        check "$b lattice: KLD of $m" lt_kld "$b" $m tiny-gpt2-ll
    done
    check "$b lattice: tiny-llama 4 bpw KLD below 0.08" lt_kld_below tiny-llama-4 0.08
    check "$b lattice: tiny-llama 4 bpw KLD below TIERED --bpw 4" lt_kld_below tiny-llama-4 tiered-4
    check "$b lattice: tiny-llama 4 bpw KLD below 3 bpw" lt_kld_below tiny-llama-4 tiny-llama-3
    check "$b lattice: tiny-llama 3 bpw KLD below 0.2" lt_kld_below tiny-llama-3 0.2
    check "$b lattice: tiny-gpt2 4 bpw KLD below 0.05" lt_kld_below tiny-gpt2-4 0.05
    check "$b lattice: tiny-gpt2 4 bpw KLD below 3 bpw" lt_kld_below tiny-gpt2-4 tiny-gpt2-3
    check "$b lattice: tiny-gpt2 3 bpw KLD below 0.2" lt_kld_below tiny-gpt2-3 0.2

    # ---- calibration ----
    check "$b lattice: convert tiny-llama 3 bpw calibrated, 1 thread" lt_convert "$b" tiny-llama cal-1 --scheme lattice --bpw 3 "${LT_CALIB[@]}" --threads 1
    check "$b lattice: convert tiny-llama 3 bpw calibrated, 2 threads" lt_convert "$b" tiny-llama cal-2 --scheme lattice --bpw 3 "${LT_CALIB[@]}" --threads 2
    check "$b lattice: calibrated: same file on 1 and 2 threads" cmp "$LTD/cal-1.nsq" "$LTD/cal-2.nsq"
    check "$b lattice: calibrated file verifies and inspects as lattice" lt_file_ok "$b" cal-2 3
    check "$b lattice: calibrated on 1024 tokens" bash -c "$LT_PY -c 'import json, sys; s = json.load(open(sys.argv[1])); sys.exit(not (s[\"calibration_tokens\"] == 1024 and \"importance=calibrated\" in s[\"recipe\"]))' '$LTD/cal-2.nsq.summary'"
    check "$b lattice: calibrated greedy decoding" lt_run "$b" cal-2 int8
    check "$b lattice: KLD of calibrated 3 bpw" lt_kld "$b" cal-2 tiny-llama-ll
    check "$b lattice: calibration lowers the KLD at 3 bpw" lt_kld_below cal-2 tiny-llama-3

    # ---- refinement levels ----
    check "$b lattice: convert tiny-llama --bpw 2.5,3.5,4.5 calibrated" lt_convert "$b" tiny-llama lv --bpw 2.5,3.5,4.5 "${LT_CALIB[@]}"
    check "$b lattice: levels: verifies, LATTICE_LEVELS, within the budgets, levels in every layer block" lt_levels_ok "$b" lv
    check "$b lattice: levels: every depth within its budget" lt_depths_within "$b" lv 2.5,3.5,4.5
    check "$b lattice: convert tiny-gpt2 --bpw 3,3.5,5 --no-calib" lt_convert "$b" tiny-gpt2 gpt-lv --bpw 3,3.5,5 --no-calib
    check "$b lattice: levels: no layer block skips a level (tiny-gpt2 3,3.5,5)" lt_depths_within "$b" gpt-lv 3,3.5,5
    for k in 0 1 2; do
        check "$b lattice: levels: KLD at depth $k" lt_kld_depth "$b" lv tiny-llama-ll $k
    done
    check "$b lattice: levels: depth 1 below depth 0" lt_kld_below lv.1 lv.0
    check "$b lattice: levels: depth 2 below depth 1" lt_kld_below lv.2 lv.1
    check "$b lattice: levels: depth 1 (3.5 bpw) below a direct 3 bpw file" lt_kld_below lv.1 cal-2
    check "$b lattice: levels: --plan predicts the quality at a budget" lt_levels_plan "$b" lv
    check "$b lattice: levels: full depth under a budget that holds it decodes as without one" \
        bash -c "'$b/nsq-run' '$LTD/lv.nsq' 'The quick brown fox' -n 16 --print-ids >'$LTD/lv.a' && '$b/nsq-run' '$LTD/lv.nsq' 'The quick brown fox' -n 16 --print-ids --max-memory 64M >'$LTD/lv.b' && cmp '$LTD/lv.a' '$LTD/lv.b'"
    check "$b lattice: levels: --bpw must rise" exit_code 2 "$b/nsq-convert" fixtures/models/tiny-llama "$LTD/x.nsq" --bpw 3,2.5
    check "$b lattice: levels: at most 3 levels" stderr_says "at most 3 refinement levels" "$b/nsq-convert" fixtures/models/tiny-llama "$LTD/x.nsq" --bpw 2,3,4,5,6
    check "$b lattice: levels: not for tiered" stderr_says "is for lattice" "$b/nsq-convert" fixtures/models/tiny-llama "$LTD/x.nsq" --bpw 2.5,3.5 --scheme tiered
}
