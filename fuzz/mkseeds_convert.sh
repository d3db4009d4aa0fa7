#!/bin/bash
# fuzz/mkseeds_convert.sh - writes the generated seeds of the converter's input
# parsers: fuzz/corpus/fuzz_safetensors (tiny checkpoints from tests/gen_hf.py,
# single files and "IDX\n" sharded inputs), fuzz/corpus/fuzz_hfconfig (the
# config.json of each architecture and config style, and the bundled models')
# and fuzz/corpus/fuzz_recipe (the README's recipe and small variants). The
# regress-* seeds are written by hand and left alone. Same bytes every run.
#   fuzz/mkseeds_convert.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
ST=fuzz/corpus/fuzz_safetensors HC=fuzz/corpus/fuzz_hfconfig RC=fuzz/corpus/fuzz_recipe
mkdir -p "$ST" "$HC" "$RC"
find "$ST" "$HC" "$RC" -type f ! -name 'regress-*' -delete

# name|gen_hf.py arguments (tiny: a few KB of weights each)
TINY="--hidden 8 --heads 2 --kv-heads 1 --inter 16 --layers 1 --vocab 16 --ctx 16"
MODELS=(
    "llama-bf16|--arch llama $TINY"
    "llama-f16-v5|--arch llama --dtype f16 --config-style v5 $TINY"
    "llama-llama3|--arch llama --rope-scaling llama3:8.0 $TINY"
    "llama-linear-v5|--arch llama --rope-scaling linear:2.0 --config-style v5 $TINY"
    "llama-yarn|--arch llama --rope-scaling yarn:4.0 $TINY"
    "llama-dynamic|--arch llama --rope-scaling dynamic:2.0 $TINY"
    "llama-i64|--arch llama --tensor-dtype model.norm.weight=I64 $TINY"
    "llama-sharded|--arch llama --shards 2 $TINY"
    "mistral|--arch mistral --sliding-window 8 $TINY"
    "mistral-v5|--arch mistral --sliding-window 8 --config-style v5 $TINY"
    "qwen2-tied|--arch qwen2 --tied $TINY"
    "qwen2-v5|--arch qwen2 --config-style v5 $TINY"
    "gpt2-f32|--arch gpt2 --tied --dtype f32 --hidden 8 --heads 2 --kv-heads 1 --layers 1 --vocab 16 --ctx 16"
    "gpt2-sharded|--arch gpt2 --dtype f16 --config-style v5 --shards 3 --hidden 8 --heads 2 --kv-heads 1 --layers 1 --vocab 16 --ctx 16"
)
for spec in "${MODELS[@]}"; do printf '%s %s\n' "$TMP/${spec%%|*}" "${spec#*|}"; done | "$PY" tests/gen_hf.py --batch

"$PY" - "$TMP" "$ST" "$HC" "${MODELS[@]%%|*}" <<'EOF'
import json, os, struct, sys
tmp, st, hc, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
SEP = b"\n--\n"

def put(path, data):
    with open(path, "wb") as f:
        f.write(data)

for name in names:
    d = os.path.join(tmp, name)
    put(os.path.join(hc, name + ".json"), open(os.path.join(d, "config.json"), "rb").read())
    index = os.path.join(d, "model.safetensors.index.json")
    if not os.path.exists(index):
        put(os.path.join(st, name), open(os.path.join(d, "model.safetensors"), "rb").read())
        continue
    # the fuzz target names its shards s0.safetensors, s1.safetensors, ...
    idx = json.load(open(index))
    shards = sorted(set(idx["weight_map"].values()))
    idx["weight_map"] = {k: "s%d.safetensors" % shards.index(v) for k, v in idx["weight_map"].items()}
    parts = [json.dumps(idx, indent=1).encode()] + [open(os.path.join(d, s), "rb").read() for s in shards]
    assert not any(SEP in p for p in parts), name
    put(os.path.join(st, name), b"IDX\n" + SEP.join(parts))

def st_file(tensors, meta=None):
    """tensors: (name, dtype, shape, bytes) in data order."""
    h, off, data = {}, 0, b""
    if meta is not None:
        h["__metadata__"] = meta
    for name, dt, shape, b in tensors:
        h[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
        off += len(b)
        data += b
    hb = json.dumps(h).encode()
    return struct.pack("<Q", len(hb)) + hb + data

# every dtype, a scalar, empty tensors sharing an offset, metadata, sub-byte floats
f32 = struct.pack("<4f", 1.0, -2.5, float("inf"), float("nan"))
put(os.path.join(st, "dtypes"), st_file([
    ("a.f32", "F32", [2, 2], f32), ("b.f16", "F16", [3], bytes([0, 0x3c, 0xff, 0x7b, 1, 0x80])),
    ("c.bf16", "BF16", [2], bytes([0x80, 0x3f, 0x80, 0x7f])), ("d.empty", "F32", [0, 7], b""),
    ("e.empty", "BF16", [3, 0], b""), ("f.scalar", "F32", [], struct.pack("<f", 3.0)),
    ("g.i64", "I64", [1], b"\1" * 8), ("h.f4", "F4", [2, 3], b"\x12\x34\x56"),
    ("i.f6", "F6_E2M3", [4], b"\xff" * 3), ("j.bool", "BOOL", [2], b"\0\1"),
], meta={"format": "pt", "note": "x"}))
put(os.path.join(st, "empty"), st_file([]))
put(os.path.join(st, "metadata-only"), st_file([], meta={}))
EOF

for m in tiny-llama tiny-gpt2; do cp "fixtures/models/$m/config.json" "$HC/$m.json"; done

# recipes: the README's, each key alone, and rules
sed -n '/^```yaml$/,/^```$/p' README.md | sed '1d;$d' >"$RC/readme.yaml"
printf 'bpw: 3.5\nembed: f16\nhead: q4\n' >"$RC/bpw.yaml"
printf 'lossless: true\nlayers_per_block: 4\nzstd: -3\n' >"$RC/lossless.yaml"
printf -- '---\ngroup_size: 128\nrefine: 8\ntiers: "0:0:100"\n...\n' >"$RC/document.yaml"
printf 'tensors:\n  - {match: "lm_head.*", policy: source}\n  - match: "*"\n    tiers: "100:0:0"\n    group_size: 32\n' >"$RC/flow-rules.yaml"
printf 'tensors: []\n' >"$RC/no-rules.yaml"
printf 'group_size: &g 128\nembed: *g\n' >"$RC/alias.yaml"
