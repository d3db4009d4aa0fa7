#!/usr/bin/python3
"""Decodes every tensor of an .nsq file to f32 with numpy, from the spec alone
(sections 8 and 9), as a reference that shares no code with libnsq. LATTICE
tensors decode to the original basis W, as libnsq's nsq_dequantize_rows does,
with the stages of their refinement parts after the payload's (section 8.4).

    decode_ref.py FILE.nsq INSPECT.json OUTDIR

INSPECT.json is `nsq-inspect --json --blocks --tensors FILE` (it locates the
blocks and tensors; the bytes are read here). Tensor i, decoded with all its
refinement levels, goes to OUTDIR/i.f32 as little-endian f32; the tensor
names are printed in that order, one a line."""
import itertools
import json
import subprocess
import sys

import numpy as np

F32 = np.float32


def pad64(n):
    return (n + 63) // 64 * 64


def load_range(data, r):
    """The raw bytes of a block or refinement range (section 8.1)."""
    stored = data[r["offset"]:r["offset"] + r["stored_size"]]
    if r["compression"] == "zstd":
        stored = subprocess.run(["zstd", "-dcq"], input=stored, capture_output=True, check=True).stdout
    assert len(stored) == r["raw_size"]
    return stored


def codes(buf, n, g, b):
    """n code records of g codes of b bits, as bit planes (section 9.4)."""
    rec = np.frombuffer(buf, np.uint8, n * g * b // 8).reshape(n, g * b // 8)
    return np.concatenate([(rec >> (b * p)) & ((1 << b) - 1) for p in range(8 // b)], axis=1).astype(F32)


def tiered(p, rows, cols, g, parts):
    """A TIERED payload (section 9.3), refinement parts applied in order (9.6)."""
    ng = rows * cols // g
    tmap = np.frombuffer(p, np.uint8, (ng + 3) // 4)
    tier = ((tmap[:, None] >> (2 * np.arange(4))) & 3).reshape(-1)[:ng]
    out = np.empty((ng, g), F32)
    pos = pad64((ng + 3) // 4)
    n0 = int((tier == 0).sum())
    out[tier == 0] = np.frombuffer(p, "<f2", n0 * g, pos).reshape(n0, g).astype(F32)
    pos += pad64(n0 * 2 * g)
    step = np.zeros(ng, F32)
    for t, b in ((1, 8), (2, 4), (3, 2)):
        n = int((tier == t).sum())
        q = codes(p[pos:], n, g, b)
        pos += pad64(n * g * b // 8)
        dm = np.frombuffer(p, "<f2", 2 * n, pos).reshape(n, 2).astype(F32)
        pos += pad64(4 * n)
        out[tier == t] = dm[:, :1] * q + dm[:, 1:]  # fl(fl(d*q) + m): numpy never fuses
        step[tier == t] = dm[:, 0]
    quant = tier != 0  # refinement codes follow the quantized rank
    v, s = out[quant], step[quant][:, None]
    for r, part in parts:
        bits = r["bits"]
        c = (F32(2) * codes(part, len(v), g, bits) + F32(1)) / F32(2 ** (bits + 1)) - F32(0.5)
        v = v + s * c
        s = s / F32(2 ** bits)
    out[quant] = v
    return out


def e8_values():
    """The 8 values of each of the 65536 E8 codes (section 9.11), exact in f32."""
    table = np.array(sorted((u for u in itertools.product((1, 3, 5, 7), repeat=8)
                             if sum(x * x for x in u) <= 40 or sorted(u) == [1] * 6 + [5, 5] or u == (3,) * 8),
                            key=lambda u: (sum(x * x for x in u), u)))
    c = np.arange(65536)
    u = table[c & 0xFF]
    neg = (c[:, None] >> (8 + np.arange(7))) & 1
    p = (u.sum(axis=1) // 2) % 2
    neg = np.concatenate([neg, (neg.sum(axis=1) % 2 != p)[:, None]], axis=1)
    shift = np.where(c & 0x8000, -0.25, 0.25)[:, None]
    return (np.where(neg, -u, u) / 2 + shift).astype(F32)


def e8s_values():
    """The 8 values of each of the 256 E8S codes (section 9.11), exact in f32."""
    c = np.arange(256)
    v = np.zeros((256, 8))
    pairs = [(i, j) for i in range(8) for j in range(i + 1, 8)]  # (0,1), (0,2), ..., (6,7)
    for k in range(112):  # +-1 at the pair of index k // 4
        i, j = pairs[k // 4]
        v[k, i], v[k, j] = (-1 if k & 1 else 1), (-1 if k & 2 else 1)
    m = c[112:240] - 112  # +-1/2 everywhere, coordinate 7 negative when bits 0..6 hold an odd count
    neg = (m[:, None] >> np.arange(7)) & 1
    neg = np.concatenate([neg, (neg.sum(axis=1) % 2)[:, None]], axis=1)
    v[112:240] = np.where(neg, -0.5, 0.5)
    v[c[240:], (c[240:] - 240) // 2] = np.where(c[240:] & 1, -2, 2)  # +-2 at one coordinate
    return v.astype(F32)


LATTICE_KINDS = {"e8": 1, "sign": 2, "int8": 3, "e8s": 4}
LATTICE_BITS = {1: 2, 2: 1, 3: 8, 4: 1}


def lattice_stages(buf, pos, kinds, rows, cols, b):
    """(kind, scales, codes) of stages of these kinds laid out from buf[pos], each
    its scales then its codes, padded to 64 (section 9.10)."""
    nb, out = cols // b, []
    for k in kinds:
        d = np.frombuffer(buf, "<f2", rows * nb, pos).astype(F32).reshape(rows, nb)
        pos += pad64(2 * rows * nb)
        nbytes = rows * cols * LATTICE_BITS[k] // 8
        out.append((k, d, buf[pos:pos + nbytes]))
        pos += pad64(nbytes)
    return out


def lattice(p, rows, cols, b, parts):
    """A LATTICE payload (section 9.10) with the stages of its refinement parts after
    its own, in level order (section 8.4): W' summed stage by stage, then W = W' R (9.12)."""
    kinds, nb = list(p[1:1 + p[0]]), cols // b
    signs = np.unpackbits(np.frombuffer(p, np.uint8, cols // 8, 64), bitorder="little").astype(bool)
    stages = lattice_stages(p, 64 + pad64(cols // 8), kinds, rows, cols, b)
    for r, part in parts:
        stages += lattice_stages(part, 0, [LATTICE_KINDS[k] for k in r["stages"]], rows, cols, b)
    acc = None
    for k, d, c in stages:
        if k == 1:
            v = e8_values()[np.frombuffer(c, "<u2", rows * cols // 8)].reshape(rows, cols)
        elif k == 2:
            bits = np.unpackbits(np.frombuffer(c, np.uint8), bitorder="little")
            v = np.where(bits, F32(-1), F32(1)).reshape(rows, cols)
        elif k == 4:
            v = e8s_values()[np.frombuffer(c, np.uint8, rows * cols // 8)].reshape(rows, cols)
        else:
            v = np.frombuffer(c, np.int8).astype(F32).reshape(rows, cols)
        prod = np.repeat(d, b, axis=1) * v
        acc = prod if acc is None else acc + prod  # in stage order, each sum rounded to f32
    u, h = acc.reshape(rows, nb, b).copy(), 1
    while h < b:  # pairs (i, i + h) with i & h == 0, passes in increasing h
        v = u.reshape(rows, nb, b // (2 * h), 2, h)
        lo, hi = v[:, :, :, 0, :].copy(), v[:, :, :, 1, :].copy()
        v[:, :, :, 0, :], v[:, :, :, 1, :] = lo + hi, lo - hi
        h *= 2
    k = b.bit_length() - 1
    c = F32(np.ldexp(float.fromhex("0x1.6a09e6p-1") if k % 2 else 1.0, -(k // 2)))
    w = u.reshape(rows, cols) * c
    return np.where(signs, -w, w)


def refinement_parts(tensors, block, ranges):
    """Each tensor's part in each level of its block, packed as R-TEN-10 says."""
    parts = {}
    for level, raw in enumerate(ranges, 1):
        pos = 0
        for i, t in enumerate(tensors):
            if t["block"] != block or len(t.get("refinements", [])) < level:
                continue
            r = t["refinements"][level - 1]  # TIERED: its bits; LATTICE: the stages it adds
            off = pad64(pos)
            parts.setdefault(i, []).append((r, raw[off:off + r["size"]]))
            pos = off + r["size"]
    return parts


def main(path, inspect, outdir):
    data = open(path, "rb").read()
    d = json.load(open(inspect))
    tensors = d["tensors"]
    for blk in d["blocks"]:
        raw = load_range(data, blk)
        parts = refinement_parts(tensors, blk["index"], [load_range(data, r) for r in blk["refinements"]])
        for i, t in enumerate(tensors):
            if t["block"] != blk["index"]:
                continue
            p = raw[t["offset"]:t["offset"] + t["size"]]
            n = int(np.prod(t["shape"]))
            if t["scheme"] == "tiered":
                w = tiered(p, t["shape"][0], t["shape"][1], t["group_size"], parts.get(i, []))
            elif t["scheme"] == "lattice":
                w = lattice(p, t["shape"][0], t["shape"][1], t["group_size"], parts.get(i, []))
            elif t["scheme"] == "bf16":
                w = (np.frombuffer(p, "<u2", n).astype(np.uint32) << 16).view(F32)
            else:
                w = np.frombuffer(p, {"f32": "<f4", "f16": "<f2"}[t["scheme"]], n).astype(F32)
            w.astype("<f4").tofile(f"{outdir}/{i}.f32")
    for t in tensors:
        print(t["name"])


if __name__ == "__main__":
    main(*sys.argv[1:])
