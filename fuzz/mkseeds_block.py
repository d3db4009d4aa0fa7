#!/usr/bin/env python3
"""Writes the hand-made seed inputs of fuzz_block into fuzz/corpus/fuzz_block/.

The byte layout is the one documented at the top of fuzz/fuzz_block.c. Seeds
are small (a few hundred bytes) and deterministic:
    python3 fuzz/mkseeds_block.py [OUT_DIR]
"""
import os
import random
import struct
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "fuzz_block")
SCHEME = {"f32": 0, "f16": 1, "bf16": 2, "tiered": 3}
TIER_BITS = [16, 8, 4, 2]
BITS_CODE = {1: 0, 2: 1, 4: 2, 8: 3}
rng = random.Random(1234)


def header(scheme, g=32, nref=0, rows=2, cols_sel=0, rbits=(2, 2, 2), raw=False, plain_g=False, weighted=False,
           corruption=0, r0=0, r1=1, pos=0):
    h0 = SCHEME[scheme] | raw << 3 | plain_g << 4 | weighted << 5 | corruption << 6
    h1 = {32: 0, 64: 1, 128: 2, 256: 3}[g] | nref << 2
    h4 = sum(BITS_CODE[b] << (2 * i) for i, b in enumerate(rbits))
    return bytes([h0, h1, rows, cols_sel, h4, r0, r1, pos])


def f16(x):
    return struct.pack("<e", x)


def tiered_body(ng, g, tiers, d=0.01, m=-0.5, noisy=False):
    """Tier map, then per tier its codes and (d, m) pairs, as build_tiered reads them."""
    mapb = (ng + 3) // 4
    tmap = bytearray(mapb)
    for i, t in enumerate(tiers):
        tmap[i // 4] |= t << (2 * (i % 4))
    out = bytearray(tmap)
    n = [tiers.count(t) for t in range(4)]
    for t in range(4):
        cb = n[t] * g * TIER_BITS[t] // 8
        if t == 0:  # f16 values in a modest range
            for _ in range(cb // 2):
                out += f16(rng.uniform(-4, 4))
        else:
            out += bytes(rng.randrange(256) for _ in range(cb))
            for _ in range(n[t]):
                dd = d * rng.uniform(0.5, 2) if noisy else d
                out += f16(dd) + f16(m)
    return bytes(out)


def tail(nbytes=64):
    return bytes(rng.randrange(256) for _ in range(nbytes))


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def main():
    os.makedirs(OUT, exist_ok=True)
    # plain schemes, shapes that the quantizer can take (cols = 32 or 64)
    for s, esize in (("f32", 4), ("f16", 2), ("bf16", 2)):
        rows, cols = 2, 32
        vals = [rng.uniform(-2, 2) for _ in range(rows * cols)]
        fmt = {"f32": "<f", "f16": "<e"}.get(s)
        if fmt:
            payload = b"".join(struct.pack(fmt, v) for v in vals)
        else:
            payload = b"".join(struct.pack("<f", v)[2:] for v in vals)
        assert len(payload) == rows * cols * esize
        write(f"{s}-2x32", header(s, rows=rows, cols_sel=cols) + payload + bytes(5) + bytes([1, 2]) + tail(8))
    write("f32-raw-3x5", header("f32", rows=3, cols_sel=5, raw=True) + tail(60))
    write("f16-groupsize", header("f16", rows=1, cols_sel=7, plain_g=True) + tail(14))
    write("f16-specials", header("f16", rows=1, cols_sel=8) + bytes.fromhex("007c00fc017e0080ff0301000004ff7b"))

    # TIERED: each group size, a mix of tiers, with 0..3 refinement levels
    for g, nref, rbits, kcols in ((32, 0, (2, 2, 2), 0), (64, 1, (1, 2, 4), 1), (128, 2, (2, 8, 1), 0),
                                  (256, 3, (4, 2, 1), 0), (32, 2, (8, 4, 2), 3)):
        rows = 2
        cols = g * (1 + kcols)
        ng = rows * cols // g
        tiers = [rng.randrange(4) for _ in range(ng)]
        if all(t == 0 for t in tiers):
            tiers[0] = 2
        body = tiered_body(ng, g, tiers, noisy=True)
        nq = sum(1 for t in tiers if t)
        refs = b""
        for l in range(nref):
            refs += tail(nq * g * rbits[l] // 8) + bytes([0])
        data = header("tiered", g=g, nref=nref, rows=rows, cols_sel=kcols, rbits=rbits) + body + bytes(5) + refs
        write(f"tiered-g{g}-r{nref}", data + bytes([0, 1]) + tail(8))
    # all four tiers, one row each, weighted re-quantization
    tiers = [0, 1, 2, 3]
    write("tiered-weighted", header("tiered", rows=4, cols_sel=0, weighted=True) + tiered_body(4, 32, tiers) +
          bytes(5) + tail(40))
    # single tiers
    for t in range(4):
        write(f"tiered-only-t{t}", header("tiered", rows=3, nref=1 if t else 0, rbits=(2, 1, 1)) +
              tiered_body(3, 32, [t] * 3) + bytes(5) + (tail(3 * 32 * 2 // 8) + bytes([0]) if t else b""))
    # large magnitudes (re-quantization may legitimately refuse) and a non-finite scale
    write("tiered-big-scale", header("tiered", rows=1) + tiered_body(1, 32, [1], d=200.0, m=-30000.0) + bytes(5))
    write("tiered-inf-scale", header("tiered", rows=1) + tiered_body(1, 32, [2], d=float("inf")) + bytes(5))
    # corrupted payloads: padding byte set, one byte short, one byte long
    for c in (1, 2, 3):
        write(f"tiered-corrupt{c}", header("tiered", rows=2, corruption=c, pos=3) + tiered_body(2, 32, [2, 3]) +
              bytes([0x40]))
    # a corrupted refinement level
    write("tiered-ref-corrupt", header("tiered", rows=1, nref=1, rbits=(2, 2, 2)) + tiered_body(1, 32, [2]) +
          bytes(5) + tail(8) + bytes([0xF1, 0, 0]))
    # raw TIERED payload: one Q4 group, valid layout built by hand
    raw = bytearray(64)  # tier map: one group of tier 2 -> 0b10
    raw[0] = 2
    raw += tail(16) + bytes(48)  # 32 x 4-bit codes, padded to 64
    raw += f16(0.1) + f16(-1.0) + bytes(60)  # (d, m), padded to 64
    write("tiered-raw-q4", header("tiered", rows=1, raw=True) + bytes(raw))
    # empty matrix (rows = 0) and unbounded shapes
    write("tiered-rows0", header("tiered", rows=0))
    write("f32-rows0", header("f32", rows=0, cols_sel=4))
    write("huge-f16", header("f16", rows=0x80) + struct.pack("<QQ", 1 << 63, 1))
    write("huge-f16-valid", header("f16", rows=0x80) + struct.pack("<QQ", 3, 2) + tail(12))
    write("huge-tiered", header("tiered", rows=0x80) + struct.pack("<QQ", 1 << 40, 3) + bytes(64))


if __name__ == "__main__":
    main()
