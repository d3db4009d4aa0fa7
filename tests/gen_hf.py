#!/usr/bin/python3
"""gen_hf.py - writes a small Hugging Face checkpoint directory with random
weights, for the nsq-convert tests: config.json spelled as transformers writes
it (4.x or 5.x style), generation_config.json, safetensors written by hand
(one file, or shards with model.safetensors.index.json) and tokenizer files
copied from the bundled fixtures. numpy only; the same arguments always give
the same bytes.

  gen_hf.py OUT_DIR --arch llama|mistral|qwen2|qwen3|phi3|gemma2|gpt2
            [--dtype f32|f16|bf16] [--shards N] [--tied] [--hidden 64
            --layers 2 --heads 4 --kv-heads 2 --inter 128 --vocab 4096]
            [--head-dim N] [--config-style v4|v5]
            [--rope-scaling linear:2.0|dynamic:F|llama3:8.0|yarn:F|longrope:F]
            [--ctx N] [--sliding-window N] [--seed N]
            [--softcap ATTN:FINAL] [--query-pre-attn-scalar N]

GPT-2 defaults to n_inner null (4 * hidden). As transformers 4 does, a v4
GPT-2 or Gemma 2 config omits tie_word_embeddings when it is true (their
class default).

Qwen3 has q_norm/k_norm per head; --head-dim (Qwen3, Gemma 2) sets a head_dim
other than hidden/heads. Phi-3 fuses qkv_proj (rows q, k, v) and gate_up_proj
(rows gate, up); longrope:F writes short_factor and long_factor lists (head_dim/2
values between 1 and 4) with original_max_position_embeddings = ctx / F, so that
sequences up to ctx / F use short_factor and the attention factor
sqrt(1 + ln F / ln(ctx / F)). Gemma 2 defaults: softcapping 50:30, sliding
window 4096 on the even layers, query_pre_attn_scalar = head_dim, norm weights
around 0 (its RMSNorm scales by 1 + w).

  gen_hf.py --batch     reads one "OUT_DIR OPTIONS..." line per checkpoint from
                        stdin (numpy is imported once)

Test hooks for broken checkpoints (each may be repeated):
  --drop NAME            leave tensor NAME out
  --extra NAME           add a tensor NAME of shape [hidden] that no model has
  --tensor-dtype NAME=DT store tensor NAME as DT (I64, F64, I32, ...)
  --corrupt KIND         damage the first safetensors file after writing it:
                         header-length (a length past the end of the file) or
                         offsets (a shape whose size differs from its data_offsets)
"""
import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures", "models")
V4_VERSION = "4.46.3"
V5_VERSION = "5.0.0"

HF_ARCH = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
           "qwen3": "Qwen3ForCausalLM", "phi3": "Phi3ForCausalLM", "gemma2": "Gemma2ForCausalLM",
           "gpt2": "GPT2LMHeadModel"}
TORCH_DTYPE = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}
ST_DTYPE = {"f32": "F32", "f16": "F16", "bf16": "BF16"}
ST_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
            "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out")
    p.add_argument("--arch", required=True, choices=sorted(HF_ARCH))
    p.add_argument("--dtype", default="bf16", choices=sorted(TORCH_DTYPE))
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--tied", action="store_true", help="tie_word_embeddings (no lm_head.weight)")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--inter", type=int, default=None,
                   help="intermediate size (default 128; GPT-2: n_inner null, i.e. 4*hidden)")
    p.add_argument("--vocab", type=int, default=4096)  # the copied tokenizers have 4096 tokens
    p.add_argument("--ctx", type=int, default=None, help="max_position_embeddings / n_positions")
    p.add_argument("--sliding-window", type=int, default=None, help="sliding_window (not GPT-2)")
    p.add_argument("--config-style", default="v4", choices=["v4", "v5"])
    p.add_argument("--rope-scaling", default=None, metavar="TYPE:FACTOR")
    p.add_argument("--head-dim", type=int, default=None, help="Qwen3/Gemma 2 head_dim (default hidden/heads)")
    p.add_argument("--softcap", default="50.0:30.0", metavar="ATTN:FINAL",
                   help="Gemma 2 attn_logit_softcapping:final_logit_softcapping")
    p.add_argument("--query-pre-attn-scalar", type=int, default=None, help="Gemma 2 (default head_dim)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--drop", action="append", default=[])
    p.add_argument("--extra", action="append", default=[])
    p.add_argument("--tensor-dtype", action="append", default=[], metavar="NAME=DTYPE")
    p.add_argument("--corrupt", choices=["header-length", "offsets"])
    a = p.parse_args(argv)
    if a.shards < 1:
        p.error("--shards must be at least 1")
    if a.head_dim is not None and a.arch not in ("qwen3", "gemma2"):
        p.error("--head-dim is for qwen3 and gemma2")
    if a.heads % a.kv_heads or (a.head_dim is None and a.hidden % a.heads):
        p.error("heads must divide hidden and kv-heads must divide heads")
    if a.arch == "gpt2" and a.rope_scaling:
        p.error("GPT-2 has no RoPE")
    if a.head_dim is None:
        a.head_dim = a.hidden // a.heads
    return a


# ---- config.json ----

def longrope(a, theta, ctx, factor):
    """LongRoPE as Phi-3 spells it: no factor key, the factor being
    max_position_embeddings over original_max_position_embeddings, which
    Phi-3 keeps at the top level (transformers 5 copies it into
    rope_parameters, with partial_rotary_factor)."""
    n = a.head_dim // 2
    s = {"long_factor": [round(1 + 3.0 * (i + 1) / n, 4) for i in range(n)],
         "short_factor": [round(1 + (i + 1) / n, 4) for i in range(n)]}
    orig = {"original_max_position_embeddings": int(round(ctx / factor))}
    v4 = dict(s, type="longrope") if a.arch == "phi3" else dict(s, rope_type="longrope", **orig)
    return v4, dict(s, rope_type="longrope", rope_theta=theta, partial_rotary_factor=1.0, **orig)


def rope_scaling(a, theta, ctx):
    """(rope_scaling for v4, rope_parameters for v5)."""
    if not a.rope_scaling:
        v5 = {"rope_theta": theta, "rope_type": "default"}
        if a.arch == "phi3":
            v5["partial_rotary_factor"] = 1.0
        return None, v5
    kind, factor = a.rope_scaling.split(":")
    if kind == "longrope":
        return longrope(a, theta, ctx, float(factor))
    s = {"factor": float(factor), "rope_type": kind}
    if kind == "llama3":
        s.update({"high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192})
    elif kind == "yarn":
        s.update({"original_max_position_embeddings": 4096})
    return s, dict(s, rope_theta=theta)


def config(a):
    tied = a.tied
    ids = {"bos_token_id": 0, "eos_token_id": 0} if a.arch == "gpt2" else {"bos_token_id": 1, "eos_token_id": 2}
    if a.arch == "gpt2":
        c = {
            "activation_function": "gelu_new", "architectures": [HF_ARCH[a.arch]], "attn_pdrop": 0.1,
            "embd_pdrop": 0.1, "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "gpt2",
            "n_embd": a.hidden, "n_head": a.heads, "n_inner": a.inter, "n_layer": a.layers,
            "n_positions": a.ctx or 1024, "reorder_and_upcast_attn": False, "resid_pdrop": 0.1,
            "scale_attn_by_inverse_layer_idx": False, "scale_attn_weights": True, "summary_activation": None,
            "summary_first_dropout": 0.1, "summary_proj_to_labels": True, "summary_type": "cls_index",
            "summary_use_proj": True, "use_cache": True, "vocab_size": a.vocab,
        }
        # transformers 4 writes only what differs from the defaults: GPT-2 ties by default
        if not tied or a.config_style == "v5":
            c["tie_word_embeddings"] = tied
        if a.config_style == "v5":
            c["pad_token_id"] = None
    else:
        c = {
            "architectures": [HF_ARCH[a.arch]], "attention_dropout": 0.0, "hidden_act": "silu",
            "hidden_size": a.hidden, "initializer_range": 0.02, "intermediate_size": a.inter,
            "model_type": a.arch, "num_attention_heads": a.heads, "num_hidden_layers": a.layers,
            "num_key_value_heads": a.kv_heads, "tie_word_embeddings": tied, "use_cache": True,
            "vocab_size": a.vocab,
        }
        theta = arch_config(a, c)
        v4, v5 = rope_scaling(a, theta, c["max_position_embeddings"])
        if a.arch == "phi3" and v4:
            c["original_max_position_embeddings"] = v5["original_max_position_embeddings"]
        if a.config_style == "v4":
            c["rope_theta"] = theta
            if a.arch not in ("mistral", "gemma2") or v4:  # their v4 configs have no rope_scaling
                c["rope_scaling"] = v4
        else:
            c["rope_parameters"] = v5
            c["pad_token_id"] = None
    c.update(ids)
    if a.config_style == "v4":
        c["torch_dtype"] = TORCH_DTYPE[a.dtype]
        c["transformers_version"] = V4_VERSION
    else:
        c["dtype"] = TORCH_DTYPE[a.dtype]
        c["transformers_version"] = V5_VERSION
    return c


def arch_config(a, c):
    """Adds the keys of a.arch to the decoder config c; returns rope_theta."""
    if a.arch == "llama":
        c.update({"attention_bias": False, "head_dim": a.head_dim, "max_position_embeddings": a.ctx or 2048,
                  "mlp_bias": False, "pretraining_tp": 1, "rms_norm_eps": 1e-06})
        return 10000.0
    if a.arch == "mistral":
        c.update({"head_dim": a.head_dim, "max_position_embeddings": a.ctx or 32768, "rms_norm_eps": 1e-05,
                  "sliding_window": 4096 if a.sliding_window is None else a.sliding_window})
        return 10000.0
    if a.arch == "qwen2":
        c.update({"max_position_embeddings": a.ctx or 32768, "max_window_layers": 28, "rms_norm_eps": 1e-06,
                  "sliding_window": 32768 if a.sliding_window is None else a.sliding_window,
                  "use_sliding_window": False})
        return 1000000.0
    if a.arch == "qwen3":
        c.update({"attention_bias": False, "head_dim": a.head_dim, "max_position_embeddings": a.ctx or 40960,
                  "max_window_layers": 28, "rms_norm_eps": 1e-06, "sliding_window": a.sliding_window,
                  "use_sliding_window": False})
        if a.config_style == "v5":
            c["layer_types"] = ["full_attention"] * a.layers
        return 1000000.0
    if a.arch == "phi3":
        ctx = a.ctx or 4096
        c.update({"embd_pdrop": 0.0, "max_position_embeddings": ctx, "original_max_position_embeddings": ctx,
                  "resid_pdrop": 0.0, "rms_norm_eps": 1e-05, "sliding_window": a.sliding_window})
        if a.config_style == "v4":
            c["attention_bias"] = False
        return 10000.0
    return gemma2_config(a, c)


def gemma2_config(a, c):
    attn, final = (float(x) for x in a.softcap.split(":"))
    scalar = a.query_pre_attn_scalar or a.head_dim
    c.update({"attention_bias": False, "attn_logit_softcapping": attn, "final_logit_softcapping": final,
              "head_dim": a.head_dim, "hidden_activation": "gelu_pytorch_tanh",
              "max_position_embeddings": a.ctx or 8192, "query_pre_attn_scalar": scalar, "rms_norm_eps": 1e-06,
              "sliding_window": 4096 if a.sliding_window is None else a.sliding_window})
    if a.config_style == "v4":
        c.update({"cache_implementation": "hybrid", "hidden_act": "gelu_pytorch_tanh"})
        if a.tied:  # transformers 4 writes only what differs from Gemma2Config's defaults
            del c["tie_word_embeddings"]
    else:
        del c["hidden_act"]
        c["layer_types"] = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(a.layers)]
        c["use_bidirectional_attention"] = None
    return 10000.0


def generation_config(a, c):
    g = {"_from_model_config": True, "bos_token_id": c["bos_token_id"], "eos_token_id": c["eos_token_id"],
         "transformers_version": c["transformers_version"]}
    if a.config_style == "v5":
        g.update({"output_attentions": False, "output_hidden_states": False, "use_cache": True})
    return g


# ---- tensors ----

def tensor_specs(a):
    """(name, shape, kind) in state_dict order; kind is matrix, norm, norm0 or bias."""
    H, V, L, I = a.hidden, a.vocab, a.layers, a.inter
    t = []
    if a.arch == "gpt2":
        P = a.ctx or 1024
        I = I or 4 * H
        t += [("transformer.wte.weight", [V, H], "matrix"), ("transformer.wpe.weight", [P, H], "matrix")]
        for l in range(L):
            p = "transformer.h.%d." % l
            t += [(p + "ln_1.weight", [H], "norm"), (p + "ln_1.bias", [H], "bias"),
                  (p + "attn.c_attn.weight", [H, 3 * H], "matrix"), (p + "attn.c_attn.bias", [3 * H], "bias"),
                  (p + "attn.c_proj.weight", [H, H], "matrix"), (p + "attn.c_proj.bias", [H], "bias"),
                  (p + "ln_2.weight", [H], "norm"), (p + "ln_2.bias", [H], "bias"),
                  (p + "mlp.c_fc.weight", [H, I], "matrix"), (p + "mlp.c_fc.bias", [I], "bias"),
                  (p + "mlp.c_proj.weight", [I, H], "matrix"), (p + "mlp.c_proj.bias", [H], "bias")]
        t += [("transformer.ln_f.weight", [H], "norm"), ("transformer.ln_f.bias", [H], "bias")]
    else:
        norm = "norm0" if a.arch == "gemma2" else "norm"
        t.append(("model.embed_tokens.weight", [V, H], "matrix"))
        for l in range(L):
            t += decoder_layer(a, "model.layers.%d." % l, norm)
        t.append(("model.norm.weight", [H], norm))
    if not a.tied:
        t.append(("lm_head.weight", [V, H], "matrix"))
    return t


def decoder_layer(a, p, norm):
    H, I, D = a.hidden, a.inter, a.head_dim
    q, kv = a.heads * D, a.kv_heads * D
    t = [(p + "input_layernorm.weight", [H], norm)]
    if a.arch == "phi3":
        t.append((p + "self_attn.qkv_proj.weight", [q + 2 * kv, H], "matrix"))
    else:
        for proj, n in (("q", q), ("k", kv), ("v", kv)):
            t.append((p + "self_attn.%s_proj.weight" % proj, [n, H], "matrix"))
            if a.arch == "qwen2":
                t.append((p + "self_attn.%s_proj.bias" % proj, [n], "bias"))
    if a.arch == "qwen3":
        t += [(p + "self_attn.q_norm.weight", [D], "norm"), (p + "self_attn.k_norm.weight", [D], "norm")]
    t += [(p + "self_attn.o_proj.weight", [H, q], "matrix"), (p + "post_attention_layernorm.weight", [H], norm)]
    if a.arch == "gemma2":
        t += [(p + "pre_feedforward_layernorm.weight", [H], norm),
              (p + "post_feedforward_layernorm.weight", [H], norm)]
    if a.arch == "phi3":
        t.append((p + "mlp.gate_up_proj.weight", [2 * I, H], "matrix"))
    else:
        t += [(p + "mlp.gate_proj.weight", [I, H], "matrix"), (p + "mlp.up_proj.weight", [I, H], "matrix")]
    t.append((p + "mlp.down_proj.weight", [H, I], "matrix"))
    return t


def to_bytes(x, st_dtype):
    """float32 array -> little-endian bytes in a safetensors dtype."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if st_dtype == "F32":
        return x.astype("<f4").tobytes()
    if st_dtype == "F16":
        return x.astype("<f2").tobytes()
    if st_dtype == "BF16":  # round to nearest even
        u = x.view(np.uint32)  # finite values: no overflow
        u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
        return u.astype("<u2").tobytes()
    if st_dtype == "F64":
        return x.astype("<f8").tobytes()
    ints = {"I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "U16": "<u2", "U32": "<u4",
            "U64": "<u8", "BOOL": "u1"}
    y = np.round(x * 1000)
    if st_dtype[0] in "UB":
        y = np.abs(y) if st_dtype[0] == "U" else (y > 0)
    return y.astype(ints[st_dtype]).tobytes()


def make_tensors(a):
    rng = np.random.default_rng(a.seed)
    override = dict(s.split("=", 1) for s in a.tensor_dtype)
    specs = [s for s in tensor_specs(a) if s[0] not in a.drop] + [(n, [a.hidden], "bias") for n in a.extra]
    out = []
    for name, shape, kind in specs:
        n = int(np.prod(shape))
        if kind == "norm":
            x = 1.0 + 0.05 * rng.standard_normal(n, dtype=np.float32)
        elif kind == "norm0":  # Gemma's RMSNorm scales by 1 + w
            x = 0.05 * rng.standard_normal(n, dtype=np.float32)
        elif kind == "bias":
            x = 0.02 * rng.standard_normal(n, dtype=np.float32)
        else:
            x = 0.02 * rng.standard_normal(n, dtype=np.float32)
        dt = override.get(name, ST_DTYPE[a.dtype])
        out.append((name, dt, shape, to_bytes(x, dt)))
    return out


def write_safetensors(path, tensors):
    """tensors: (name, dtype, shape, bytes); data sorted by name, header padded to 8 bytes."""
    header = {"__metadata__": {"format": "pt"}}
    pos = 0
    for name, dt, shape, data in sorted(tensors, key=lambda t: t[0]):
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [pos, pos + len(data)]}
        pos += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, _, data in sorted(tensors, key=lambda t: t[0]):
            f.write(data)


def split_shards(tensors, n):
    """Consecutive runs of the state dict, about equal in bytes, none empty."""
    n = min(n, len(tensors))
    total = sum(len(t[3]) for t in tensors)
    shards, cur, done = [], [], 0
    for i, t in enumerate(tensors):
        cur.append(t)
        done += len(t[3])
        left_tensors, left_shards = len(tensors) - i - 1, n - len(shards) - 1
        if left_shards > 0 and (done >= total * (len(shards) + 1) / n or left_tensors == left_shards):
            shards.append(cur)
            cur = []
    shards.append(cur)
    return shards


def corrupt(path, kind):
    with open(path, "r+b") as f:
        raw = f.read()
        n = struct.unpack("<Q", raw[:8])[0]
        if kind == "header-length":
            f.seek(0)
            f.write(struct.pack("<Q", len(raw) + 4096))
            return
        header = json.loads(raw[8:8 + n])
        name = sorted(k for k in header if k != "__metadata__")[0]
        header[name]["shape"] = [d + 1 for d in header[name]["shape"]]
        h = json.dumps(header, separators=(",", ":")).encode()
        if len(h) > n:
            sys.exit("gen_hf.py: corrupted header does not fit")
        f.seek(8)
        f.write(h + b" " * (n - len(h)))


def write_json(path, obj):
    with open(path, "w") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def generate(argv):
    a = parse_args(argv)
    if a.inter is None and a.arch != "gpt2":
        a.inter = 128
    os.makedirs(a.out, exist_ok=True)
    c = config(a)
    write_json(os.path.join(a.out, "config.json"), c)
    write_json(os.path.join(a.out, "generation_config.json"), generation_config(a, c))

    tensors = make_tensors(a)
    if a.shards == 1:
        files = ["model.safetensors"]
        write_safetensors(os.path.join(a.out, files[0]), tensors)
    else:
        shards = split_shards(tensors, a.shards)
        files = ["model-%05d-of-%05d.safetensors" % (i + 1, len(shards)) for i in range(len(shards))]
        weight_map = {}
        for fname, part in zip(files, shards):
            write_safetensors(os.path.join(a.out, fname), part)
            weight_map.update({t[0]: fname for t in part})
        meta = {"total_size": sum(len(t[3]) for t in tensors)}
        if a.config_style == "v5":
            meta["total_parameters"] = sum(int(np.prod(t[2])) for t in tensors)
        write_json(os.path.join(a.out, "model.safetensors.index.json"), {"metadata": meta, "weight_map": weight_map})
    if a.corrupt:
        corrupt(os.path.join(a.out, files[0]), a.corrupt)

    if a.arch == "gpt2":
        src, names = "tiny-gpt2", ["vocab.json", "merges.txt", "tokenizer_config.json"]
    else:
        src, names = "tiny-llama", ["tokenizer.json", "tokenizer_config.json"]
    for n in names:
        dst = os.path.join(a.out, n)
        shutil.copyfile(os.path.join(FIXTURES, src, n), dst)
        os.chmod(dst, 0o644)  # the fixtures are read-only; tests delete and edit copies


def main(argv):
    if argv == ["--batch"]:  # one checkpoint per stdin line: OUT_DIR [OPTIONS...]
        import shlex
        for line in sys.stdin:
            if line.strip() and not line.lstrip().startswith("#"):
                generate(shlex.split(line))
    else:
        generate(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
