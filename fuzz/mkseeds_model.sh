#!/bin/bash
# Writes fuzz/corpus/fuzz_model/: tiny models (hidden 16, 2 layers, 256
# tokens, a byte-level tokenizer of 256 tokens) of each architecture family,
# converted with nsq-convert in a few ways. Needs a build in BUILD (default build).
#   fuzz/mkseeds_model.sh [BUILD]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
OUT=fuzz/corpus/fuzz_model
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
# GPT-2's byte-to-character map: every byte is one token, no merges.
byte_vocab() {
    /usr/bin/python3 - "$1" <<'PY'
import json, sys
bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
json.dump({chr(c): b for b, c in zip(bs, cs)}, open(sys.argv[1], "w"))
PY
}
tok_json() {
    /usr/bin/python3 - "$1" "$2" <<'PY'
import json, sys
v = json.load(open(sys.argv[2]))
bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
json.dump({"version": "1.0", "added_tokens": [{"id": 255, "content": "<|end|>", "single_word": False, "lstrip": False,
           "rstrip": False, "normalized": False, "special": True}], "normalizer": None, "pre_tokenizer": bl,
           "post_processor": None, "decoder": bl,
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                     "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": v, "merges": []}},
          open(sys.argv[1], "w"))
PY
}
byte_vocab "$T/vocab.json"
tok_json "$T/tokenizer.json" "$T/vocab.json"
small="--hidden 16 --layers 2 --heads 2 --inter 32 --vocab 256 --ctx 16"
gen() { # gen NAME ARGS...: a checkpoint with the tiny tokenizer
    local d=$T/$1; shift
    /usr/bin/python3 tests/gen_hf.py "$@" $small "$d" >/dev/null
    rm -f "$d"/tokenizer* "$d"/vocab.json "$d"/merges.txt
    cp "$T/tokenizer.json" "$d/"
}
gen llama --arch llama --kv-heads 1
gen qwen2 --arch qwen2 --tied --kv-heads 1
gen mistral --arch mistral --sliding-window 4 --kv-heads 2
gen llama3 --arch llama --rope-scaling llama3:8.0 --kv-heads 1
gen gpt2 --arch gpt2 --dtype f32
gen qwen3 --arch qwen3 --kv-heads 1 --tied
gen phi3 --arch phi3 --kv-heads 1 --rope-scaling longrope:2 --sliding-window 4
gen gemma2 --arch gemma2 --kv-heads 1 --sliding-window 4 --softcap 1.0:1.0
conv() { # conv SEED DIR ARGS...
    local seed=$1 d=$2; shift 2
    "$B/nsq-convert" "$T/$d" "$OUT/$seed.nsq" --quiet --group-size 32 "$@"
    "$B/nsq-verify" --model "$OUT/$seed.nsq" >/dev/null
}
conv llama llama
conv llama-refine llama --refine 2 --layers-per-block 2
conv llama-zstd llama --zstd
conv qwen2-tied qwen2 --embed q4
conv mistral-swa mistral --embed f16 --head source
conv llama3-rope llama3
conv gpt2 gpt2
conv gpt2-lossless gpt2 --lossless
conv qwen3 qwen3
conv phi3-longrope phi3
conv gemma2-softcap gemma2 --refine 2
ls -l "$OUT"
