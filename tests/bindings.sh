# tests/bindings.sh - the standalone Python reader bindings/python/nsq.py
# against libnsq. Sourced by tests/run.sh, whose check/exit_code/stderr_says
# helpers, $CONF and $TMP it uses:
#   bindings_tests BUILD_DIR
# Python's dequantized f32 output must equal libnsq's (tests/dequant_dump)
# byte for byte. The checks that do not involve the build run once; the
# converted-model checks run only against a build without sanitizers.

BT_PY=/usr/bin/python3
BT_CHECK=tests/bindings_check.py
BT_NSQ=bindings/python/nsq.py
BT_LLAMA=fixtures/models/tiny-llama
# Tensors compared in full in converted models: every kind of layer matrix,
# a norm, the embeddings and the head.
BT_TENSORS=(model.embed_tokens.weight model.layers.0.self_attn.q_proj.weight
    model.layers.0.self_attn.k_proj.weight model.layers.1.mlp.down_proj.weight
    model.layers.1.post_attention_layernorm.weight model.norm.weight lm_head.weight)

bt_sanitized() { grep -aqE '__(asan|ubsan|msan|tsan)_' "$1/tests/dequant_dump"; }

# The Python CLI's dump equals dequant_dump's output.
bt_cli_dump() { # bt_cli_dump BUILD FILE TENSOR LEVELS|rotated
    local opt=(--refine "$4")
    [ "$4" = rotated ] && opt=(--rotated)
    cmp <("$BT_PY" "$BT_NSQ" dump "$2" "$3" "${opt[@]}") <("$1/tests/dequant_dump" "$2" "$4" "$3")
}

# Checks of the Python reader alone: conformance statuses, listings, CLI.
bt_python_only() {
    local json f
    check "python reader: conformance manifest" "$BT_PY" "$BT_CHECK" manifest "$CONF/MANIFEST"
    for json in "$CONF"/*.json; do
        check "python reader: listing of $(basename "${json%.json}")" "$BT_PY" "$BT_CHECK" listing "${json%.json}.nsq" "$json"
    done
    for f in bf16-zstd tiered-zstd router-zstd; do
        check "python reader: $f refused clearly without a decoder" "$BT_PY" "$BT_CHECK" nodecoder "$CONF/$f.nsq"
    done
    check "python reader: verify valid" exit_code 0 "$BT_PY" "$BT_NSQ" verify "$CONF/refined.nsq"
    check "python reader: verify valid LATTICE" exit_code 0 "$BT_PY" "$BT_NSQ" verify "$CONF/lattice.nsq"
    check "python reader: --rotated needs a LATTICE tensor" stderr_says "not a LATTICE tensor" \
        "$BT_PY" "$BT_NSQ" dump "$CONF/lattice.nsq" model.norm.weight --rotated
    check "python reader: verify corrupted block" exit_code 1 "$BT_PY" "$BT_NSQ" verify "$CONF/invalid/R-BLK-1.nsq"
    check "python reader: verify names the rule" stderr_says "R-BLK-1" "$BT_PY" "$BT_NSQ" verify "$CONF/invalid/R-BLK-1.nsq"
    check "python reader: verify block padding" stderr_says "R-BLK-3" "$BT_PY" "$BT_NSQ" verify "$CONF/invalid/R-BLK-3.nsq"
    check "python reader: inspect prints JSON" bash -c "'$BT_PY' '$BT_NSQ' inspect '$CONF/router.nsq' |
        '$BT_PY' -c 'import json, sys; assert json.load(sys.stdin)[\"tensor_count\"] == 40'"
    check "python reader: usage error" exit_code 2 "$BT_PY" "$BT_NSQ" dump "$CONF/f32.nsq"
    check "python reader: unknown tensor" exit_code 1 "$BT_PY" "$BT_NSQ" dump "$CONF/f32.nsq" no.such.tensor
}

# Converted tiny-llama models: TIERED's defaults, one refinement level, and zstd.
bt_models() {
    local b=$1 m d=$TMP/bt-$(echo "${1%/}" | tr / _)
    mkdir -p "$d"
    check "$b python vs libnsq: convert tiny-llama --scheme tiered" "$b/nsq-convert" "$BT_LLAMA" "$d/default.nsq" --scheme tiered --quiet
    check "$b python vs libnsq: convert tiny-llama --refine 2" "$b/nsq-convert" "$BT_LLAMA" "$d/refine.nsq" --refine 2 --quiet
    check "$b python vs libnsq: convert tiny-llama --refine 2 --zstd" "$b/nsq-convert" "$BT_LLAMA" "$d/zstd.nsq" --refine 2 --zstd --quiet
    for m in default refine zstd; do
        check "$b python dequantizes tiny-llama $m like libnsq" "$BT_PY" "$BT_CHECK" dequant "$b" "$d/$m.nsq" "${BT_TENSORS[@]}"
    done
    check "$b python verifies tiny-llama refine" exit_code 0 "$BT_PY" "$BT_NSQ" verify "$d/refine.nsq"
}

bindings_tests() {
    local b=$1 file status rule
    while read -r file status rule; do
        case $file in
        \#*) ;;
        invalid/*) ;;
        *) check "$b python dequantizes $file like libnsq" "$BT_PY" "$BT_CHECK" dequant "$b" "$CONF/$file" ;;
        esac
    done <"$CONF/MANIFEST"
    # Without NSQ_PY_ZSTD, a zstandard module is preferred to the zstd program.
    check "$b python, zstd program, dequantizes router-zstd.nsq like libnsq" env NSQ_PY_ZSTD=program \
        "$BT_PY" "$BT_CHECK" dequant "$b" "$CONF/router-zstd.nsq"
    for rule in R-BLK-1 R-BLK-2 R-TIER-2 R-TIER-3 R-TIER-4 R-LAT-1 R-LAT-2 R-LAT-3 R-LAT-4 R-LAT-5; do
        check "$b python and libnsq refuse the same tensors of $rule.nsq" "$BT_PY" "$BT_CHECK" errors "$b" "$CONF/invalid/$rule.nsq"
    done
    check "$b python CLI dump = dequant_dump" bt_cli_dump "$b" "$CONF/refined.nsq" model.layers.2.mlp.up_proj.weight 2
    check "$b python CLI dump --rotated = dequant_dump rotated" bt_cli_dump "$b" "$CONF/lattice.nsq" \
        model.layers.0.mlp.gate_proj.weight rotated
    if [ -z "${BT_PYTHON_ONLY_DONE:-}" ]; then
        bt_python_only
        BT_PYTHON_ONLY_DONE=1
    fi
    bt_sanitized "$b" || bt_models "$b"
}
