#!/usr/bin/python3
"""ref_forward.py - an independent numpy reference of the forward pass, for
checking nsq-run: reads a Hugging Face checkpoint directory (config.json and
*.safetensors) and writes the logits of every position of a prompt that starts
at position 0, computed in float64 with the semantics of transformers'
LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM,
Phi3ForCausalLM, Gemma2ForCausalLM and GPT2LMHeadModel. Written from the model
definitions, sharing no code with the runtime.
Sliding windows: Mistral's and Phi-3's apply to every layer; Qwen2's and
Qwen3's only with use_sliding_window, to the layers from max_window_layers on
(or as layer_types says); Gemma 2's to the layers layer_types names
sliding_attention (by default the even ones). A query at position p sees the
keys j <= p with p - j < window.

  ref_forward.py HF_DIR IDS_CSV OUT.f32 [--no-window] [--no-bias] [--no-rope-scaling]
                 [--no-qk-norm] [--no-softcap]
  ref_forward.py --batch   reads one "HF_DIR IDS_CSV OUT.f32 [OPTIONS...]" line per
                           run from stdin (numpy is imported once)

OUT.f32: little-endian float32 [n_ids][vocab].

The options switch one feature off, to show that a test notices it missing:
  --no-window        attend to every earlier position (ignore sliding_window)
  --no-bias          treat the q/k/v/o and MLP biases of Llama-style models as 0
  --no-rope-scaling  plain RoPE frequencies (and no LongRoPE attention factor),
                     whatever rope_scaling says
  --no-qk-norm       skip Qwen3's per-head q_norm and k_norm
  --no-softcap       skip Gemma 2's attention and final logit softcapping
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np

SUPPORTED = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
             "Phi3ForCausalLM", "Gemma2ForCausalLM", "GPT2LMHeadModel")


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


def softcap(x, cap):
    return cap * np.tanh(x / cap) if cap else x


def attend(q, k, v, scale, window, cap=None):
    """q [n][Hq][d], k/v [n][Hkv][d]; causal, and with a window W a query at
    position p sees keys j with p - j < W. With cap (Gemma 2), the scaled
    scores are softcapped before the mask. Returns [n][Hq*d]."""
    n, hq, d = q.shape
    group = hq // k.shape[1]
    k = np.repeat(k, group, axis=1)  # kv head h // group serves query head h
    v = np.repeat(v, group, axis=1)
    s = softcap(np.einsum("phd,jhd->hpj", q, k) * scale, cap)
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


def rotary_dim(c, d):
    rp = c.get("rope_parameters") if isinstance(c.get("rope_parameters"), dict) else {}
    factor = c.get("partial_rotary_factor", rp.get("partial_rotary_factor", 1.0))
    return int(d * factor)


def longrope(c, s, theta, dim, n):
    """Phi-3's LongRoPE as transformers 5 computes it: the pretraining context
    is the top-level original_max_position_embeddings (else the scaling dict's,
    else max_position_embeddings); factor, unless given, is
    max_position_embeddings over it; the attention factor, unless given,
    sqrt(1 + ln(factor) / ln(context)) when factor > 1, multiplies cos and sin,
    so both q and k. short_factor applies while the sequence fits the context.
    Past it transformers runs the whole pass with long_factor, every position
    recomputed (keys cached before the switch keep short_factor); this
    reference, one pass from position 0, uses long_factor when n > context."""
    ctx = c.get("original_max_position_embeddings") or s.get("original_max_position_embeddings") \
        or c["max_position_embeddings"]
    factor = s.get("factor") or c["max_position_embeddings"] / ctx
    att = s.get("attention_factor")
    if att is None:
        att = math.sqrt(1 + math.log(factor) / math.log(ctx)) if factor > 1 else 1.0
    ext = np.array(s["long_factor"] if n > ctx else s["short_factor"], dtype=np.float64)
    if ext.shape != (dim // 2,):
        raise ValueError("longrope factors: %d values, head_dim %d needs %d" % (ext.size, dim, dim // 2))
    return 1.0 / (ext * theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)), att


def rope_inv_freq(c, dim, n, no_scaling):
    """(inv_freq, attention factor on cos and sin)."""
    theta, s = rope_params(c)
    inv = 1.0 / theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    if s is None or no_scaling:
        return inv, 1.0
    kind = s.get("rope_type", s.get("type"))
    if kind in ("su", "yarn") and c.get("model_type") == "phi3":
        kind = "longrope"  # Phi3Config reads the old names as longrope
    if kind == "longrope":
        return longrope(c, s, theta, dim, n)
    factor = float(s["factor"])
    if kind == "linear":
        return inv / factor, 1.0
    if kind == "llama3":
        old = float(s["original_max_position_embeddings"])
        lo, hi = float(s["low_freq_factor"]), float(s["high_freq_factor"])
        low_wavelen, high_wavelen = old / lo, old / hi
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        return np.where(medium, smoothed, scaled), 1.0
    if kind == "dynamic":  # NTK scaling, only once the sequence outgrows the context
        ctx = s.get("original_max_position_embeddings", c["max_position_embeddings"])
        if n <= ctx:
            return inv, 1.0
        base = theta * ((factor * n / ctx) - (factor - 1)) ** (dim / (dim - 2))
        return 1.0 / base ** (np.arange(0, dim, 2, dtype=np.float64) / dim), 1.0
    raise ValueError("rope scaling %s is not supported by this reference" % kind)


def apply_rope(x, inv_freq, scale):
    """x [n][heads][d], rotate_half convention: pairs (i, i + d/2)."""
    n = x.shape[0]
    ang = np.arange(n, dtype=np.float64)[:, None] * inv_freq[None, :]
    emb = np.concatenate([ang, ang], axis=-1)
    cos, sin = scale * np.cos(emb)[:, None, :], scale * np.sin(emb)[:, None, :]
    half = x.shape[-1] // 2
    rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rot * sin


# ---- Llama, Mistral, Qwen2, Qwen3, Phi-3, Gemma 2 ----

def layer_windows(c, arch, n_layers, no_window):
    """The sliding window of each layer (0: full attention)."""
    if no_window:
        return [0] * n_layers
    w = c.get("sliding_window") or 0
    if arch in ("MistralForCausalLM", "Phi3ForCausalLM"):
        return [w] * n_layers
    types = c.get("layer_types")
    if arch in ("Qwen2ForCausalLM", "Qwen3ForCausalLM"):
        # sliding_window only with use_sliding_window, and then (unless
        # layer_types says otherwise) only for layers >= max_window_layers
        if not c.get("use_sliding_window", False):
            w = 0
        if not types:
            mwl = c.get("max_window_layers", 28)
            types = ["sliding_attention" if i >= mwl else "full_attention" for i in range(n_layers)]
    elif arch == "Gemma2ForCausalLM":
        w = c.get("sliding_window", 4096) or 0  # absent: Gemma2Config's default
        if not types:
            types = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)]
    else:
        return [0] * n_layers
    return [w if t == "sliding_attention" else 0 for t in types]


class Shape:
    """The attention geometry of a config."""

    def __init__(self, c):
        self.heads = c["num_attention_heads"]
        self.kv_heads = c.get("num_key_value_heads") or self.heads
        self.head_dim = c.get("head_dim") or c["hidden_size"] // self.heads


def linear(t, name, x, opt):
    y = x @ t[name + ".weight"].T  # [out][in], y = x W^T + b
    b = t.get(name + ".bias")
    if b is not None and not opt.no_bias:
        y = y + b
    return y


def qkv(t, p, h, g, opt):
    """q [n][heads][d], k and v [n][kv_heads][d]: from separate projections, or
    from Phi-3's fused qkv_proj, whose output rows are q, then k, then v."""
    n, d = h.shape[0], g.head_dim
    if p + "qkv_proj.weight" in t:
        q, k, v = np.split(linear(t, p + "qkv_proj", h, opt), [g.heads * d, (g.heads + g.kv_heads) * d], axis=-1)
    else:
        q, k, v = (linear(t, p + name, h, opt) for name in ("q_proj", "k_proj", "v_proj"))
    return q.reshape(n, g.heads, d), k.reshape(n, g.kv_heads, d), v.reshape(n, g.kv_heads, d)


def gated_mlp(t, p, h, act, opt):
    """down(act(gate(h)) * up(h)); Phi-3 fuses gate and up, gate rows first."""
    if p + "gate_up_proj.weight" in t:
        gate, up = np.split(linear(t, p + "gate_up_proj", h, opt), 2, axis=-1)
    else:
        gate, up = linear(t, p + "gate_proj", h, opt), linear(t, p + "up_proj", h, opt)
    return linear(t, p + "down_proj", act(gate) * up, opt)


def self_attention(t, p, h, g, rope, window, opt, scale=None, cap=None, qk_eps=None):
    """One layer's attention output (after o_proj). qk_eps: Qwen3's per-head
    RMSNorm of q and k (q_norm, k_norm) before RoPE."""
    q, k, v = qkv(t, p, h, g, opt)
    if qk_eps is not None and not opt.no_qk_norm:
        q = rms_norm(q, t[p + "q_norm.weight"], qk_eps)
        k = rms_norm(k, t[p + "k_norm.weight"], qk_eps)
    q, k = apply_rope(q, *rope), apply_rope(k, *rope)
    a = attend(q, k, v, g.head_dim ** -0.5 if scale is None else scale, window, cap)
    return linear(t, p + "o_proj", a, opt)


def output_head(c, t, x, tied_default):
    head = t.get("lm_head.weight")
    if head is None or c.get("tie_word_embeddings", tied_default):
        head = t["model.embed_tokens.weight"]
    return x @ head.T


def forward_llama(c, arch, t, ids, opt):
    g = Shape(c)
    eps = c["rms_norm_eps"]
    L = c["num_hidden_layers"]
    act = activation(c.get("hidden_act", "silu"))
    if rotary_dim(c, g.head_dim) != g.head_dim:
        raise ValueError("partial rotary embeddings are not supported by this reference")
    rope = rope_inv_freq(c, g.head_dim, len(ids), opt.no_rope_scaling)
    windows = layer_windows(c, arch, L, opt.no_window)
    qk_eps = eps if arch == "Qwen3ForCausalLM" else None

    x = t["model.embed_tokens.weight"][ids]
    for l in range(L):
        p = "model.layers.%d." % l
        h = rms_norm(x, t[p + "input_layernorm.weight"], eps)
        x = x + self_attention(t, p + "self_attn.", h, g, rope, windows[l], opt, qk_eps=qk_eps)
        h = rms_norm(x, t[p + "post_attention_layernorm.weight"], eps)
        x = x + gated_mlp(t, p + "mlp.", h, act, opt)
    return output_head(c, t, rms_norm(x, t["model.norm.weight"], eps), False)


def forward_gemma2(c, t, ids, opt):
    """Gemma 2: embeddings times sqrt(hidden), RMSNorm scaling by (1 + w),
    norms before and after both attention and MLP, scores scaled by
    query_pre_attn_scalar^-0.5 and softcapped, final logits softcapped."""
    g = Shape(c)
    eps = c.get("rms_norm_eps", 1e-6)
    L = c["num_hidden_layers"]
    act = activation(c.get("hidden_activation") or c.get("hidden_act") or "gelu_pytorch_tanh")
    rope = rope_inv_freq(c, g.head_dim, len(ids), opt.no_rope_scaling)
    windows = layer_windows(c, "Gemma2ForCausalLM", L, opt.no_window)
    scale = c.get("query_pre_attn_scalar", 256) ** -0.5
    cap = None if opt.no_softcap else c.get("attn_logit_softcapping", 50.0)
    norm = lambda name, x: rms_norm(x, 1.0 + t[name + ".weight"], eps)

    x = t["model.embed_tokens.weight"][ids] * math.sqrt(c["hidden_size"])
    for l in range(L):
        p = "model.layers.%d." % l
        a = self_attention(t, p + "self_attn.", norm(p + "input_layernorm", x), g, rope, windows[l], opt, scale, cap)
        x = x + norm(p + "post_attention_layernorm", a)
        m = gated_mlp(t, p + "mlp.", norm(p + "pre_feedforward_layernorm", x), act, opt)
        x = x + norm(p + "post_feedforward_layernorm", m)
    logits = output_head(c, t, norm("model.norm", x), True)
    return logits if opt.no_softcap else softcap(logits, c.get("final_logit_softcapping", 30.0))


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
    p.add_argument("--no-qk-norm", action="store_true", help="skip Qwen3's q_norm and k_norm")
    p.add_argument("--no-softcap", action="store_true", help="skip Gemma 2's softcapping")
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
    elif arch == "Gemma2ForCausalLM":
        logits = forward_gemma2(c, t, ids, opt)
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
