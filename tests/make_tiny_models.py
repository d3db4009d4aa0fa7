#!/usr/bin/env python3
"""make_tiny_models.py - makes the tiny Qwen3, Phi-3 and Gemma 2 checkpoints of
fixtures/models and their PyTorch reference outputs, in the layout of
tiny-llama and tiny-llama-ref (see fixtures/models/README.md).

Each model is built from its transformers class (eager attention), trained
briefly on calib.txt so that its logits are peaked (greedy decoding far from
ties), saved in bfloat16 with save_pretrained, then reloaded from disk in
float32 on the CPU to compute the references: the 8 prompts of
tiny-llama-ref/refs.json (last-position logits, 32 greedy ids with no EOS
stop), the logits of the first 64 tokens of eval-dev.txt, and the perplexity
of eval-dev.txt over consecutive 256-token windows. The tokenizer files are
tiny-llama's. Needs torch and transformers (the bundled files were made with
transformers 5.17, torch 2.11); a GPU makes the training quick. GPU training
is not bit-reproducible, so a rerun gives close but not identical weights.

  make_tiny_models.py OUT_DIR --corpus DIR [--arch qwen3,phi3,gemma2]
                      [--steps 600] [--seed 0] [--ppl-windows N]
      writes OUT_DIR/tiny-ARCH and OUT_DIR/tiny-ARCH-ref for each ARCH
  make_tiny_models.py --refs MODEL_DIR REF_DIR --corpus DIR [--ppl-windows N]
      only the references of an existing checkpoint (e.g. tiny-llama)

DIR holds calib.txt and eval-dev.txt. --seed is the first seed tried: a model
whose greedy decoding comes within 1e-4 of max |logit| of a tie is trained
again with the next seed (4 tries). --ppl-windows N scores only the first N
windows (quick trials; 0, the default, scores all of them).
"""
import argparse
import json
import math
import os
import shutil
import sys
import time

import torch
import torch.nn.functional as F
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma2Config, Phi3Config, Qwen3Config

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures", "models")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
COMMON = dict(vocab_size=4096, bos_token_id=1, eos_token_id=2, pad_token_id=None, max_position_embeddings=2048)

# Training: random 128-token windows of calib.txt, half of them starting with BOS as the prompts do.
SEQ, BATCH, LR, WARMUP = 128, 64, 3e-3, 50
N_GREEDY, N_LONG, PPL_WINDOW = 32, 64, 256
# A model is kept when every greedy step's top-1 logit beats the second by at
# least this much of max |logit| (a runtime's float32 error is ~1e-6 of it);
# otherwise it is trained again with the next seed.
MIN_MARGIN, TRIES = 1e-4, 4


def qwen3_config():
    # head_dim 64 with 4 heads: the attention width (256) differs from hidden (128)
    return Qwen3Config(hidden_size=128, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=64, rms_norm_eps=1e-6, attention_bias=False,
                       rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                       use_sliding_window=False, tie_word_embeddings=True, **COMMON)


def phi3_config():
    # longrope: every sequence of the references is shorter than
    # original_max_position_embeddings, so short_factor applies, with the
    # attention factor sqrt(1 + ln(2048/512) / ln(512)) on cos and sin
    short = [1.1, 1.3, 1.6, 1.9, 2.3, 2.7, 3.2, 3.7]
    long = [1.4, 1.7, 2.0, 2.4, 2.8, 3.2, 3.6, 4.0]
    rope = {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": short, "long_factor": long,
            "original_max_position_embeddings": 512, "partial_rotary_factor": 1.0}
    return Phi3Config(hidden_size=64, intermediate_size=192, num_hidden_layers=4, num_attention_heads=4,
                      num_key_value_heads=2, rms_norm_eps=1e-5, original_max_position_embeddings=512,
                      rope_parameters=rope, sliding_window=None, tie_word_embeddings=False, **COMMON)


def gemma2_config():
    # sliding_window 16: the 64-token sequence and the 256-token windows go past it
    return Gemma2Config(hidden_size=128, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                        num_key_value_heads=2, head_dim=32, hidden_activation="gelu_pytorch_tanh",
                        rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                        query_pre_attn_scalar=16, sliding_window=16,
                        layer_types=["sliding_attention", "full_attention"] * 2,
                        attn_logit_softcapping=20.0, final_logit_softcapping=15.0,
                        tie_word_embeddings=True, **COMMON)


CONFIGS = {"qwen3": qwen3_config, "phi3": phi3_config, "gemma2": gemma2_config}


def log(*a):
    print(*a, flush=True)


def read(corpus, name):
    with open(os.path.join(corpus, name), encoding="utf-8") as f:
        return f.read()


def train(model, ids, steps, seed, device):
    g = torch.Generator().manual_seed(seed)
    data = torch.tensor(ids)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.1)
    lr_at = lambda s: LR * min(1.0, (s + 1) / WARMUP) * (0.1 + 0.45 * (1 + math.cos(math.pi * s / steps)))
    model.train()
    for step in range(steps):
        starts = torch.randint(0, len(data) - SEQ, (BATCH,), generator=g)
        x = torch.stack([data[s:s + SEQ] for s in starts.tolist()])
        x[:BATCH // 2, 0] = model.config.bos_token_id
        x = x.to(device)
        logits = model(input_ids=x, use_cache=False).logits
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), x[:, 1:].reshape(-1))
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            log("  step %4d  loss %.3f" % (step, loss.item()))
    model.eval()


def make_model(arch, out, corpus, steps, seed):
    """Trains tiny-ARCH and saves it (bf16) with tiny-llama's tokenizer files."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(CONFIGS[arch](), attn_implementation="eager").to(device)
    assert model.config._attn_implementation == "eager"
    tok = AutoTokenizer.from_pretrained(os.path.join(FIXTURES, "tiny-llama"))
    ids = tok(read(corpus, "calib.txt"), add_special_tokens=False).input_ids
    n = sum(p.numel() for p in model.parameters())
    log("%s: %s, %d parameters, %d calib tokens, %d steps on %s" %
        (arch, type(model).__name__, n, len(ids), steps, device))
    t0 = time.time()
    train(model, ids, steps, seed, device)
    log("  trained in %.1f s" % (time.time() - t0))
    d = os.path.join(out, "tiny-" + arch)
    shutil.rmtree(d, ignore_errors=True)
    model.to(torch.bfloat16).save_pretrained(d)
    for name in TOKENIZER_FILES:
        shutil.copyfile(os.path.join(FIXTURES, "tiny-llama", name), os.path.join(d, name))
    for name in os.listdir(d):
        os.chmod(os.path.join(d, name), 0o644)  # save_pretrained makes the weights private
    return d


def all_logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()


def greedy(model, ids, margins):
    """N_GREEDY argmax ids, each from a full forward pass; records top-1 minus top-2 over max |logit|."""
    ids, out = list(ids), []
    for _ in range(N_GREEDY):
        row = all_logits(model, ids)[-1]
        top = torch.topk(row, 2).values
        margins.append(((top[0] - top[1]) / row.abs().max()).item())
        out.append(int(row.argmax()))
        ids.append(out[-1])
    return out


def perplexity(model, ids, max_windows):
    n = len(ids) // PPL_WINDOW
    if max_windows:
        n = min(n, max_windows)
    w = torch.tensor(ids[:n * PPL_WINDOW]).view(n, PPL_WINDOW)
    nll = 0.0
    with torch.no_grad():
        for b in range(0, n, 64):
            x = w[b:b + 64]
            logits = model(input_ids=x, use_cache=False).logits.float()
            nll += F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1),
                                   reduction="sum").double().item()
    scored = n * (PPL_WINDOW - 1)
    return math.exp(nll / scored), scored


def disk_dtype(model_dir):
    from safetensors import safe_open
    name = sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors"))[0]
    with safe_open(os.path.join(model_dir, name), "pt") as f:
        return str(f.get_tensor(next(iter(f.keys()))).dtype)


def load(model_dir):
    """The checkpoint as saved, in float32 on the CPU."""
    torch.set_num_threads(os.cpu_count() or 1)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    return model.eval(), AutoTokenizer.from_pretrained(model_dir)


def prompt_refs(model, tok):
    """The refs of the 8 prompts of tiny-llama-ref, and the greedy margins."""
    with open(os.path.join(FIXTURES, "tiny-llama-ref", "refs.json")) as f:
        texts = [p["prompt"] for p in json.load(f)["prompts"]]
    margins, prompts = [], []
    for text in texts:
        ids = tok(text).input_ids
        last = all_logits(model, ids)[-1]
        gids = greedy(model, ids, margins)
        prompts.append({"prompt": text, "ids": ids, "last_logits": [round(float(x), 5) for x in last],
                        "greedy_ids": gids, "greedy_text": tok.decode(gids)})
    return prompts, margins


def write_refs(model_dir, ref_dir, corpus, max_windows):
    """refs.json and logits-long.f32, computed in float32 on the CPU from the files on disk."""
    model, tok = load(model_dir)
    prompts, margins = prompt_refs(model, tok)
    eval_ids = tok(read(corpus, "eval-dev.txt"), add_special_tokens=False).input_ids
    long_ids = eval_ids[:N_LONG]
    long_logits = all_logits(model, long_ids)
    ppl, scored = perplexity(model, eval_ids, max_windows)
    os.makedirs(ref_dir, exist_ok=True)
    long_logits.numpy().astype("<f4").tofile(os.path.join(ref_dir, "logits-long.f32"))
    refs = {
        "model": os.path.basename(os.path.normpath(model_dir)),
        "architecture": model.config.architectures[0],
        "dtype_on_disk": disk_dtype(model_dir),
        "transformers": transformers.__version__,
        "prompts": prompts,
        "long": {"ids": long_ids, "logits_file": "logits-long.f32", "shape": list(long_logits.shape),
                 "layout": "row-major float32 little-endian [position][vocab]",
                 "note": "logits of the first 64 positions of eval-dev.txt, tokenized without special tokens, "
                         "run as one sequence from position 0"},
        "perplexity": {"definition": "text tokenized whole without special tokens, cut into consecutive "
                                     "non-overlapping windows of 256 tokens (a short tail is dropped), each window "
                                     "run alone from position 0, every token but the window's first scored",
                       "eval-dev": {"ppl": ppl, "scored_tokens": scored}},
    }
    with open(os.path.join(ref_dir, "refs.json"), "w") as f:
        json.dump(refs, f)
    log("%s: ppl %.3f (%d scored), greedy margin min %.3g median %.3g of max |logit|" %
        (refs["model"], ppl, scored, min(margins), sorted(margins)[len(margins) // 2]))
    for p in prompts:
        log("  %r -> %r" % (p["prompt"], p["greedy_text"]))


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", nargs="?", help="directory for tiny-ARCH and tiny-ARCH-ref")
    p.add_argument("--corpus", required=True, help="directory with calib.txt and eval-dev.txt")
    p.add_argument("--arch", default="qwen3,phi3,gemma2")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ppl-windows", type=int, default=0)
    p.add_argument("--refs", nargs=2, metavar=("MODEL_DIR", "REF_DIR"))
    a = p.parse_args(argv)
    if a.refs:
        write_refs(a.refs[0], a.refs[1], a.corpus, a.ppl_windows)
        return
    if not a.out:
        p.error("OUT_DIR is needed")
    archs = a.arch.split(",")
    for arch in archs:
        if arch not in CONFIGS:
            p.error("--arch: %s is not one of %s" % (arch, ",".join(CONFIGS)))
    for arch in archs:
        for seed in range(a.seed, a.seed + TRIES):
            d = make_model(arch, a.out, a.corpus, a.steps, seed)
            margin = min(prompt_refs(*load(d))[1])
            log("  seed %d: smallest greedy margin %.3g of max |logit|" % (seed, margin))
            if margin >= MIN_MARGIN:
                break
        else:
            sys.exit("%s: no seed of %d..%d gives greedy margins >= %g" % (arch, a.seed, seed, MIN_MARGIN))
        write_refs(d, d + "-ref", a.corpus, a.ppl_windows)


if __name__ == "__main__":
    main(sys.argv[1:])
