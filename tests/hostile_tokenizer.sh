# tests/hostile_tokenizer.sh - tools given a hostile tokenizer: ids that no
# embedding row backs are refused when it loads; limits reached while
# encoding or decoding are errors that say which limit (the library's
# message), never a crash, a hang or "could not be tokenized" alone. Sourced
# by tests/run.sh, whose check/exit_code/stderr_says helpers and $TMP it uses:
#   hostile_tokenizer_tests BUILD_DIR
# The inputs are made under $TMP/ht from tiny-gpt2's tokenizer.json.

HT=$TMP/ht

# ht_json NAME PYTHON: $HT/NAME/tokenizer.json, tiny-gpt2's edited by PYTHON (t is the parsed JSON).
ht_json() {
    mkdir -p "$HT/$1" &&
        python3 -c "import json,sys; t=json.load(open(sys.argv[1])); $2; json.dump(t, open(sys.argv[2], 'w'))" \
            fixtures/models/tiny-gpt2/tokenizer.json "$HT/$1/tokenizer.json"
}

# ht_refused PATTERN COMMAND...: exits 1 saying PATTERN, without a sanitizer report.
ht_refused() { fails_cleanly 300 1 "$@" <"$HT/stdin"; }

# ht_input TEXT: what the next commands read on stdin.
ht_input() { printf '%s' "$1" >"$HT/stdin"; }

hostile_tokenizer_tests() {
    local b=$1 g=$HT/gpt2.nsq
    mkdir -p "$HT"
    ht_input "Hello"
    # ids past the vocabulary: refused at load (they reached the embedding lookup)
    ht_json pp-huge "t['post_processor'] = {'type': 'TemplateProcessing', 'single': [{'SpecialToken': {'id': 'x'}}, {'Sequence': {'id': 'A'}}], 'special_tokens': {'x': {'id': 'x', 'ids': [16000000]}}}"
    check "$b tokenizer: post-processor id 16000000" ht_refused "has id 16000000; nsq allows ids up to 4194303" \
        "$b/nsq-tokenize" "$HT/pp-huge" --add-special
    ht_json pp-gap "t['post_processor'] = {'type': 'RobertaProcessing', 'cls': ['<s>', 0], 'sep': ['</s>', 4096]}"
    check "$b tokenizer: post-processor id 4096" ht_refused "post-processor id 4096 is not a token of the vocabulary" \
        "$b/nsq-tokenize" "$HT/pp-gap" --add-special
    ht_json added-huge "t['added_tokens'].append(dict(id=16000000, content='<x>', special=True))"
    check "$b tokenizer: added token id 16000000" ht_refused "added token 2 has id 16000000" \
        "$b/nsq-tokenize" "$HT/added-huge"
    # an id below the cap that is no token, in a model: the model check refuses it
    check "$b tokenizer: convert gpt2" "$b/nsq-convert" fixtures/models/tiny-gpt2 "$g" --quiet --scheme tiered
    check "$b tokenizer: edit the post-processor" "$b/tests/nsq_edit" "$g" "$HT/pp-gap.nsq" \
        "tok:tokenizer.json=$HT/pp-gap/tokenizer.json"
    check "$b tokenizer: nsq-run, post-processor id 4096" ht_refused "post-processor id 4096 is not a token" \
        "$b/nsq-run" "$HT/pp-gap.nsq" "Hello" -n 2
    check "$b tokenizer: nsq-verify --model, post-processor id 4096" ht_refused "post-processor id 4096" \
        "$b/nsq-verify" --model "$HT/pp-gap.nsq"

    # limits reached while encoding, with the library's message
    local rep="{'type': 'Replace', 'pattern': {'String': 'a'}, 'content': 'a' * 100}"
    ht_json norm-bomb "t['normalizer'] = {'type': 'Sequence', 'normalizers': [$rep] * 4}"
    ht_input "aaaa"
    check "$b tokenizer: a normalizer bomb" ht_refused \
        "encoding failed: NSQ_E_LIMIT: the normalizer Replace would make the text longer than 16 x" \
        "$b/nsq-tokenize" "$HT/norm-bomb"
    check "$b tokenizer: edit in the normalizer bomb" "$b/tests/nsq_edit" "$g" "$HT/norm-bomb.nsq" \
        "tok:tokenizer.json=$HT/norm-bomb/tokenizer.json"
    check "$b tokenizer: nsq-run, a normalizer bomb" ht_refused \
        "the prompt could not be tokenized: the normalizer Replace would make" "$b/nsq-run" "$HT/norm-bomb.nsq" "aaaa" -n 2
    printf 'aaaa %.0s' {1..200} >"$HT/text.txt"
    check "$b tokenizer: nsq-perplexity, a normalizer bomb" ht_refused \
        "cannot tokenize: the normalizer Replace would make" "$b/nsq-perplexity" "$HT/norm-bomb.nsq" "$HT/text.txt" --ctx 16
    ht_json regex "t['pre_tokenizer'] = {'type': 'Sequence', 'pretokenizers': [{'type': 'Split', 'pattern': {'Regex': '(\\\\w+\\\\s?)*\$'}, 'behavior': 'Isolated'}, {'type': 'ByteLevel', 'add_prefix_space': False, 'use_regex': False}]}"
    ht_input "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"
    check "$b tokenizer: a regex that backtracks" ht_refused \
        "the pre-tokenizer regex exceeded its match limit on this text" "$b/nsq-tokenize" "$HT/regex"
    check "$b tokenizer: a regex that backtracks, --bench" ht_refused "exceeded its match limit" \
        "$b/nsq-tokenize" "$HT/regex" --bench "$HT/stdin"
    ht_json dec-bomb "t['decoder'] = {'type': 'Sequence', 'decoders': [$rep] * 4}"
    ht_input "65 65"
    check "$b tokenizer: a decoder bomb" ht_refused "decoding failed: NSQ_E_LIMIT" \
        "$b/nsq-tokenize" "$HT/dec-bomb" --decode

    # files the converter asks libnsq about before it embeds them
    mkdir -p "$HT/empty" && : >"$HT/empty/tokenizer.json"
    ht_input "a"
    check "$b tokenizer: empty tokenizer.json" ht_refused "tokenizer.json is empty" "$b/nsq-tokenize" "$HT/empty"
    ht_json bad-regex "t['pre_tokenizer'] = {'type': 'Split', 'pattern': {'Regex': '(a'}, 'behavior': 'Isolated'}"
    check "$b tokenizer: an invalid regex" ht_refused "pre-tokenizer Split regex: missing closing parenthesis" \
        "$b/nsq-tokenize" "$HT/bad-regex"

    # 10^6 added tokens: linear (it took hours)
    mkdir -p "$HT/many" && python3 -c "import json,sys; t=json.load(open(sys.argv[1]))
t['added_tokens'] += [dict(id=4096 + i, content='<t%d>' % i, special=True) for i in range(1000000)]
json.dump(t, open(sys.argv[2], 'w'))" fixtures/models/tiny-gpt2/tokenizer.json "$HT/many/tokenizer.json"
    ht_input "<t999999>a<t5>"
    check "$b tokenizer: 10^6 added tokens" bash -c "timeout 120 '$b/nsq-tokenize' '$HT/many' <'$HT/stdin' | grep -qx '1004095 65 4101'"
}
