# tests/hostile_parse.sh - hostile command-line numbers, config.json values and
# recipes: each is refused with a message naming the option or key and its
# range (usage errors exit 2, bad checkpoints 1), never with a hang, a
# sanitizer report or a leak. Sourced by tests/run.sh:
#   hostile_parse_tests BUILD_DIR

HP_BAD_NUMBERS=(-1 1e10 99999999999999999999 nan inf "" 12abc)

# hp_refused STATUS PATTERN COMMAND...: exits STATUS within 60 s, says
# PATTERN on stderr, and no sanitizer speaks.
hp_refused() { fails_cleanly 60 "$@"; }

# hp_option TOOL_ARGS OPTION [SKIP]: every bad number as OPTION's value is a
# usage error naming OPTION (SKIP: a value that is valid for this option).
hp_option() {
    local args=$1 opt=$2 skip=${3:-} v
    for v in "${HP_BAD_NUMBERS[@]}"; do
        [ "$v" = "$skip" ] && continue
        # shellcheck disable=SC2086 # args is a word list
        hp_refused 2 "$opt" $args "$opt=$v" || { echo "value '$v'"; return 1; }
    done
}

hp_option_tests() {
    local b=$1 o
    for o in --temp --top-k --top-p --seed --threads --refine-levels --max-memory; do
        check "$b hostile options: nsq-run $o" hp_option "$b/nsq-run m.nsq prompt" "$o" "$([ $o = --max-memory ] && echo 1e10)"
    done
    check "$b hostile options: nsq-run -n" bash -c "for v in -1 1e10 99999999999999999999 nan inf '' 12abc; do
        '$b/nsq-run' m.nsq prompt -n \"\$v\" 2>&1 >/dev/null | grep -q '^nsq-run: -n wants an integer in 0..1000000000' || exit 1; done"
    check "$b hostile options: nsq-run -n message" hp_refused 2 "-n wants an integer in 0..1000000000, not '-1'" \
        "$b/nsq-run" m.nsq prompt -n -1
    for o in --ctx --threads --max-windows --refine-levels --max-memory; do
        check "$b hostile options: nsq-perplexity $o" hp_option "$b/nsq-perplexity m.nsq t.txt" "$o" \
            "$([ $o = --max-memory ] && echo 1e10)"
    done
    for o in --bpw --group-size --refine --layers-per-block --threads --calib-tokens --calib-probe --router-windows --tiers; do
        check "$b hostile options: nsq-convert $o" hp_option "$b/nsq-convert in out.nsq" "$o"
    done
    check "$b hostile options: nsq-convert --zstd" hp_option "$b/nsq-convert in out.nsq" --zstd -1
    check "$b hostile options: --tiers nan:nan:nan" hp_refused 2 "--tiers wants" "$b/nsq-convert" in out.nsq --tiers nan:nan:nan
    check "$b hostile options: --tiers -10:60:50" hp_refused 2 "--tiers wants" "$b/nsq-convert" in out.nsq --tiers -10:60:50
    check "$b hostile options: --seed range" hp_refused 2 "--seed wants an integer in 0..18446744073709551615" \
        "$b/nsq-run" m.nsq prompt --seed 18446744073709551616
    local r
    for r in random:-1 random:99999999999999999999 random: random:12abc random:1e3 0 65537 -3 nan; do
        check "$b hostile options: nsq-run --route=$r" hp_refused 2 "--route wants" "$b/nsq-run" m.nsq prompt "--route=$r"
        check "$b hostile options: nsq-perplexity --route=$r" hp_refused 2 "--route wants" "$b/nsq-perplexity" m.nsq t.txt "--route=$r"
    done
}

# Lists given on the command line, and numbers at the edge of their ranges.
hp_list_tests() {
    local b=$1 M=$TMP/hp-llama.nsq v
    check "$b hostile lists: convert" "$b/nsq-convert" fixtures/models/tiny-llama "$M" --quiet --lossless
    check "$b hostile lists: --prompt-ids 4095,1" exit_code 0 "$b/nsq-run" "$M" --prompt-ids 4095,1 -n 1 --print-ids
    for v in 1, 1,,2 " 1" -1 +1 99999999999999999999 4096 "" 1x 0x1; do
        check "$b hostile lists: --prompt-ids '$v'" hp_refused 1 "--prompt-ids wants comma-separated ids below 4096" \
            "$b/nsq-run" "$M" --prompt-ids "$v" -n 1
    done
    for v in -1 1, " 1" 99999999999999999999; do
        check "$b hostile lists: --skip-blocks '$v'" hp_refused 1 "--skip-blocks wants comma-separated block numbers" \
            "$b/nsq-run" "$M" Hello -n 1 --skip-blocks "$v"
    done
    check "$b hostile lists: largest values" exit_code 0 "$b/nsq-run" "$M" Hello -n 2 --seed 18446744073709551615 \
        --route=random:18446744073709551615 --top-k 1000000000 --top-p 1 --temp 100 --threads 64 --refine-levels 16
}

# hp_model NAME SRC PYTHON: a copy of fixture SRC (links but config.json) whose
# config.json is edited by PYTHON (c is the parsed JSON); prints its path.
hp_model() {
    local d=$TMP/hp-models/$1 f
    rm -rf "$d" && mkdir -p "$d"
    for f in "$(pwd)/$2"/*; do [ "$(basename "$f")" = config.json ] || ln -s "$f" "$d/"; done
    python3 -c "import json,sys; c=json.load(open(sys.argv[1])); $3; json.dump(c, open(sys.argv[2], 'w'))" \
        "$2/config.json" "$d/config.json"
    echo "$d"
}

# hp_config B NAME SRC PATTERN PYTHON: the edited checkpoint is refused (exit 1) saying PATTERN.
hp_config() {
    local b=$1 name=$2 src=$3 pat=$4 d
    d=$(hp_model "$name" "$src" "$5")
    check "$b hostile config: $name" hp_refused 1 "$pat" "$b/nsq-convert" "$d" "$TMP/hp-out.nsq" --quiet
}

hp_config_tests() {
    local b=$1 L=fixtures/models/tiny-llama G=fixtures/models/tiny-gpt2 d
    d=$(hp_model same "$L" "pass")
    check "$b hostile config: the linked copy converts" "$b/nsq-convert" "$d" "$TMP/hp-out.nsq" --quiet --lossless
    # a billion layers once kept calling realloc after it failed; 2^31 wrapped negative
    hp_config "$b" layers-1e9 $L "num_hidden_layers must be an integer in 1..4096, not 1000000000" \
        "c['num_hidden_layers'] = 10**9"
    hp_config "$b" layers-2p31 $L "num_hidden_layers must be an integer in 1..4096" "c['num_hidden_layers'] = 2**31"
    hp_config "$b" gpt2-layers-1e9 $G "n_layer must be an integer in 1..4096" "c['n_layer'] = 10**9"
    hp_config "$b" hidden-neg $L "hidden_size must be an integer in 1..65536, not -1" "c['hidden_size'] = -1"
    hp_config "$b" vocab-real $L "vocab_size must be an integer in 1..16777216, not 4096.5" "c['vocab_size'] = 4096.5"
    hp_config "$b" inter-huge $L "intermediate_size must be an integer in 1..1048576" "c['intermediate_size'] = 2**40"
    hp_config "$b" ctx-huge $L "max_position_embeddings must be an integer in 1..16777216" \
        "c['max_position_embeddings'] = 2**31"
    hp_config "$b" kv-heads-3 $L "num_attention_heads 8 is not a multiple of num_key_value_heads 3" \
        "c['num_key_value_heads'] = 3"
    hp_config "$b" head-dim-odd $L "head_dim 33 (hidden_size / num_attention_heads when absent) must be even" \
        "c['head_dim'] = 33"
    hp_config "$b" gpt2-head-dim $G "GPT-2 needs n_embd" "c['head_dim'] = 8"
    # float hyper-parameters the runtime would refuse once converted
    hp_config "$b" eps-neg $L "rms_norm_eps must be a number in \[0, 1\], not -1" "c['rms_norm_eps'] = -1"
    hp_config "$b" theta-neg $L "rope_parameters.rope_theta must be a number in \[1, 1e+12\], not -5.0" \
        "c['rope_parameters']['rope_theta'] = -5.0"
    hp_config "$b" factor-0 $L "rope_parameters.factor must be a number in" \
        "c['rope_parameters'] = {'rope_theta': 10000.0, 'rope_type': 'linear', 'factor': 0}"
    hp_config "$b" llama3-same-freq $L "low_freq_factor and high_freq_factor must differ (both 4)" \
        "c['rope_parameters'] = {'rope_theta': 1e4, 'rope_type': 'llama3', 'factor': 8.0, 'low_freq_factor': 4.0}"
    hp_config "$b" llama3-orig-0 $L "original_max_position_embeddings must be a number in \[1, 16777216\]" \
        "c['rope_parameters'] = {'rope_theta': 1e4, 'rope_type': 'llama3', 'factor': 8.0, 'original_max_position_embeddings': 0}"
    hp_config "$b" eos-out $L "config.json: eos_token_id 99999 is not a token id" "c['eos_token_id'] = [2, 99999]"
    d=$(hp_model gen-bos "$L" "pass")
    rm "$d/generation_config.json" && echo '{"bos_token_id": 4096, "eos_token_id": 2}' >"$d/generation_config.json"
    check "$b hostile config: generation_config bos" hp_refused 1 "generation_config.json: bos_token_id 4096 is not a token id" \
        "$b/nsq-convert" "$d" "$TMP/hp-out.nsq" --quiet
    d=$(hp_model big "$L" "c['pad'] = 'x' * (4 << 20)")
    check "$b hostile config: 4 MiB" hp_refused 1 "more than the 4194304 a config may have" \
        "$b/nsq-convert" "$d" "$TMP/hp-out.nsq" --quiet
}

hp_recipe_tests() {
    local b=$1 L=fixtures/models/tiny-llama r=$TMP/hp-recipe
    mkdir -p "$r"
    printf 'group_size: 33\n' >"$r/g33.yaml"
    printf 'tiers: "nan:nan:nan"\n' >"$r/nan.yaml"
    printf 'refine: 3\n' >"$r/refine3.yaml"
    printf 'tensors:\n  - match: "*.v_proj.weight"\n    group_size: 48\n' >"$r/rule-g48.yaml"
    printf 'scheme: tiered\ntensors:\n  - match: "*.v_proj.weight"\n    policy: q8\n  - match: "*.k_proj.weight"\n    tiers: "0:100:0"\n' \
        >"$r/rules.yaml"
    python3 -c "print('tensors:'); [print('  - {match: t%d}' % i) for i in range(4097)]" >"$r/many.yaml"
    head -c $((1024 * 1024 + 1)) /dev/zero | tr '\0' ' ' >"$r/big.yaml"
    # group_size 33 once gave a 32-bpw file; NaN tiers and refine 3 were accepted
    check "$b hostile recipe: group_size 33" hp_refused 2 "g33.yaml:1: group_size must be 32, 64, 128 or 256" \
        "$b/nsq-convert" $L "$TMP/hp-out.nsq" --recipe "$r/g33.yaml"
    check "$b hostile recipe: rule group_size 48" hp_refused 2 "rule-g48.yaml:3: group_size must be 32, 64, 128 or 256" \
        "$b/nsq-convert" $L "$TMP/hp-out.nsq" --recipe "$r/rule-g48.yaml"
    check "$b hostile recipe: NaN tiers" hp_refused 2 "nan.yaml:1: expected \"Q8:Q4:Q2\" percentages" \
        "$b/nsq-convert" $L "$TMP/hp-out.nsq" --recipe "$r/nan.yaml"
    check "$b hostile recipe: refine 3" hp_refused 2 "refine must be 1, 2, 4 or 8" \
        "$b/nsq-convert" $L "$TMP/hp-out.nsq" --recipe "$r/refine3.yaml"
    check "$b hostile recipe: 4097 rules" hp_refused 2 "more than 4096 tensors entries" \
        "$b/nsq-convert" $L "$TMP/hp-out.nsq" --recipe "$r/many.yaml"
    check "$b hostile recipe: over 1 MiB" hp_refused 2 "larger than the 1048576 bytes a recipe may have" \
        "$b/nsq-convert" $L "$TMP/hp-out.nsq" --recipe "$r/big.yaml"
    # the rules were never freed: LeakSanitizer fails the sanitizer build
    check "$b hostile recipe: rules, --help" exit_code 0 "$b/nsq-convert" --recipe "$r/rules.yaml" --help
    check "$b hostile recipe: rules, conversion" exit_code 0 "$b/nsq-convert" $L "$TMP/hp-out.nsq" --quiet --recipe "$r/rules.yaml"
    check "$b hostile recipe: rules, usage error" exit_code 2 "$b/nsq-convert" $L "$TMP/hp-out.nsq" --recipe "$r/rules.yaml" --threads 0
}

hostile_parse_tests() {
    local b=$1
    hp_option_tests "$b"
    hp_list_tests "$b"
    hp_config_tests "$b"
    hp_recipe_tests "$b"
}
