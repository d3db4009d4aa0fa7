# tests/arch.sh - the runtime's architecture-specific features, checked against
# an independent float64 numpy reference (tests/ref_forward.py). Sourced by
# tests/run.sh, whose check helper and $TMP it uses:
#   arch_tests BUILD_DIR
# Checkpoints made by tests/gen_hf.py (f32, so --lossless keeps every weight
# bit-exact) are generated once under $TMP/arch-models, with their reference
# logits; each build directory's outputs go to $TMP/arch-<dir>.
#
# Every model is compared with the reference at a tight tolerance, and each
# feature is shown to take effect: the runtime's logits are far (> 100x the
# tolerance) from the reference with that feature switched off (Mistral's
# sliding window, Qwen2's q/k/v biases, linear and llama3 RoPE scaling, Qwen3's
# q/k norms, Phi-3's longrope and window, Gemma 2's soft-capping and its window
# on every other layer).
# Greedy decoding checks the one-position-at-a-time path past the prompt, and
# a default (quantized) conversion must run. The reference itself is checked
# once against the PyTorch logits of the five bundled models.
#
# With gen_hf.py's weights (std 0.02) the attention scores are ~0.02, the
# attention near uniform and RoPE barely matters: switching the rope scaling
# off moves the logits by only ~5e-3 of their size. So the q and k
# projections (weights and biases) are scaled by AR_SHARPEN after generation,
# which makes where a key sits count (8e-2 to 1.5e-1 for the rope scaling).
# Measured on x86-64 (plain -O3 and ASan builds alike): runtime vs reference
# 2.2e-7 .. 4.0e-7 of max |logit|, features switched off 8.4e-2 .. 7.2e-1 (Qwen3,
# Phi-3, Gemma 2: 7.5e-2 and more).

AR_PY=/usr/bin/python3
AR_IDS=1,17,42,99,5,63,120,7,88,31,76,3 # 12 positions: 8 of them past Mistral's window of 4
AR_TOL=1e-5                             # runtime vs reference: max |diff| <= AR_TOL * max |logit|
AR_FAR=1e-3                             # a feature switched off: max |diff| > AR_FAR * max |logit| (100x)
AR_TORCH_TOL=1e-3                       # ref_forward.py vs the PyTorch fixtures (measured 3.1e-4, 3.5e-4)
AR_SHARPEN=4
AR_CHECKED_REF=

# name|gen_hf.py arguments (--dtype f32 --ctx 64 added to each)
AR_MODELS=(
    "llama|--arch llama"
    "llama-v5|--arch llama --config-style v5"
    "mistral|--arch mistral --sliding-window 4"
    "mistral-v5|--arch mistral --sliding-window 4 --config-style v5"
    "qwen2-tied|--arch qwen2 --tied"
    "qwen2-untied|--arch qwen2 --config-style v5"
    "gpt2-tied|--arch gpt2 --tied"
    "gpt2-untied|--arch gpt2 --config-style v5"
    "llama-linear|--arch llama --rope-scaling linear:2.0"
    "llama-linear-v5|--arch llama --rope-scaling linear:2.0 --config-style v5"
    "llama-llama3|--arch llama --rope-scaling llama3:8.0"
    "llama-llama3-v5|--arch llama --rope-scaling llama3:8.0 --config-style v5"
    "qwen3|--arch qwen3 --head-dim 24"
    "qwen3-v5|--arch qwen3 --config-style v5 --tied"
    "phi3|--arch phi3 --rope-scaling longrope:2"
    "phi3-v5|--arch phi3 --config-style v5 --rope-scaling longrope:2 --sliding-window 4"
    "gemma2|--arch gemma2 --sliding-window 4 --softcap 1.0:1.0 --query-pre-attn-scalar 8"
    "gemma2-v5|--arch gemma2 --config-style v5 --sliding-window 4 --softcap 1.0:1.0 --query-pre-attn-scalar 8 --head-dim 24"
    "gemma2-one-layer|--arch gemma2 --layers 1 --sliding-window 4 --softcap 1.0:1.0"
)

# name|ref_forward.py option|what the check shows
AR_FEATURES=(
    "mistral|--no-window|mistral applies its sliding window"
    "mistral-v5|--no-window|mistral (v5 config) applies its sliding window"
    "qwen2-tied|--no-bias|qwen2 tied applies the q/k/v biases"
    "qwen2-untied|--no-bias|qwen2 untied applies the q/k/v biases"
    "llama-linear|--no-rope-scaling|llama applies rope linear:2.0"
    "llama-linear-v5|--no-rope-scaling|llama (v5 config) applies rope linear:2.0"
    "llama-llama3|--no-rope-scaling|llama applies rope llama3:8.0"
    "llama-llama3-v5|--no-rope-scaling|llama (v5 config) applies rope llama3:8.0"
    "qwen3|--no-qk-norm|qwen3 applies its per-head q/k norms"
    "qwen3-v5|--no-qk-norm|qwen3 (v5 config) applies its per-head q/k norms"
    "phi3|--no-rope-scaling|phi3 applies longrope (short factors and attention factor)"
    "phi3-v5|--no-window|phi3 (v5 config) applies its sliding window"
    "gemma2|--no-softcap|gemma2 applies attention and logit soft-capping"
    "gemma2|--no-window|gemma2 applies its window on every other layer"
    "gemma2-v5|--no-softcap|gemma2 (v5 config) applies attention and logit soft-capping"
)

ar_model() { echo "$TMP/arch-models/$1"; }
ar_ref() { echo "$(ar_model "$1")${2:-}.ref.f32"; } # ar_ref NAME [OPTION]: reference logits for AR_IDS

# Scales the q and k projections of f32 checkpoints in place (see above).
ar_sharpen() { # ar_sharpen FACTOR DIR...
    "$AR_PY" - "$@" <<'EOF'
import json, struct, sys
import numpy as np
f = np.float32(sys.argv[1])
for d in sys.argv[2:]:
    cfg = json.load(open(d + "/config.json"))
    path = d + "/model.safetensors"
    raw = bytearray(open(path, "rb").read())
    n = struct.unpack("<Q", raw[:8])[0]
    done = 0
    for name, e in json.loads(raw[8:8 + n]).items():
        if name == "__metadata__":
            continue
        a, b = (8 + n + o for o in e["data_offsets"])
        x = np.frombuffer(raw[a:b], "<f4").reshape(e["shape"]).copy()
        if ".self_attn.q_proj." in name or ".self_attn.k_proj." in name:
            x *= f
        elif ".attn.c_attn." in name:  # Conv1D [in][3*H] and bias [3*H]: q and k are the first 2*H outputs
            x[..., :2 * cfg["n_embd"]] *= f
        elif ".self_attn.qkv_proj." in name:  # Phi-3: rows q, k, v
            hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
            x[:(cfg["num_attention_heads"] + cfg["num_key_value_heads"]) * hd] *= f
        else:
            continue
        assert e["dtype"] == "F32", name
        raw[a:b] = x.astype("<f4").tobytes()
        done += 1
    if not done:
        sys.exit("no q/k projections in " + path)
    open(path, "wb").write(raw)
EOF
}

# A llama3 rope_scaling whose thresholds fall inside head_dim 16's wavelengths
# (6.3 .. 19869 positions): original context 64, low/high factors 2/8, so the
# frequencies are kept (1), smoothed (1) and divided by the factor (6). With
# the stock 8192/1/4 only the slowest two change, too little to see.
ar_llama3_small() { # ar_llama3_small DIR
    sed -i 's/"original_max_position_embeddings": 8192/"original_max_position_embeddings": 64/
s/"low_freq_factor": 1.0/"low_freq_factor": 2.0/
s/"high_freq_factor": 4.0/"high_freq_factor": 8.0/' "$1/config.json" || return 1
    if [ "$(grep -cE '"(original_max_position_embeddings": 64|low_freq_factor": 2.0|high_freq_factor": 8.0)' "$1/config.json")" != 3 ]; then
        echo "$1/config.json: llama3 parameters not rewritten"
        return 1
    fi
}

# Generates the checkpoints not generated yet (one gen_hf.py run for all),
# then the reference logits not computed yet (one ref_forward.py run).
ar_generate() {
    local spec name d todo=()
    mkdir -p "$TMP/arch-models"
    for spec in "${AR_MODELS[@]}"; do
        name=${spec%%|*}
        [ -d "$(ar_model "$name")" ] || todo+=("$name")
    done
    if [ ${#todo[@]} -gt 0 ]; then
        local parts=()
        for spec in "${AR_MODELS[@]}"; do
            name=${spec%%|*}
            [ -d "$(ar_model "$name")" ] || printf '%q %s --dtype f32 --ctx 64\n' "$(ar_model "$name").part" "${spec#*|}"
        done | "$AR_PY" tests/gen_hf.py --batch || return 1
        for name in "${todo[@]}"; do parts+=("$(ar_model "$name").part"); done
        ar_sharpen "$AR_SHARPEN" "${parts[@]}" || return 1
        for name in "${todo[@]}"; do
            d=$(ar_model "$name")
            rm -f "$(ar_ref "$name")" "$d"--*.ref.f32
            if [[ $name == llama-llama3* ]]; then ar_llama3_small "$d.part" || return 1; fi
            mv "$d.part" "$d" || return 1
        done
    fi
    {
        for spec in "${AR_MODELS[@]}"; do echo "${spec%%|*}|"; done
        for spec in "${AR_FEATURES[@]}"; do echo "${spec%|*}"; done
    } | while IFS='|' read -r name opt; do
        [ -s "$(ar_ref "$name" "$opt")" ] || printf '%q %s %q %s\n' "$(ar_model "$name")" "$AR_IDS" "$(ar_ref "$name" "$opt")" "$opt"
    done | "$AR_PY" tests/ref_forward.py --batch
}

# GOT within AR_TOL of WANT; with OFF, also more than AR_FAR away from OFF.
# Plain Python (no numpy import): a few thousand floats.
ar_compare() { # ar_compare GOT.f32 WANT.f32 [OFF.f32]
    "$AR_PY" - "$AR_TOL" "$AR_FAR" "$@" <<'EOF'
import array, os, sys
tol, far, paths = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]

def load(p):
    a = array.array("f")
    with open(p, "rb") as f:
        a.frombytes(f.read())
    if sys.byteorder != "little":
        a.byteswap()
    return a

def rel(got, want):
    return max(abs(x - y) for x, y in zip(got, want)) / max(abs(y) for y in want)

got, want = load(paths[0]), load(paths[1])
if len(got) != len(want) or not got:
    sys.exit("%s: %d logits, %s has %d" % (paths[0], len(got), paths[1], len(want)))
r = rel(got, want)
print("vs %s: max |diff| %.3g of max |logit| (want <= %g)" % (os.path.basename(paths[1]), r, tol))
bad = not r <= tol
if len(paths) == 3:
    off = load(paths[2])
    r = rel(got, off) if len(off) == len(got) else 0.0
    print("vs %s: max |diff| %.3g of max |logit| (want > %g)" % (os.path.basename(paths[2]), r, far))
    bad |= not r > far
sys.exit(bad)
EOF
}

# Converts NAME --lossless and dumps the runtime's logits for AR_IDS.
ar_run() { # ar_run B NAME: prints the logits file
    local b=$1 m=$ARD/$2
    "$b/nsq-convert" "$(ar_model "$2")" "$m.nsq" --lossless --quiet >&2 || { echo "nsq-convert --lossless $2 failed" >&2; return 1; }
    "$b/nsq-run" "$m.nsq" --prompt-ids "$AR_IDS" -n 0 --dump-logits "$m.f32" >&2 || { echo "nsq-run $2 failed" >&2; return 1; }
    echo "$m.f32"
}

ar_matches() { # ar_matches B NAME
    local got
    got=$(ar_run "$1" "$2") && ar_compare "$got" "$(ar_ref "$2")"
}

ar_feature() { # ar_feature B NAME OPTION: matches the reference, far from it with OPTION
    local got=$ARD/$2.f32
    [ -s "$got" ] || got=$(ar_run "$1" "$2") || return 1
    ar_compare "$got" "$(ar_ref "$2")" "$(ar_ref "$2" "$3")"
}

# The reference itself against the PyTorch logits of the bundled fixtures.
ar_ref_vs_torch() { # ar_ref_vs_torch MODEL
    local ref=fixtures/models/$1-ref ids
    ids=$("$AR_PY" -c 'import json, sys; print(",".join(map(str, json.load(open(sys.argv[1]))["long"]["ids"])))' "$ref/refs.json") &&
        "$AR_PY" tests/ref_forward.py "fixtures/models/$1" "$ids" "$TMP/arch-models/$1.torch-check.f32" || return 1
    AR_TOL=$AR_TORCH_TOL ar_compare "$TMP/arch-models/$1.torch-check.f32" "$ref/logits-long.f32"
}

# Incremental decoding (one position at a time past the prompt, the path
# --dump-logits does not show): each of the runtime's 8 greedy ids is the
# reference's argmax (within AR_TOL of max |logit|, for near ties) on the
# prompt followed by the ids before it.
ar_greedy() { # ar_greedy B NAME
    local b=$1 m=$ARD/$2 ids
    [ -s "$m.nsq" ] || ar_run "$b" "$2" >/dev/null || return 1
    ids=$("$b/nsq-run" "$m.nsq" --prompt-ids "$AR_IDS" -n 8 --print-ids --ignore-eos) || { echo "nsq-run exited $?"; return 1; }
    echo "ids: $ids"
    ids=${ids// /,}
    "$AR_PY" tests/ref_forward.py "$(ar_model "$2")" "$AR_IDS,$ids" "$m.greedy.f32" || return 1
    "$AR_PY" - "$m.greedy.f32" "$AR_IDS" "$ids" "$AR_TOL" <<'EOF'
import sys
import numpy as np
path, prompt, ids, tol = sys.argv[1], sys.argv[2].split(","), [int(s) for s in sys.argv[3].split(",")], float(sys.argv[4])
x = np.fromfile(path, "<f4").astype(np.float64).reshape(len(prompt) + len(ids), -1)
bad = len(ids) != 8
for k, i in enumerate(ids):
    row = x[len(prompt) - 1 + k]
    gap = (row.max() - row[i]) / np.abs(row).max()
    if gap > tol:
        print("step %d: id %d, the reference's argmax is %d (%.3g of max |logit| higher)" % (k, i, row.argmax(), gap))
        bad = True
sys.exit(bad)
EOF
}

# A TIERED (quantized) conversion runs: exit 0 and 8 ids in the vocabulary.
ar_quantized() { # ar_quantized B NAME
    local b=$1 m=$ARD/$2-q out
    "$b/nsq-convert" "$(ar_model "$2")" "$m.nsq" --quiet --scheme tiered || return 1
    out=$("$b/nsq-run" "$m.nsq" --prompt-ids "$AR_IDS" -n 8 --print-ids --ignore-eos) || { echo "nsq-run exited $?"; return 1; }
    echo "ids: $out"
    "$AR_PY" -c 'import sys; ids = [int(s) for s in sys.argv[1].split()]; sys.exit(not (len(ids) == 8 and all(0 <= i < 4096 for i in ids)))' "$out"
}

arch_tests() {
    local b=$1 spec name
    ARD=$TMP/arch-$(echo "${b%/}" | tr / _)
    rm -rf "$ARD"
    mkdir -p "$ARD"
    check "$b arch: generate checkpoints and reference logits" ar_generate
    if [ -z "$AR_CHECKED_REF" ]; then # once: it does not depend on the build
        AR_CHECKED_REF=1
        check "ref_forward.py matches PyTorch on tiny-llama" ar_ref_vs_torch tiny-llama
        check "ref_forward.py matches PyTorch on tiny-gpt2" ar_ref_vs_torch tiny-gpt2
        for name in tiny-qwen3 tiny-phi3 tiny-gemma2; do
            check "ref_forward.py matches PyTorch on $name" ar_ref_vs_torch "$name"
        done
    fi
    for spec in "${AR_MODELS[@]}"; do
        name=${spec%%|*}
        check "$b arch: nsq-run $name --lossless matches ref_forward.py" ar_matches "$b" "$name"
    done
    for spec in "${AR_FEATURES[@]}"; do
        name=${spec%%|*}
        spec=${spec#*|}
        check "$b arch: ${spec#*|}" ar_feature "$b" "$name" "${spec%%|*}"
    done
    for name in mistral qwen2-untied gpt2-untied qwen3 phi3-v5 gemma2; do
        check "$b arch: nsq-run $name greedy decoding follows ref_forward.py" ar_greedy "$b" "$name"
    done
    check "$b arch: quantized mistral generates 8 ids" ar_quantized "$b" mistral
    check "$b arch: quantized qwen2 generates 8 ids" ar_quantized "$b" qwen2-untied
    for name in qwen3 phi3 gemma2; do
        check "$b arch: quantized $name generates 8 ids" ar_quantized "$b" "$name"
    done
}
