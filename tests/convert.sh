# tests/convert.sh - tool-level tests of nsq-convert. Sourced by tests/run.sh,
# whose check/exit_code/stderr_says helpers and $TMP it uses:
#   convert_tests BUILD_DIR
# Checkpoints made by tests/gen_hf.py are generated once, under $TMP/cv-models,
# and shared by every build directory; each build directory's outputs go to
# $TMP/cv-<dir>. The costly checks (a ~25 MB model, the kill test, calibration
# on the built-in text) run only against tools built without sanitizers.

CV_PY=/usr/bin/python3
CV_LLAMA=fixtures/models/tiny-llama
CV_GPT2=fixtures/models/tiny-gpt2

# name|gen_hf.py arguments
CV_MODELS=(
    "llama-v4|--arch llama"
    "llama-v5|--arch llama --config-style v5"
    "llama-linear-v4|--arch llama --rope-scaling linear:2.0"
    "llama-linear-v5|--arch llama --rope-scaling linear:2.0 --config-style v5"
    "llama-llama3|--arch llama --rope-scaling llama3:8.0"
    "llama-f32|--arch llama --dtype f32"
    "llama-f16|--arch llama --dtype f16"
    "llama-sharded|--arch llama --shards 3 --layers 3"
    "mistral-v4|--arch mistral --sliding-window 2048"
    "mistral-v5|--arch mistral --sliding-window 2048 --config-style v5"
    "qwen2-tied|--arch qwen2 --tied"
    "qwen2-untied|--arch qwen2 --config-style v5"
    "gpt2-tied|--arch gpt2 --tied --dtype f32"
    "gpt2-untied|--arch gpt2 --dtype f16 --config-style v5"
    "err-truncated|--arch llama --shards 3"
    "err-header-length|--arch llama --corrupt header-length"
    "err-offsets|--arch llama --corrupt offsets"
    "err-i64|--arch llama --tensor-dtype model.layers.1.self_attn.v_proj.weight=I64"
    "err-missing|--arch llama --drop model.layers.1.mlp.up_proj.weight"
    "err-extra|--arch llama --extra model.layers.0.self_attn.rotary_scale.weight"
    "err-shape|--arch llama"
    "err-arch|--arch llama"
    "err-no-config|--arch llama"
    "err-no-tokenizer|--arch llama"
)
CV_BIG_ARGS="--arch llama --hidden 384 --heads 6 --kv-heads 6 --inter 1024 --layers 6 --vocab 4096"

cv_model() { echo "$TMP/cv-models/$1"; }

# The edits that turn a generated checkpoint into a broken one.
cv_break() { # cv_break NAME DIR
    case $1 in
    err-truncated) truncate -s -100 "$2/model-00002-of-00003.safetensors" ;;
    err-shape) sed -i 's/"intermediate_size": 128/"intermediate_size": 256/' "$2/config.json" ;;
    err-arch) sed -i 's/"LlamaForCausalLM"/"FooForCausalLM"/' "$2/config.json" ;;
    err-no-config) rm "$2/config.json" ;;
    err-no-tokenizer) rm "$2/tokenizer.json" "$2/tokenizer_config.json" ;;
    esac
}

# Generates every checkpoint not generated yet (one gen_hf.py run for all).
cv_generate() {
    local spec name todo=()
    mkdir -p "$TMP/cv-models"
    for spec in "${CV_MODELS[@]}"; do
        name=${spec%%|*}
        [ -d "$(cv_model "$name")" ] || todo+=("$name")
    done
    [ ${#todo[@]} -gt 0 ] || return 0
    for spec in "${CV_MODELS[@]}"; do
        name=${spec%%|*}
        [ -d "$(cv_model "$name")" ] || printf '%q %s\n' "$(cv_model "$name").part" "${spec#*|}"
    done | "$CV_PY" tests/gen_hf.py --batch || return 1
    for name in "${todo[@]}"; do
        cv_break "$name" "$(cv_model "$name").part" && mv "$(cv_model "$name").part" "$(cv_model "$name")" || return 1
    done
}

# Python assertions over nsq-inspect --json output (d; m: metadata by key,
# t: tensors by name, blocks) and nsq-convert --json output (s).
cv_assert() { # cv_assert INSPECT_JSON SUMMARY_JSON|- EXPRS... (each line of each argument one expression)
    "$CV_PY" - "$@" <<'EOF'
import json, os, sys
d = json.load(open(sys.argv[1]))
s = json.load(open(sys.argv[2])) if sys.argv[2] != "-" else {}
m = {e["key"]: e["value"] for e in d.get("metadata", [])}
t = {e["name"]: e for e in d.get("tensors") or []}
blocks = d.get("blocks") or []

def layer_matrices():
    return [x for n, x in t.items() if x["scheme"] == "tiered" and (".layers." in n or ".h." in n)]

def split_is(a, b, c):
    """Each layer matrix has its groups at Q8/Q4/Q2 in the fractions a/b/c."""
    ok = bool(layer_matrices())
    for x in layer_matrices():
        n = sum(x["tiers"].values())
        q8, q4 = x["tiers"]["q8"], x["tiers"]["q4"]
        ok &= abs(q8 - a * n) <= 1 and abs(q8 + q4 - (a + b) * n) <= 1 and x["tiers"]["f16"] == 0
    return ok

def layer_schemes():
    """The schemes of the layer matrices (the 2-D weights of the layers)."""
    return {x["scheme"] for n, x in t.items() if (".layers." in n or ".h." in n) and n.endswith(".weight") and len(x["shape"]) == 2}

def same_as(name, keys=("recipe", "body_bytes", "tiers", "rmse_quantized")):
    """The summary of NAME.nsq, next to this one, agrees on KEYS: the same quantization."""
    o = json.load(open(os.path.join(os.path.dirname(sys.argv[2]), name + ".nsq.summary")))
    return all(s[k] == o[k] for k in keys)

def schemes(prefix=""):
    return {x["scheme"] for n, x in t.items() if n.startswith(prefix)}

bad = 0
for expr in [line for arg in sys.argv[3:] for line in arg.split("\n") if line.strip()]:
    try:
        ok = eval(expr)
    except Exception as e:
        ok, expr = False, "%s (%s: %s)" % (expr, type(e).__name__, e)
    if not ok:
        print("assertion failed:", expr)
        bad = 1
if bad:
    print("metadata:", {k: v for k, v in m.items() if not k.startswith("provenance.source.tensors")})
    if s:
        print("summary:", s)
sys.exit(bad)
EOF
}

# Converts SRC to $CVD/NAME.nsq, which must pass nsq-verify and roundtrip
# (RT: "exact" or a tolerance), then holds the assertions.
cv_mode() { # cv_mode B SRC NAME RT EXPRS OPTIONS... (EXPRS: one per line)
    local b=$1 src=$2 out=$CVD/$3.nsq rt=$4 exprs=$5
    shift 5
    rm -f "$out"
    "$b/nsq-convert" "$src" "$out" --quiet --json "$@" >"$out.summary" || { echo "nsq-convert $src $out $* failed"; return 1; }
    "$b/nsq-verify" "$out" || return 1
    if [ "$rt" = exact ]; then
        "$b/tests/roundtrip" "$src" "$out" --exact || return 1
    else
        "$b/tests/roundtrip" "$src" "$out" --tol "$rt" || return 1
    fi
    "$b/nsq-inspect" --json --tensors --blocks "$out" >"$out.json" || return 1
    [ -z "$exprs" ] || cv_assert "$out.json" "$out.summary" "$exprs"
}

cv_same_meta() { # cv_same_meta A.json B.json PREFIX...: equal metadata under the prefixes
    "$CV_PY" - "$@" <<'EOF'
import json, sys
def meta(p):
    return {e["key"]: e["value"] for e in json.load(open(p))["metadata"] if e["key"].startswith(tuple(sys.argv[3:]))}
a, b = meta(sys.argv[1]), meta(sys.argv[2])
for k in sorted(set(a) | set(b)):
    if a.get(k) != b.get(k):
        print("%s: %r vs %r" % (k, a.get(k), b.get(k)))
sys.exit(a != b or not a)
EOF
}

cv_same_output() { # cv_same_output B SRC [OPTIONS...] -- [OPTIONS...]: both conversions give the same bytes
    local b=$1 src=$2 x=() y=()
    shift 2
    while [ $# -gt 0 ] && [ "$1" != -- ]; do x+=("$1"); shift; done
    shift
    y=("$@")
    rm -f "$CVD/same-a.nsq" "$CVD/same-b.nsq"
    "$b/nsq-convert" "$src" "$CVD/same-a.nsq" --quiet "${x[@]}" || return 1
    "$b/nsq-convert" "$src" "$CVD/same-b.nsq" --quiet "${y[@]}" || return 1
    cmp "$CVD/same-a.nsq" "$CVD/same-b.nsq"
}

# A failed conversion: exit status 1, stderr matching PATTERN (grep -E), and
# the output directory as it was: an OUT.nsq there is unchanged, no new or
# temporary file appears; into an empty directory, nothing appears.
# CV_WRAP, if set, is a command prefix (e.g. to lower ulimit -f).
CV_WRAP=()
cv_fail_into() { # cv_fail_into B DIR PATTERN SRC [OPTIONS...]
    local b=$1 dir=$2 pat=$3 src=$4 before after rc
    shift 4
    before=$(ls -A "$dir")
    "${CV_WRAP[@]}" "$b/nsq-convert" "$src" "$dir/OUT.nsq" --quiet "$@" >/dev/null 2>"$CVD/fail.err"
    rc=$?
    after=$(ls -A "$dir")
    [ $rc -eq 1 ] || { echo "exit $rc, want 1: nsq-convert $src $dir/OUT.nsq $*"; cat "$CVD/fail.err"; return 1; }
    grep -Eq -- "$pat" "$CVD/fail.err" || { echo "stderr lacks /$pat/:"; cat "$CVD/fail.err"; return 1; }
    [ "$before" = "$after" ] || { echo "$dir: before: [$before] after: [$after]"; return 1; }
    [ ! -e "$dir/OUT.nsq" ] || cmp "$CVD/ref.nsq" "$dir/OUT.nsq" || { echo "$dir/OUT.nsq changed"; return 1; }
}

cv_fails() { # cv_fails B PATTERN SRC [OPTIONS...]
    local b=$1 pat=$2 src=$3 dir=$CVD/fail
    shift 3
    rm -rf "$dir"
    mkdir -p "$dir/existing" "$dir/empty"
    cp "$CVD/ref.nsq" "$dir/existing/OUT.nsq"
    echo notes >"$dir/existing/notes.txt"
    cv_fail_into "$b" "$dir/existing" "$pat" "$src" "$@" || return 1
    cv_fail_into "$b" "$dir/empty" "$pat" "$src" "$@"
}

cv_fails_efbig() { # cv_fails_efbig B PATTERN SRC [OPTIONS...]: writes fail with EFBIG past 2000 KiB
    CV_WRAP=(bash -c 'trap "" XFSZ; ulimit -f 2000; exec "$@"' efbig)
    cv_fails "$@"
    local rc=$?
    CV_WRAP=()
    return $rc
}

# An output directory the converter cannot create files in.
cv_unwritable() { # cv_unwritable B
    local b=$1 dir=$CVD/readonly
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$CVD/ref.nsq" "$dir/OUT.nsq"
    if [ "$(id -u)" -ne 0 ]; then
        chmod 555 "$dir"
        cv_fail_into "$b" "$dir" "$dir/OUT.nsq: .*cannot create a temporary file: Permission denied" "$(cv_model llama-v4)"
        local rc=$?
        chmod 755 "$dir"
        return $rc
    fi
    # root writes through chmod 555: /proc takes no new files from anyone
    local rc out=/proc/nsq-convert-test-$$.nsq
    "$b/nsq-convert" "$(cv_model llama-v4)" "$out" --quiet 2>"$CVD/fail.err"
    rc=$?
    if [ $rc -ne 1 ] || ! grep -q "$out: .*cannot create a temporary file" "$CVD/fail.err" || [ -e "$out" ]; then
        echo "exit $rc, want 1:"
        cat "$CVD/fail.err"
        return 1
    fi
}

cv_no_dir() { # cv_no_dir B PARENT: OUT.nsq under a directory PARENT/sub that cannot exist
    local b=$1 parent=$2 before rc
    before=$(ls -A "$CVD")
    "$b/nsq-convert" "$(cv_model llama-v4)" "$parent/sub/OUT.nsq" --quiet 2>"$CVD/fail.err"
    rc=$?
    if [ $rc -ne 1 ] || ! grep -Eq "$parent/sub/OUT.nsq: .*cannot create a temporary file: (No such file|Not a directory)" "$CVD/fail.err"; then
        echo "exit $rc, want 1:"
        cat "$CVD/fail.err"
        return 1
    fi
    [ "$before" = "$(ls -A "$CVD")" ] || { echo "$CVD changed"; return 1; }
}

# A successful conversion over an existing OUT.nsq replaces it and leaves
# nothing else behind.
cv_replaces() { # cv_replaces B
    local b=$1 dir=$CVD/replace
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$CVD/ref.nsq" "$dir/OUT.nsq"
    "$b/nsq-convert" "$(cv_model qwen2-tied)" "$dir/OUT.nsq" --quiet --scheme tiered || return 1
    [ "$(ls -A "$dir")" = OUT.nsq ] || { echo "left behind: $(ls -A "$dir")"; return 1; }
    ! cmp -s "$CVD/ref.nsq" "$dir/OUT.nsq" || { echo "OUT.nsq was not replaced"; return 1; }
    "$b/nsq-verify" "$dir/OUT.nsq"
}

# kill -9 in the middle of writing: the unnamed temporary file goes with the
# process; OUT.nsq stays as it was and nothing else appears.
cv_interrupted() { # cv_interrupted B
    local b=$1 dir=$CVD/killed big pid i fd seen='' rc
    big=$(cv_model big)
    if [ ! -d "$big" ]; then
        # shellcheck disable=SC2086
        "$CV_PY" tests/gen_hf.py "$big.part" $CV_BIG_ARGS && mv "$big.part" "$big" || return 1
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$CVD/ref.nsq" "$dir/OUT.nsq"
    "$b/nsq-convert" "$big" "$dir/OUT.nsq" --quiet --scheme tiered --threads 1 --zstd=19 2>"$CVD/kill.err" &
    pid=$!
    for ((i = 0; i < 1000; i++)); do # until it holds a file in $dir open
        for fd in "/proc/$pid/fd/"*; do
            [[ $(readlink "$fd" 2>/dev/null) == "$dir/"* ]] && seen=1
        done
        [ -n "$seen" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.01
    done
    sleep 0.2
    kill -9 "$pid" 2>/dev/null
    { wait "$pid"; } 2>/dev/null
    rc=$?
    [ -n "$seen" ] || { echo "nsq-convert never opened a file in $dir (exit $rc)"; cat "$CVD/kill.err"; return 1; }
    [ $rc -eq 137 ] || { echo "nsq-convert was not killed mid-write (exit $rc)"; return 1; }
    [ "$(ls -A "$dir")" = OUT.nsq ] || { echo "left behind: $(ls -A "$dir")"; return 1; }
    cmp "$CVD/ref.nsq" "$dir/OUT.nsq"
}

cv_json_ok() { # cv_json_ok B SRC OUT [OPTIONS...]: --json prints one valid JSON object
    local b=$1 src=$2 out=$3
    shift 3
    "$b/nsq-convert" "$src" "$out" --quiet --json "$@" | "$CV_PY" -c 'import json,sys; d=json.load(sys.stdin); sys.exit(not {"file","bpw_body","tiers"} <= set(d))'
}

# --calib: statistics, provenance, determinism across thread counts, errors.
CV_CALIB=fixtures/corpus/calib-small.txt
cv_calib_tests() { # cv_calib_tests B
    local b=$1 C=$1/nsq-convert c="--calib $CV_CALIB --calib-tokens 512 --calib-probe 128"
    local n="$b nsq-convert --calib"
    printf 'Too short.' >"$CVD/short.txt"
    : >"$CVD/empty.txt"
    check "$n --calib-tokens 10" exit_code 2 "$C" "$CV_LLAMA" "$CVD/x.nsq" --calib "$CV_CALIB" --calib-tokens 10
    check "$n --calib-tokens message" stderr_says "--calib-tokens wants an integer in 64\.\." "$C" "$CV_LLAMA" "$CVD/x.nsq" --calib "$CV_CALIB" --calib-tokens 1x
    check "$n --calib-probe -1" exit_code 2 "$C" "$CV_LLAMA" "$CVD/x.nsq" --calib "$CV_CALIB" --calib-probe -1
    check "$n with --lossless" stderr_says "--calib and --no-calib do nothing with --lossless" "$C" "$CV_LLAMA" "$CVD/x.nsq" --calib "$CV_CALIB" --lossless
    check "$n missing file" cv_fails "$b" "--calib $CVD/no-such\.txt: cannot read" "$CV_GPT2" --calib "$CVD/no-such.txt"
    check "$n empty text" cv_fails "$b" "calibration text $CVD/empty\.txt: 0 tokens, calibration needs at least 64" "$CV_GPT2" --calib "$CVD/empty.txt"
    check "$n too few tokens" cv_fails "$b" "calibration text $CVD/short\.txt: [0-9] tokens, calibration needs at least 64" "$CV_GPT2" --calib "$CVD/short.txt"
    check "$n directory as text" cv_fails "$b" "--calib $CVD: cannot read" "$CV_GPT2" --calib "$CVD"
    for m in llama gpt2; do
        local src=$CV_LLAMA
        [ $m = gpt2 ] && src=$CV_GPT2
        # the unweighted roundtrip error is looser: calibration spends the error where activations are small
        check "$n tiny-$m --tiers" cv_mode "$b" "$src" $m-calib 0.8 "split_is(0.1, 0.2, 0.7)
d['importance']['method'] == 'calibrated' and d['importance']['entries'] > 0
'over 512 tokens of $CV_CALIB' in d['importance']['provenance']
m['provenance.calibration.text'] == 'calib-small.txt' and m['provenance.calibration.tokens'] == 512
m['provenance.calibration.window'] == 512 and len(m['provenance.calibration.text_xxh3']) == 16
s['calibration_tokens'] == 512 and s['calibration_seconds'] > 0
'importance=calibrated calib_tokens=512 calib_probe=0' in s['recipe']" $c --tiers 10:20:70
        check "$n tiny-$m calibration changes the tiers" bash -c "! cmp -s '$CVD/$m-calib.nsq' '$CVD/$m-tiers.nsq'"
        cv_sanitized "$b" && continue # the probes run the model once per layer matrix
        check "$n tiny-$m --scheme tiered --bpw 3.5" cv_mode "$b" "$src" $m-calib-bpw 0.8 "3.4 <= s['bpw_body'] <= 3.5
layer_schemes() == {'tiered'}
'calib_probe=128' in s['recipe'] and d['importance']['target_bpw'] == 3.5" $c --scheme tiered --bpw 3.5
        check "$n tiny-$m --scheme tiered --bpw: same output on 1 and 2 threads" cv_same_output "$b" "$src" \
            $c --scheme tiered --bpw 3.5 --threads 1 -- $c --scheme tiered --bpw 3.5 --threads 2
        check "$n tiny-$m --bpw: no temporary file left" bash -c "! ls '$CVD' | grep -q '\.tmp\$'"
    done
}

# The scheme picked: LATTICE unless told TIERED or given an option of TIERED
# alone (--tiers, --group-size, --refine, on the command line or in a recipe);
# LATTICE calibrates on the built-in text unless given one or --no-calib.
cv_scheme_tests() { # cv_scheme_tests B
    local b=$1 C=$1/nsq-convert src c n="$1 nsq-convert scheme:"
    src=$(cv_model llama-v4)
    printf 'embed: q8\nscheme: bogus\n' >"$CVD/scheme-bogus.yaml"
    printf 'scheme: tiered\n' >"$CVD/scheme-tiered.yaml"
    printf 'scheme: lattice\ntiers: "10:20:70"\n' >"$CVD/scheme-lattice-tiers.yaml"
    local calib="--calib and --no-calib contradict each other" lossless="--calib and --no-calib do nothing with --lossless"
    local nc="--no-calib is for lattice" opts="TIERED options, not --scheme lattice's"
    check "$n --no-calib with --calib" fails_cleanly 60 2 "$calib" "$C" "$src" "$CVD/x.nsq" --no-calib --calib "$CV_CALIB"
    check "$n --no-calib with --lossless" fails_cleanly 60 2 "$lossless" "$C" "$src" "$CVD/x.nsq" --no-calib --lossless
    check "$n --no-calib with --tiers" fails_cleanly 60 2 "$nc" "$C" "$src" "$CVD/x.nsq" --no-calib --tiers 10:20:70
    check "$n --no-calib with --scheme tiered" fails_cleanly 60 2 "$nc" "$C" "$src" "$CVD/x.nsq" --scheme tiered --no-calib
    check "$n --scheme lattice --tiers" fails_cleanly 60 2 "$opts" "$C" "$src" "$CVD/x.nsq" --scheme lattice --tiers 10:20:70
    check "$n --scheme lattice --group-size" fails_cleanly 60 2 "$opts" "$C" "$src" "$CVD/x.nsq" --scheme lattice --group-size 32
    check "$n recipe scheme: bogus names the line" fails_cleanly 60 2 "scheme-bogus\.yaml:2: expected lattice or tiered for scheme" \
        "$C" "$src" "$CVD/x.nsq" --recipe "$CVD/scheme-bogus.yaml"
    check "$n recipe scheme: lattice with tiers" fails_cleanly 60 2 "$opts" "$C" "$src" "$CVD/x.nsq" --recipe "$CVD/scheme-lattice-tiers.yaml"
    check "$n usage errors write nothing" test ! -e "$CVD/x.nsq"
    check "$n recipe scheme: tiered is --scheme tiered" cv_mode "$b" "$src" scheme-recipe 0.5 \
        "layer_schemes() == {'tiered'} and split_is(0.1, 0.2, 0.7) and same_as('llama-v4')" --recipe "$CVD/scheme-tiered.yaml"
    check "$n --scheme lattice --no-calib is LATTICE, uncalibrated" cv_mode "$b" "$src" scheme-nocalib 0.5 \
        "layer_schemes() == {'lattice'} and 'lattice' in d['required_features']
not any(k.startswith('provenance.calibration.') for k in m) and s['calibration_tokens'] is None
d['importance']['method'] == 'magnitude' and s['recipe'].startswith('scheme=lattice bpw=4 ')
3.85 <= s['bpw_body'] <= 4.0" --scheme lattice --no-calib
    check "$n --no-calib alone is the same" cv_same_output "$b" "$src" --scheme lattice --no-calib -- --no-calib
    check "$n --scheme lattice wins over the recipe's scheme: tiered" cv_mode "$b" "$src" scheme-override 0.5 \
        "layer_schemes() == {'lattice'} and same_as('scheme-nocalib')" --recipe "$CVD/scheme-tiered.yaml" --scheme lattice --no-calib
    c="--calib-tokens 2048 --calib-probe 128"
    check "$n --bpw 3.5 alone is LATTICE (2048 calibration tokens, 128 probed)" cv_mode "$b" "$src" scheme-bpw 0.5 \
        "layer_schemes() == {'lattice'} and 3.35 <= s['bpw_body'] <= 3.5 and s['bpw_target'] == 3.5
m['provenance.calibration.text'] == 'built-in calib-default.txt' and m['provenance.calibration.tokens'] == 2048" --bpw 3.5 $c
    check "$n --bpw 3.5 --calib calib-default.txt (2048 calibration tokens, 128 probed)" cv_mode "$b" "$src" scheme-file 0.5 \
        "m['provenance.calibration.text'] == 'calib-default.txt'" --bpw 3.5 $c --calib tools/nsq-convert/calib-default.txt
    check "$n the built-in text is calib-default.txt" cv_assert "$CVD/scheme-bpw.nsq.json" "$CVD/scheme-bpw.nsq.summary" \
        "m['provenance.calibration.text_xxh3'] == {e['key']: e['value'] for e in json.load(open('$CVD/scheme-file.nsq.json'))['metadata']}['provenance.calibration.text_xxh3']
s['rmse_quantized'] == json.load(open('$CVD/scheme-file.nsq.summary'))['rmse_quantized']"
    cv_sanitized "$b" && return 0 # all of the built-in text: too slow with sanitizers
    # all of the built-in text: 216013 tokens with tiny-llama's tokenizer
    check "$n no options: LATTICE at 4 bpw, calibrated on the built-in text" cv_mode "$b" "$src" scheme-default 0.5 \
        "layer_schemes() == {'lattice'} and 'lattice' in d['required_features']
m['provenance.calibration.text'] == 'built-in calib-default.txt' and m['provenance.calibration.tokens'] == 216013
d['importance']['method'] == 'calibrated' and 'of built-in calib-default.txt' in d['importance']['provenance']
s['bpw_target'] == 4.0 and 3.85 <= s['bpw_body'] <= 4.0
s['recipe'].startswith('scheme=lattice bpw=4 ') and s['recipe'].endswith(' calib_tokens=262144 calib_probe=1024')"
}

cv_sanitized() { grep -aqE '__(asan|ubsan|msan|tsan)_' "$1/nsq-convert"; }

convert_tests() {
    local b=$1 m src arch layers tm
    CVD=$TMP/cv-$(echo "${b%/}" | tr / _)
    rm -rf "$CVD"
    mkdir -p "$CVD"
    local C=$b/nsq-convert

    # ---- usage ----
    check "$b nsq-convert --help" exit_code 0 "$C" --help
    check "$b nsq-convert --help text" bash -c "'$C' --help | grep -q '^usage: nsq-convert HF_DIR OUT.nsq'"
    check "$b nsq-convert --version" exit_code 0 "$C" --version
    check "$b nsq-convert --version text" bash -c "'$C' --version | grep -Eq '^nsq-convert [0-9]+\.[0-9]+\.[0-9]+'"
    check "$b nsq-convert unknown option" exit_code 2 "$C" "$CV_LLAMA" "$CVD/x.nsq" --no-such-option
    check "$b nsq-convert unknown option message" stderr_says "unknown option --no-such-option" "$C" "$CV_LLAMA" "$CVD/x.nsq" --no-such-option
    check "$b nsq-convert no arguments" exit_code 2 "$C"
    check "$b nsq-convert one argument" exit_code 2 "$C" "$CV_LLAMA"
    check "$b nsq-convert three arguments" exit_code 2 "$C" "$CV_LLAMA" "$CVD/x.nsq" "$CVD/y.nsq"
    check "$b nsq-convert --tiers 10:20" exit_code 2 "$C" "$CV_LLAMA" "$CVD/x.nsq" --tiers 10:20
    check "$b nsq-convert --tiers 10:20 message" stderr_says "--tiers wants Q8:Q4:Q2 percentages" "$C" "$CV_LLAMA" "$CVD/x.nsq" --tiers 10:20
    check "$b nsq-convert --tiers not summing to 100" exit_code 2 "$C" "$CV_LLAMA" "$CVD/x.nsq" --tiers 10:20:60
    check "$b nsq-convert --group-size 48" exit_code 2 "$C" "$CV_LLAMA" "$CVD/x.nsq" --group-size 48
    check "$b nsq-convert --refine 3" exit_code 2 "$C" "$CV_LLAMA" "$CVD/x.nsq" --refine 3
    check "$b nsq-convert --embed q3" exit_code 2 "$C" "$CV_LLAMA" "$CVD/x.nsq" --embed q3
    check "$b nsq-convert --bpw 0" exit_code 2 "$C" "$CV_LLAMA" "$CVD/x.nsq" --bpw 0
    check "$b nsq-convert usage errors write nothing" bash -c "[ ! -e '$CVD/x.nsq' ] && [ ! -e '$CVD/y.nsq' ]"

    check "$b nsq-convert: generate checkpoints" cv_generate
    check "$b nsq-convert: reference output" "$C" "$(cv_model llama-v4)" "$CVD/ref.nsq" --quiet --scheme tiered
    check "$b nsq-convert --scheme tiered --bpw 1.0 names the minimum" cv_fails "$b" \
        "--bpw 1\.000 is below what this model can reach \(2\.[0-9]+ with every group at 2 bits\)" "$CV_LLAMA" --scheme tiered --bpw 1.0

    # ---- every mode on the bundled models ----
    for m in llama gpt2; do
        if [ $m = llama ]; then src=$CV_LLAMA arch=llama layers=6 tm=model.layers.0.mlp.down_proj.weight
        else src=$CV_GPT2 arch=gpt2 layers=4 tm=transformer.h.0.mlp.c_proj.weight; fi
        local n="$b nsq-convert tiny-$m"
        check "$n --scheme tiered" cv_mode "$b" "$src" $m-tiered 0.5 "m['general.architecture'] == '$arch'
d['block_count'] == $layers + 2
layer_schemes() == {'tiered'} and 'lattice' not in d['required_features']
split_is(0.1, 0.2, 0.7)
s['recipe'].startswith('tiers=10:20:70 group_size=64 refine=0 embed=q8 head=q8 layers_per_block=1 zstd=0')
all(b['compression'] == 'none' for b in blocks) and d['refinement_count'] == 0
t['$tm']['group_size'] == 64
d['importance']['method'] == 'magnitude' and d['importance']['entries'] > 0" --scheme tiered
        check "$n --lossless" cv_mode "$b" "$src" $m-lossless exact "schemes() == {'$([ $m = llama ] && echo bf16 || echo f16)'}
d['importance'] is None
m.get('model.conv1d_transposed', False) is False" --lossless
        check "$n --tiers 10:20:70 alone is TIERED" cv_mode "$b" "$src" $m-tiers 0.5 "split_is(0.1, 0.2, 0.7)
layer_schemes() == {'tiered'} and 'scheme=lattice' not in s['recipe']" --tiers 10:20:70
        check "$n --tiers 10:20:70 is --scheme tiered's default" cmp "$CVD/$m-tiered.nsq" "$CVD/$m-tiers.nsq"
        check "$n --tiers 100:0:0" cv_mode "$b" "$src" $m-q8 0.01 "split_is(1, 0, 0)" --tiers 100:0:0
        check "$n --tiers 0:100:0" cv_mode "$b" "$src" $m-q4 0.15 "split_is(0, 1, 0)" --tiers 0:100:0
        check "$n --scheme tiered --bpw 3.0" cv_mode "$b" "$src" $m-bpw3 0.5 "2.9 <= s['bpw_body'] <= 3.0
s['bpw_target'] == 3.0 and s['lambda'] > 0 and layer_schemes() == {'tiered'}
d['importance']['target_bpw'] == 3.0" --scheme tiered --bpw 3.0
        check "$n --scheme tiered --bpw 4.5" cv_mode "$b" "$src" $m-bpw45 0.5 "4.4 <= s['bpw_body'] <= 4.5
s['tiers']['q2'] < json.load(open('$CVD/$m-bpw3.nsq.summary'))['tiers']['q2']" --scheme tiered --bpw 4.5
        check "$n --refine 2" cv_mode "$b" "$src" $m-refine 0.5 "d['refinement_count'] == $layers
s['refinement_bytes'] > 0
all(len(b['refinements']) == 1 for b in blocks if b['kind'] == 'layers')
all(len(x['refinements']) == 1 for x in layer_matrices())" --refine 2
        check "$n --group-size 32" cv_mode "$b" "$src" $m-g32 0.5 "{x['group_size'] for x in layer_matrices()} == {32}" --group-size 32
        check "$n --group-size 128" cv_mode "$b" "$src" $m-g128 0.5 "{x['group_size'] for x in layer_matrices()} == {128}" --group-size 128
        check "$n --zstd" cv_mode "$b" "$src" $m-zstd 0.5 "all(b['compression'] == 'zstd' for b in blocks)
d['file_size'] < json.load(open('$CVD/$m-tiered.nsq.json'))['file_size']" --scheme tiered --zstd
        check "$n --layers-per-block 2" cv_mode "$b" "$src" $m-lpb2 0.5 "d['block_count'] == $layers // 2 + 2
[(b['first_layer'], b['n_layers']) for b in blocks if b['kind'] == 'layers'] == [(i, 2) for i in range(0, $layers, 2)]" --scheme tiered --layers-per-block 2
        if [ $m = llama ]; then
            check "$n --embed f16 --head source" cv_mode "$b" "$src" $m-dense 0.5 "t['model.embed_tokens.weight']['scheme'] == 'f16'
t['lm_head.weight']['scheme'] == 'bf16'" --scheme tiered --embed f16 --head source
        else
            check "$n --embed f16 --head source" cv_mode "$b" "$src" $m-dense 0.5 "t['transformer.wte.weight']['scheme'] == 'f16'
t['transformer.wpe.weight']['scheme'] == 'f16'" --scheme tiered --embed f16 --head source
        fi
        check "$n --json" cv_json_ok "$b" "$src" "$CVD/$m-json.nsq" --scheme tiered
    done

    # ---- generated checkpoints: TIERED and --lossless ----
    local g
    for g in llama-v4 llama-v5 llama-linear-v4 llama-linear-v5 llama-llama3 llama-f32 llama-f16 llama-sharded \
        mistral-v4 mistral-v5 qwen2-tied qwen2-untied gpt2-tied gpt2-untied; do
        check "$b nsq-convert $g --scheme tiered" cv_mode "$b" "$(cv_model $g)" $g 0.5 "" --scheme tiered
        check "$b nsq-convert $g --lossless" cv_mode "$b" "$(cv_model $g)" $g-lossless exact "" --lossless
    done
    local L="$CVD/llama-v4.nsq.json" common="m['model.hidden_size'] == 64 and m['model.n_layers'] == 2
m['model.n_heads'] == 4 and m['model.n_kv_heads'] == 2 and m['model.head_dim'] == 16
m['model.vocab_size'] == 4096 and m['tokenizer.bos_id'] == 1 and m['tokenizer.eos_id'] == 2"
    check "$b nsq-convert llama metadata" cv_assert "$L" - "$common" "m['general.architecture'] == 'llama'
m['model.intermediate_size'] == 128 and m['model.context_length'] == 2048
m['model.rope.theta'] == 10000 and m['model.rope.scaling.type'] == 'none' and m['model.rope.scaling.factor'] == 1
m['model.norm.type'] == 'rmsnorm' and m['model.norm.epsilon'] == 1e-6 and m['model.activation'] == 'silu'
m['model.attention_bias'] is False and m['model.mlp_bias'] is False and m['model.tied_head'] is False
m['model.sliding_window'] == 0 and m['provenance.source.dtype'] == 'bfloat16'
d['tokenizer']['kind'] == 'hf_json'
len(m['provenance.source.tensors']) == 21"
    check "$b nsq-convert llama v4 and v5 configs agree" cv_same_meta "$L" "$CVD/llama-v5.nsq.json" model. tokenizer. provenance.source.dtype
    check "$b nsq-convert rope linear:2.0" cv_assert "$CVD/llama-linear-v4.nsq.json" - \
        "m['model.rope.scaling.type'] == 'linear' and m['model.rope.scaling.factor'] == 2"
    check "$b nsq-convert rope linear:2.0 v4 and v5 agree" cv_same_meta "$CVD/llama-linear-v4.nsq.json" "$CVD/llama-linear-v5.nsq.json" model.
    check "$b nsq-convert rope llama3:8.0" cv_assert "$CVD/llama-llama3.nsq.json" - "m['model.rope.scaling.type'] == 'llama3'
m['model.rope.scaling.factor'] == 8 and m['model.rope.scaling.low_freq_factor'] == 1
m['model.rope.scaling.high_freq_factor'] == 4 and m['model.rope.scaling.original_max_position_embeddings'] == 8192"
    check "$b nsq-convert mistral metadata" cv_assert "$CVD/mistral-v4.nsq.json" - "$common" "m['general.architecture'] == 'mistral'
m['model.sliding_window'] == 2048 and m['model.context_length'] == 32768
m['model.norm.epsilon'] == 1e-5 and m['model.attention_bias'] is False and m['model.tied_head'] is False"
    check "$b nsq-convert mistral v4 and v5 configs agree" cv_same_meta "$CVD/mistral-v4.nsq.json" "$CVD/mistral-v5.nsq.json" model. tokenizer.
    local q
    for q in tied untied; do
        check "$b nsq-convert qwen2 $q metadata" cv_assert "$CVD/qwen2-$q.nsq.json" - "$common" "m['general.architecture'] == 'qwen2'
m['model.rope.theta'] == 1000000 and m['model.attention_bias'] is True and m['model.mlp_bias'] is False
m['model.sliding_window'] == 0 and m['model.context_length'] == 32768
m['model.tied_head'] is $([ $q = tied ] && echo True || echo False)
('lm_head.weight' in t) == $([ $q = tied ] && echo False || echo True)
all('model.layers.%d.self_attn.%s_proj.bias' % (l, p) in t for l in (0, 1) for p in 'qkv')
not any(n.endswith('o_proj.bias') for n in t)"
    done
    check "$b nsq-convert gpt2 metadata" cv_assert "$CVD/gpt2-tied.nsq.json" - "m['general.architecture'] == 'gpt2'
m['model.hidden_size'] == 64 and m['model.n_heads'] == 4 and m['model.n_kv_heads'] == 4
m['model.intermediate_size'] == 256 and m['model.context_length'] == 1024 and m['model.vocab_size'] == 4096
m['model.norm.type'] == 'layernorm' and m['model.position'] == 'learned' and m['model.activation'] == 'gelu_tanh'
m['model.attention_bias'] is True and m['model.mlp_bias'] is True and m['model.tied_head'] is True
m['model.conv1d_transposed'] is True and 'lm_head.weight' not in t
t['transformer.h.0.attn.c_attn.weight']['shape'] == [192, 64]
d['tokenizer']['kind'] == 'gpt2_bpe' and m['provenance.source.dtype'] == 'float32'"
    check "$b nsq-convert gpt2 lossless keeps Conv1D layout" cv_assert "$CVD/gpt2-tied-lossless.nsq.json" - \
        "m['model.conv1d_transposed'] is False" "t['transformer.h.0.attn.c_attn.weight']['shape'] == [64, 192]" "schemes() == {'f32'}"
    check "$b nsq-convert gpt2 untied" cv_assert "$CVD/gpt2-untied.nsq.json" - \
        "m['model.tied_head'] is False and 'lm_head.weight' in t" "m['provenance.source.dtype'] == 'float16'"
    check "$b nsq-convert f32 source" cv_assert "$CVD/llama-f32-lossless.nsq.json" - "schemes() == {'f32'}" "m['provenance.source.dtype'] == 'float32'"
    check "$b nsq-convert f16 source" cv_assert "$CVD/llama-f16-lossless.nsq.json" - "schemes() == {'f16'}" "m['provenance.source.dtype'] == 'float16'"
    check "$b nsq-convert bf16 source" cv_assert "$CVD/llama-v4-lossless.nsq.json" - "schemes() == {'bf16'}"
    check "$b nsq-convert sharded source" cv_assert "$CVD/llama-sharded-lossless.nsq.json" - \
        "m['model.n_layers'] == 3 and len(m['provenance.source.tensors']) == 30 and len(t) == 30"
    check "$b nsq-convert replaces an existing OUT.nsq" cv_replaces "$b"

    # ---- determinism ----
    check "$b nsq-convert --scheme tiered deterministic" cv_same_output "$b" "$CV_LLAMA" --scheme tiered -- --scheme tiered
    check "$b nsq-convert --scheme tiered --threads 1 = --threads 2" cv_same_output "$b" "$CV_LLAMA" --scheme tiered --threads 1 -- \
        --scheme tiered --threads 2
    check "$b nsq-convert --scheme tiered --bpw --threads 1 = 2" cv_same_output "$b" "$CV_GPT2" --scheme tiered --bpw 3.5 --threads 1 -- \
        --scheme tiered --bpw 3.5 --threads 2
    check "$b nsq-convert --zstd --refine --threads 1 = 2" cv_same_output "$b" "$CV_GPT2" --zstd --refine 4 --threads 1 -- --zstd --refine 4 --threads 2

    # ---- failures: exit 1, a message naming the file or tensor, nothing left behind ----
    check "$b nsq-convert truncated shard" cv_fails "$b" \
        "model-00002-of-00003\.safetensors: tensor [a-z0-9_.]+: data_offsets .* run past the data buffer .*truncated" "$(cv_model err-truncated)"
    check "$b nsq-convert header length past the end" cv_fails "$b" \
        "/model\.safetensors: header length [0-9]+ runs past the end of the file" "$(cv_model err-header-length)"
    check "$b nsq-convert data_offsets not matching shape" cv_fails "$b" \
        "/model\.safetensors: tensor lm_head\.weight: data_offsets \[0, 524288\] give 524288 bytes, shape \[4097, 65\] of BF16 needs 532610" \
        "$(cv_model err-offsets)"
    check "$b nsq-convert wrong shape" cv_fails "$b" \
        "tensor model\.layers\.0\.mlp\.gate_proj\.weight has shape \[128,64\], the config implies \[256,64\]" "$(cv_model err-shape)"
    check "$b nsq-convert unknown architecture" cv_fails "$b" \
        "config\.json: architecture FooForCausalLM is not supported \(supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM, Gemma2ForCausalLM, GPT2LMHeadModel\)" \
        "$(cv_model err-arch)"
    check "$b nsq-convert I64 weight" cv_fails "$b" \
        "tensor model\.layers\.1\.self_attn\.v_proj\.weight has dtype I64; supported: F32, F16, BF16" "$(cv_model err-i64)"
    check "$b nsq-convert missing tensor" cv_fails "$b" \
        "tensor model\.layers\.1\.mlp\.up_proj\.weight is missing" "$(cv_model err-missing)"
    check "$b nsq-convert unknown tensor" cv_fails "$b" \
        "tensor model\.layers\.0\.self_attn\.rotary_scale\.weight is not part of a LlamaForCausalLM model" "$(cv_model err-extra)"
    check "$b nsq-convert missing config.json" cv_fails "$b" \
        "err-no-config/config\.json: cannot open" "$(cv_model err-no-config)"
    check "$b nsq-convert missing tokenizer" cv_fails "$b" \
        "err-no-tokenizer: no tokenizer \(tokenizer\.json, vocab\.json \+ merges\.txt, or tokenizer\.model\)" "$(cv_model err-no-tokenizer)"
    check "$b nsq-convert missing checkpoint directory" cv_fails "$b" "no-such-model/config\.json: cannot open" "$CVD/no-such-model"
    check "$b nsq-convert unwritable output directory" cv_unwritable "$b"
    check "$b nsq-convert output under a missing directory" cv_no_dir "$b" "$CVD/no-such-dir"
    check "$b nsq-convert output under a regular file" cv_no_dir "$b" "$CVD/ref.nsq"
    check "$b nsq-convert file too large" cv_fails_efbig "$b" "OUT\.nsq: NSQ_E_IO: .*File too large" "$CV_LLAMA" --scheme tiered
    cv_calib_tests "$b"
    cv_scheme_tests "$b"
    if ! cv_sanitized "$b"; then
        check "$b nsq-convert killed mid-write" cv_interrupted "$b"
    fi
}
