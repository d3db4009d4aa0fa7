#!/usr/bin/python3
"""ref_forward.py - an independent numpy reference of the forward pass, for
checking nsq-run: reads a Hugging Face checkpoint directory (config.json and
*.safetensors) and writes the logits of every position of a prompt that starts
at position 0, computed in float64 with the semantics of transformers'
LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM and GPT2LMHeadModel.
Written from the model definitions, sharing no code with the runtime.
Sliding windows: Mistral's applies to every layer; Qwen2's only with
use_sliding_window, to the layers from max_window_layers on (or as layer_types
says). A query at position p sees the keys j <= p with p - j < window.

  ref_forward.py HF_DIR IDS_CSV OUT.f32 [--no-window] [--no-bias] [--no-rope-scaling]
  ref_forward.py --batch   reads one "HF_DIR IDS_CSV OUT.f32 [OPTIONS...]" line per
                           run from stdin (numpy is imported once)

OUT.f32: little-endian float32 [n_ids][vocab].

The options switch one feature off, to show that a test notices it missing:
  --no-window        attend to every earlier position (ignore sliding_window)
  --no-bias          treat the q/k/v/o and MLP biases of Llama-style models as 0
  --no-rope-scaling  plain RoPE frequencies, whatever rope_scaling says
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np

SUPPORTED = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "GPT2LMHeadModel")


# ---- safetensors ----

def _decode(dtype, raw, shape):
    if dtype == "F32":
        x = np.frombuffer(raw, dtype="<f4")
    elif dtype == "F16":
        x = np.frombuffer(raw, dtype="<f2")
    elif dtype == "BF16":  # the top 16 bits of a float32
        x = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    elif dtype == "F64":
        x = np.frombuffer(raw, dtype="<f8")
    else:
        raise ValueError("dtype %s is not a float type this reference reads" % dtype)
    return x.astype(np.float64).reshape(shape)


def read_safetensors(path):
    """{name: float64 array} of one safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        if base + b > len(data):
            raise ValueError("%s: tensor %s runs past the end of the file" % (path, name))
        out[name] = _decode(e["dtype"], data[base + a:base + b], e["shape"])
    return out


def read_checkpoint(d):
    files = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
    if not files:
        raise ValueError("%s: no .safetensors files" % d)
    tensors = {}
    for f in files:
        tensors.update(read_safetensors(os.path.join(d, f)))
    return tensors


# ---- shared pieces ----

def rms_norm(x, w, eps):
    return w * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def layer_norm(x, w, b, eps):
    mu = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mu) ** 2, axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def activation(name):
    if name == "silu":
        return lambda x: x / (1.0 + np.exp(-x))
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    if name == "gelu":
        erf = np.vectorize(math.erf)
        return lambda x: 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
    if name == "relu":
        return lambda x: np.maximum(x, 0.0)
    raise ValueError("activation %s is not supported" % name)


def softmax(s):
    s = s - np.max(s, axis=-1, keepdims=True)
    e = np.exp(s)
    return e / np.sum(e, axis=-1, keepdims=True)


def attend(q, k, v, scale, window):
    """q [n][Hq][d], k/v [n][Hkv][d]; causal, and with a window W a query at
    position p sees keys j with p - j < W. Returns [n][Hq*d]."""
    n, hq, d = q.shape
    group = hq // k.shape[1]
    k = np.repeat(k, group, axis=1)  # kv head h // group serves query head h
    v = np.repeat(v, group, axis=1)
    s = np.einsum("phd,jhd->hpj", q, k) * scale
    p = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    allowed = j <= p
    if window:
        allowed &= (p - j) < window
    s = np.where(allowed[None], s, -np.inf)
    w = softmax(s)
    return np.einsum("hpj,jhd->phd", w, v).reshape(n, hq * d)


# ---- RoPE as transformers computes inv_freq ----

def rope_params(c):
    """(theta, scaling dict or None) from either config spelling: rope_theta and
    rope_scaling at the top level (transformers 4) or rope_parameters (5)."""
    rp = c.get("rope_parameters")
    if isinstance(rp, dict) and "rope_theta" in rp:
        theta = rp["rope_theta"]
        scaling = rp
    else:
        theta = c.get("rope_theta", 10000.0)
        scaling = c.get("rope_scaling")
    if scaling:
        kind = scaling.get("rope_type", scaling.get("type", "default"))
        if kind == "default":
            scaling = None
    return float(theta), scaling


def rope_inv_freq(c, dim, n, no_scaling):
    theta, s = rope_params(c)
    inv = 1.0 / theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    if s is None or no_scaling:
        return inv
    kind = s.get("rope_type", s.get("type"))
    factor = float(s["factor"])
    if kind == "linear":
        return inv / factor
    if kind == "llama3":
        old = float(s["original_max_position_embeddings"])
        lo, hi = float(s["low_freq_factor"]), float(s["high_freq_factor"])
        low_wavelen, high_wavelen = old / lo, old / hi
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        return np.where(medium, smoothed, scaled)
    if kind == "dynamic":  # NTK scaling, only once the sequence outgrows the context
        ctx = s.get("original_max_position_embeddings", c["max_position_embeddings"])
        if n <= ctx:
            return inv
        base = theta * ((factor * n / ctx) - (factor - 1)) ** (dim / (dim - 2))
        return 1.0 / base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    raise ValueError("rope scaling %s is not supported by this reference" % kind)


def apply_rope(x, inv_freq):
    """x [n][heads][d], rotate_half convention: pairs (i, i + d/2)."""
    n = x.shape[0]
    ang = np.arange(n, dtype=np.float64)[:, None] * inv_freq[None, :]
    emb = np.concatenate([ang, ang], axis=-1)
    cos, sin = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]
    half = x.shape[-1] // 2
    rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rot * sin


# ---- Llama, Mistral, Qwen2 ----

def layer_windows(c, arch, n_layers, no_window):
    """The sliding window of each layer (0: full attention)."""
    if no_window:
        return [0] * n_layers
    if arch == "MistralForCausalLM":
        return [c.get("sliding_window") or 0] * n_layers
    if arch == "Qwen2ForCausalLM":
        # Qwen2Config: sliding_window only with use_sliding_window, and then
        # (unless layer_types says otherwise) only for layers >= max_window_layers
        w = (c.get("sliding_window") or 0) if c.get("use_sliding_window", False) else 0
        types = c.get("layer_types")
        if not types:
            mwl = c.get("max_window_layers", 28)
            types = ["sliding_attention" if i >= mwl else "full_attention" for i in range(n_layers)]
        return [w if t == "sliding_attention" else 0 for t in types]
    return [0] * n_layers


def forward_llama(c, arch, t, ids, opt):
    H = c["hidden_size"]
    nh = c["num_attention_heads"]
    nkv = c.get("num_key_value_heads") or nh
    d = c.get("head_dim") or H // nh
    eps = c["rms_norm_eps"]
    L = c["num_hidden_layers"]
    act = activation(c.get("hidden_act", "silu"))
    n = len(ids)
    rot_dim = int(d * c.get("partial_rotary_factor", 1.0))
    if rot_dim != d:
        raise ValueError("partial rotary embeddings are not supported by this reference")
    inv_freq = rope_inv_freq(c, d, n, opt.no_rope_scaling)
    windows = layer_windows(c, arch, L, opt.no_window)

    def lin(name, x):
        y = x @ t[name + ".weight"].T  # [out][in], y = x W^T + b
        b = t.get(name + ".bias")
        if b is not None and not opt.no_bias:
            y = y + b
        return y

    x = t["model.embed_tokens.weight"][ids]
    for l in range(L):
        p = "model.layers.%d." % l
        h = rms_norm(x, t[p + "input_layernorm.weight"], eps)
        q = lin(p + "self_attn.q_proj", h).reshape(n, nh, d)
        k = lin(p + "self_attn.k_proj", h).reshape(n, nkv, d)
        v = lin(p + "self_attn.v_proj", h).reshape(n, nkv, d)
        q, k = apply_rope(q, inv_freq), apply_rope(k, inv_freq)
        a = attend(q, k, v, d ** -0.5, windows[l])
        x = x + lin(p + "self_attn.o_proj", a)
        h = rms_norm(x, t[p + "post_attention_layernorm.weight"], eps)
        x = x + lin(p + "mlp.down_proj", act(lin(p + "mlp.gate_proj", h)) * lin(p + "mlp.up_proj", h))
    x = rms_norm(x, t["model.norm.weight"], eps)
    head = t.get("lm_head.weight")
    if head is None or c.get("tie_word_embeddings", False):
        head = t["model.embed_tokens.weight"]
    return x @ head.T


# ---- GPT-2 ----

def forward_gpt2(c, t, ids, opt):
    H = c["n_embd"]
    nh = c["n_head"]
    d = H // nh
    eps = c.get("layer_norm_epsilon", 1e-5)
    L = c["n_layer"]
    act = activation(c.get("activation_function", "gelu_new"))
    n = len(ids)
    g = lambda name: t["transformer." + name] if "transformer." + name in t else t[name]

    def conv1d(name, x):  # Conv1D stores [in][out]: y = x W + b
        return x @ g(name + ".weight") + g(name + ".bias")

    if n > c.get("n_positions", 1024):
        raise ValueError("prompt longer than n_positions")
    x = g("wte.weight")[ids] + g("wpe.weight")[np.arange(n)]
    for l in range(L):
        p = "h.%d." % l
        h = layer_norm(x, g(p + "ln_1.weight"), g(p + "ln_1.bias"), eps)
        qkv = conv1d(p + "attn.c_attn", h)
        q, k, v = (qkv[:, i * H:(i + 1) * H].reshape(n, nh, d) for i in range(3))
        scale = d ** -0.5 if c.get("scale_attn_weights", True) else 1.0
        if c.get("scale_attn_by_inverse_layer_idx", False):
            scale /= l + 1
        x = x + conv1d(p + "attn.c_proj", attend(q, k, v, scale, 0))
        h = layer_norm(x, g(p + "ln_2.weight"), g(p + "ln_2.bias"), eps)
        x = x + conv1d(p + "mlp.c_proj", act(conv1d(p + "mlp.c_fc", h)))
    x = layer_norm(x, g("ln_f.weight"), g("ln_f.bias"), eps)
    head = t.get("lm_head.weight")
    if head is None or c.get("tie_word_embeddings", True):
        head = g("wte.weight")
    return x @ head.T


def run(argv, cache):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("hf_dir")
    p.add_argument("ids", help="comma-separated token ids, from position 0")
    p.add_argument("out", help="OUT.f32: float32 LE logits [n][vocab]")
    p.add_argument("--no-window", action="store_true", help="ignore sliding_window")
    p.add_argument("--no-bias", action="store_true", help="zero the biases of Llama-style models")
    p.add_argument("--no-rope-scaling", action="store_true", help="ignore rope scaling")
    opt = p.parse_args(argv)
    with open(os.path.join(opt.hf_dir, "config.json")) as f:
        c = json.load(f)
    arch = (c.get("architectures") or ["?"])[0]
    if arch not in SUPPORTED:
        sys.exit("ref_forward.py: architecture %s is not supported" % arch)
    ids = [int(s) for s in opt.ids.split(",") if s.strip()]
    if not ids:
        sys.exit("ref_forward.py: no ids")
    if opt.hf_dir not in cache:
        cache.clear()
        cache[opt.hf_dir] = read_checkpoint(opt.hf_dir)
    t = cache[opt.hf_dir]
    vocab = c["vocab_size"]
    if min(ids) < 0 or max(ids) >= vocab:
        sys.exit("ref_forward.py: an id is outside the vocabulary (%d)" % vocab)
    if arch == "GPT2LMHeadModel":
        logits = forward_gpt2(c, t, ids, opt)
    else:
        logits = forward_llama(c, arch, t, ids, opt)
    tmp = opt.out + ".part"  # complete or absent, never half written
    np.ascontiguousarray(logits, dtype="<f4").tofile(tmp)
    os.replace(tmp, opt.out)


def main(argv):
    cache = {}  # the last checkpoint read
    if argv == ["--batch"]:
        import shlex
        for line in sys.stdin:
            if line.strip() and not line.lstrip().startswith("#"):
                run(shlex.split(line), cache)
    else:
        run(argv, cache)


if __name__ == "__main__":
    main(sys.argv[1:])
