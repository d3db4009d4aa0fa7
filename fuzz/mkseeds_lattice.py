#!/usr/bin/env python3
"""Writes the hand-made seed inputs of fuzz_lattice into fuzz/corpus/fuzz_lattice/.

The byte layout is the one documented at the top of fuzz/fuzz_lattice.c. Seeds
are small and deterministic (bytes the target reads past the end are zero):
    python3 fuzz/mkseeds_lattice.py [OUT_DIR]
"""
import os
import random
import struct
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "fuzz_lattice")
KIND = {"e8": 0, "sign": 1, "int8": 2, "e8s": 3}   # two bits per stage in h[1]
BITS = {"e8": 2, "sign": 1, "int8": 8, "e8s": 1}
rng = random.Random(4321)


def header(stages, rows=2, log_b=0, nb=1, raw=False, keep_nonfinite=False, corruption=0, r0=0, r1=1, pos=0, val=0):
    """h[0..7]: stage count and kinds, rows, B = 8 << log_b, cols = nb * B."""
    h0 = (len(stages) - 1) | raw << 2 | keep_nonfinite << 3 | corruption << 6
    h1 = sum(KIND[k] << (2 * i) for i, k in enumerate(stages))
    return bytes([h0, h1, rows, log_b | (nb - 1) << 4, r0, r1, pos, val])


def f16(x):
    return struct.pack("<e", x)


def body(stages, rows, cols, b, scale=0.05, nonfinite=False):
    """Signs, then per stage its scales and codes, as the target's build reads them."""
    out = bytearray(rng.randrange(256) for _ in range(cols // 8))
    for k in stages:
        for i in range(rows * (cols // b)):
            out += f16(float("inf")) if nonfinite and i == 0 else f16(scale * rng.uniform(-2, 2))
        out += bytes(rng.randrange(256) for _ in range(rows * cols * BITS[k] // 8))
    return bytes(out)


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def pad64(n):
    return (n + 63) // 64 * 64


# The worked example of spec 9.15: 2 x 16, B = 8, stages E8, SIGN, INT8.
SPEC_EXAMPLE = {
    0x000: "03010203", 0x040: "5ac3", 0x080: "b433f5312c33b333", 0x0c0: "b15dfd54ebcbee62",
    0x100: "ce2d1230d72f8631", 0x140: "a9749d52", 0x180: "d614bc188d121118",
    0x1c0: "277fb8b30d32d91219d7120f340e81d4", 0x1d0: "a48575813b79f7207f09d7d23edba1e5",
}


def spec_example():
    p = bytearray(512)
    for off, hexbytes in SPEC_EXAMPLE.items():
        b = bytes.fromhex(hexbytes)
        p[off:off + len(b)] = b
    return bytes(p)


def main():
    os.makedirs(OUT, exist_ok=True)
    # one to four stages of every kind, blocks of 8 to 1024 columns
    for stages, rows, log_b, nb in ((["e8"], 2, 0, 1), (["sign"], 3, 1, 2), (["int8"], 1, 2, 1),
                                    (["e8", "e8"], 4, 3, 2), (["e8", "sign"], 2, 4, 1),
                                    (["e8", "e8", "int8"], 2, 0, 4), (["sign", "e8", "e8", "sign"], 16, 2, 1),
                                    (["e8", "e8", "e8", "e8"], 1, 7, 1), (["int8", "sign", "e8"], 5, 0, 3)):
        b = 8 << log_b
        write("built-%s-%dx%d-b%d" % ("+".join(stages), rows, nb * b, b),
              header(stages, rows, log_b, nb, r0=1, r1=rows) + body(stages, rows, nb * b, b) + bytes([0, 1]))
    # the largest block, one row; codes past the input read as zero
    write("built-e8-1x16384-b16384", header(["e8"], 1, 11, 1) + body(["e8"], 1, 16384, 16384)[:512])
    # every corruption, on two stages
    for c in (1, 2, 3):
        for pos in (0, 70, 200):
            write("corrupt%d-pos%d" % (c, pos), header(["e8", "sign"], 2, 0, 2, corruption=c, pos=pos, val=0x10) +
                  body(["e8", "sign"], 2, 16, 8))
    # a non-finite scale, kept and made finite
    for keep in (False, True):
        write("inf-scale-%s" % ("kept" if keep else "fixed"), header(["e8", "int8"], 2, 1, 1, keep_nonfinite=keep) +
              body(["e8", "int8"], 2, 16, 16, nonfinite=True))
    # large scales: every product and sum stays finite
    write("big-scales", header(["int8", "int8", "int8", "int8"], 4, 0, 2) +
          body(["int8"] * 4, 4, 16, 8, scale=32000.0))
    # raw payloads: the spec's example (rows 2, B 8, cols 16), and broken headers
    ex = spec_example()
    write("raw-spec-example", header(["e8"], 2, 0, 2, raw=True) + ex)
    for name, off, val in (("raw-n-stages-0", 0, 0), ("raw-n-stages-5", 0, 5), ("raw-kind-5", 2, 5), ("raw-kind-e8s", 2, 4),
                           ("raw-unused-kind", 4, 1), ("raw-reserved", 63, 1)):
        p = bytearray(ex)
        p[off] = val
        write(name, header(["e8"], 2, 0, 2, raw=True) + bytes(p))
    write("raw-short-header", header(["e8"], 2, 0, 2, raw=True) + ex[:40])
    write("rows0", header(["e8"], 0, 0, 1))
    # unbounded shapes: rows, cols (u64) and B (u32), then the payload
    def huge(rows, cols, b, payload=b""):
        return bytes([0, 0, 0x80, 0, 0, 0, 0, 0]) + struct.pack("<QQI", rows, cols, b) + payload
    write("huge-valid", huge(2, 16, 8, ex))
    write("huge-rows", huge(1 << 40, 16, 8, ex))
    write("huge-int8-wrap", huge(1, (1 << 64) - 8, 8, ex))
    write("huge-cols-wrap", huge(1 << 3, 1 << 61, 16384, ex))
    for b in (0, 4, 12, 32768, 1 << 31):
        write("huge-block-%d" % b, huge(2, 16, b, ex))
    write("huge-cols-not-multiple", huge(2, 24, 16, ex))
    write("huge-cols-odd", huge(2, 12, 8, ex))
    # one row of 16384 columns, B 16384, one SIGN stage: exactly its size
    rows, cols, b = 1, 16384, 16384
    size = 64 + pad64(cols // 8) + pad64(2 * rows * cols // b) + pad64(rows * cols // 8)
    p = bytearray(size)
    p[0], p[1] = 1, 2
    p[64 + cols // 8 - 1] = 0x81
    p[64 + pad64(cols // 8):64 + pad64(cols // 8) + 2] = f16(0.5)
    write("huge-sign-16384", huge(rows, cols, b, bytes(p)))
    # E8S stages alone and among the others
    for stages, rows, log_b, nb in ((["e8s"], 3, 1, 2), (["e8", "e8s", "int8", "e8s"], 4, 2, 1)):
        b = 8 << log_b
        write("built-%s-%dx%d-b%d" % ("+".join(stages), rows, nb * b, b),
              header(stages, rows, log_b, nb, r0=1, r1=rows) + body(stages, rows, nb * b, b) + bytes([0, 1]))


if __name__ == "__main__":
    main()
