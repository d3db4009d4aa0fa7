# tests/hostile_model.sh - files that are valid containers but wrong as models
# (tests/nsq_edit rewrites a good conversion with one edit, checksums and all):
# nsq-verify accepts them, nsq-verify --model and every runtime tool refuse
# them with a message naming the problem, never with a crash. Sourced by
# tests/run.sh:
#   hostile_model_tests BUILD_DIR

hm_py() { # hm_py OUT PYTHON: writes a tokenizer file edited by PYTHON (t is the parsed JSON)
    python3 -c "import json,sys; t=json.load(open(sys.argv[1])); $2; json.dump(t, open(sys.argv[2], 'w'))" "$3" "$1"
}

# refused PATTERN COMMAND...: exits 1, says PATTERN, no sanitizer report.
refused() { fails_cleanly 300 1 "$@"; }

# hm_case B NAME BASE PATTERN EDIT...: the edited file passes nsq-verify, and
# nsq-verify --model, nsq-run (whole and streamed) and nsq-perplexity refuse it.
hm_case() {
    local b=$1 name=$2 base=$3 pat=$4; shift 4
    local f=$TMP/hm-$name.nsq budget=2.5M
    [ "$base" = "$TMP/hm-llama.nsq" ] && budget=3.2M # the embedding and output blocks and one layer block
    check "$b hostile $name: edit" "$b/tests/nsq_edit" "$base" "$f" "$@"
    check "$b hostile $name: a valid container" exit_code 0 "$b/nsq-verify" "$f"
    check "$b hostile $name: nsq-verify --model" refused "$pat" "$b/nsq-verify" --model "$f"
    check "$b hostile $name: nsq-run" refused "$pat" "$b/nsq-run" "$f" "Hello world" -n 4
    check "$b hostile $name: nsq-run --max-memory" refused "$pat" "$b/nsq-run" "$f" "Hello world" -n 4 --max-memory $budget
    check "$b hostile $name: nsq-perplexity" refused "$pat" "$b/nsq-perplexity" "$f" "$TMP/hm-text.txt" --ctx 32
}

hostile_model_tests() {
    local b=$1 G=$TMP/hm-gpt2.nsq L=$TMP/hm-llama.nsq tj=$TMP/hm-tok.json
    head -c 2000 fixtures/corpus/eval-dev.txt >"$TMP/hm-text.txt"
    check "$b hostile: convert gpt2" "$b/nsq-convert" fixtures/models/tiny-gpt2 "$G" --quiet --scheme tiered
    check "$b hostile: convert llama" "$b/nsq-convert" fixtures/models/tiny-llama "$L" --quiet --scheme tiered
    check "$b hostile: the unedited files pass --model" bash -c "'$b/nsq-verify' --model '$G' && '$b/nsq-verify' --model '$L'"

    # a tensor placed in a block that does not hold its layer (a freed buffer, once)
    hm_case "$b" gpt2-other-block "$G" "in block 4, which does not hold its layer" \
        "dup:transformer.h.0.ln_1.weight=h.0.ln_1.weight@4"
    hm_case "$b" llama-other-block "$L" "in block 4, which does not hold its layer" \
        "dup:model.layers.0.input_layernorm.weight=model.layers.0.self_attn.q_proj.bias@4"
    hm_case "$b" llama-layer-00 "$L" "model.layers.00.input_layernorm.weight is not part" \
        "dup:model.layers.0.input_layernorm.weight=model.layers.00.input_layernorm.weight@4"
    hm_case "$b" gpt2-two-names "$G" "duplicates another tensor's role" \
        "dup:transformer.h.0.ln_1.weight=h.0.ln_1.weight@1"
    hm_case "$b" llama-unknown "$L" "rotary.weight is not part" \
        "dup:model.layers.0.input_layernorm.weight=model.layers.0.self_attn.rotary.weight@1"
    # vectors of the wrong length
    hm_case "$b" llama-norm-len1 "$L" "input_layernorm.weight has the wrong shape" \
        "len:model.layers.0.input_layernorm.weight=1"
    hm_case "$b" gpt2-c_attn-bias-256 "$G" "c_attn.bias has the wrong shape" \
        "len:transformer.h.2.attn.c_attn.bias=256"
    # values that are not finite
    hm_case "$b" llama-norm-nan "$L" "model.norm.weight: element 3 is not finite" "set:model.norm.weight=3:nan"
    hm_case "$b" gpt2-bias-inf "$G" "ln_2.bias: element 0 is not finite" "set:transformer.h.1.ln_2.bias=0:inf"
    # hyperparameters out of range
    hm_case "$b" rope-theta-0 "$L" "model.rope.theta must be finite and > 0" "meta:model.rope.theta=f64:0"
    hm_case "$b" rope-theta-negative "$L" "model.rope.theta must be finite and > 0" "meta:model.rope.theta=f64:-1"
    hm_case "$b" eps-negative "$L" "model.norm.epsilon must be finite" "meta:model.norm.epsilon=f64:-1"
    hm_case "$b" rope-factor-0 "$L" "scaling.factor must be finite and > 0" \
        "meta:model.rope.scaling.type=str:linear" "meta:model.rope.scaling.factor=f64:0"
    hm_case "$b" llama3-low-high "$L" "llama3 RoPE scaling needs" "meta:model.rope.scaling.type=str:llama3" \
        "meta:model.rope.scaling.factor=f64:8" "meta:model.rope.scaling.low_freq_factor=f64:2" \
        "meta:model.rope.scaling.high_freq_factor=f64:2"
    hm_case "$b" bos-id "$L" "tokenizer.bos_id, eos_id and eos_ids must be" "meta:tokenizer.bos_id=i64:5000"
    # values the runtime does not implement: any value is a valid container (R-META-12)
    hm_case "$b" unknown-architecture "$L" "general.architecture" "meta:general.architecture=str:x-new-arch"
    hm_case "$b" unknown-activation "$L" "model.activation \"x-new-act\"" "meta:model.activation=str:x-new-act"
    hm_case "$b" unknown-rope-type "$L" "model.rope.scaling.type \"yarn\"" "meta:model.rope.scaling.type=str:yarn"
    hm_case "$b" llama-layernorm "$L" "llama models have model.norm.type rmsnorm" "meta:model.norm.type=str:layernorm"
    hm_case "$b" gpt2-rope "$G" "gpt2 models have model.norm.type layernorm and model.position learned" \
        "meta:model.position=str:rope"
    # the forward-pass options (spec 5.3)
    hm_case "$b" longrope-no-factors "$L" "short_factor must hold head_dim / 2 = 16 factors, not 0" \
        "meta:model.rope.scaling.type=str:longrope" "meta:model.rope.scaling.original_max_position_embeddings=f64:64"
    hm_case "$b" window-pattern "$L" "sliding_window_pattern 7 exceeds" "meta:model.sliding_window_pattern=u64:7"
    hm_case "$b" softcap-huge "$L" "model.attention.softcap must be finite and within" "meta:model.attention.softcap=f64:2e6"
    hm_case "$b" logit-softcap-negative "$L" "model.logit_softcap must be finite" "meta:model.logit_softcap=f64:-1"
    hm_case "$b" attention-scale-0 "$L" "model.attention.scale must be finite" "meta:model.attention.scale=f64:0"
    hm_case "$b" embedding-scale-0 "$L" "model.embedding_scale must be finite" "meta:model.embedding_scale=f64:0"
    # tokenizer ids the embedding has no row for
    hm_py "$tj" "t['post_processor']['special_tokens']['<s>']['ids'] = [16000000]" fixtures/models/tiny-llama/tokenizer.json
    hm_case "$b" post-processor-id "$L" "16000000" "tok:tokenizer.json=$tj"
    hm_py "$tj" "t['added_tokens'].append(dict(id=4096, content='<extra>', single_word=False, lstrip=False, rstrip=False, normalized=False, special=True))" fixtures/models/tiny-llama/tokenizer.json
    hm_case "$b" added-token-id "$L" "can produce id 4096, but the embedding has 4096 rows" "tok:tokenizer.json=$tj"
    # and the converter does not write such a file
    [ -d "$TMP/hm-v128" ] || /usr/bin/python3 tests/gen_hf.py --arch llama --vocab 128 "$TMP/hm-v128" >/dev/null
    check "$b hostile: nsq-convert refuses a tokenizer with more ids than embedding rows" \
        refused "the tokenizer has ids up to 4095, but the model's vocab_size is 128" "$b/nsq-convert" "$TMP/hm-v128" "$TMP/hm-v128.nsq"
    check "$b hostile: ... and writes nothing" test ! -e "$TMP/hm-v128.nsq"
}
