#!/usr/bin/python3
"""Checks bindings/python/nsq.py against libnsq; run by tests/bindings.sh.

  bindings_check.py dequant BUILD FILE [TENSOR...]
      Python's f32 output equals tests/dequant_dump's byte for byte, for the
      named tensors (default: all) at every refinement depth 0..max+1, and for
      LATTICE tensors in the rotated basis too.
  bindings_check.py errors BUILD FILE
      Decoding each tensor at full depth fails in Python with the rule that
      libnsq reports (a corrupted block, a bad frame, a bad payload), or in neither.
  bindings_check.py manifest MANIFEST
      Python gives each listed file its status and rule (open, then verify).
  bindings_check.py listing FILE JSON
      Python's listing equals the expected nsq-inspect --json output where comparable.
  bindings_check.py nodecoder FILE
      Without a Zstandard decoder, a file that needs one is refused clearly.
"""

import json
import os
import subprocess
import sys

sys.dont_write_bytecode = True   # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings", "python"))
import nsq  # noqa: E402


def fail(msg):
    print(msg)
    sys.exit(1)


def first_difference(py, c, tensors):
    """(tensor name, element index) of the first differing f32."""
    pos = 0
    for t in tensors:
        end = pos + 4 * t.n_elements
        if py[pos:end] != c[pos:end]:
            i = next(k for k in range(pos, end, 4) if py[k:k + 4] != c[k:k + 4])
            return t.name, (i - pos) // 4, py[i:i + 4].hex(), c[i:i + 4].hex()
        pos = end
    return None


def zstd_refused_clearly(path, err):
    if err.rule != "R-HDR-4" or "no decoder" not in str(err):
        fail("%s: unclear refusal: %s" % (path, err))
    print("%s: needs Zstandard and no decoder is available; refused: %s" % (path, err))


def same_as_c(build, f, path, tensors, level):
    """Python's and dequant_dump's bytes for tensors at level (an int, or "rotated")."""
    rotated = level == "rotated"
    py = b"".join(f.dequantize(t.name, 0 if rotated else level, rotated).tobytes() for t in tensors)
    res = subprocess.run([os.path.join(build, "tests", "dequant_dump"), path, str(level)] + [t.name for t in tensors],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if res.returncode != 0:
        fail("%s: dequant_dump failed: %s" % (path, res.stderr.decode(errors="replace")))
    if len(py) != len(res.stdout) or py != res.stdout:
        fail("%s level %s: %d vs %d bytes; first difference %s" % (
            path, level, len(py), len(res.stdout), first_difference(py, res.stdout, tensors)))


def cmd_dequant(build, path, names):
    try:
        f = nsq.open(path)
    except nsq.NsqError as e:
        return zstd_refused_clearly(path, e)
    tensors = [f.tensor(n) for n in names] if names else f.tensors
    depth = max(t.n_refine for t in tensors) + 1   # one beyond: levels are capped per tensor
    for level in range(depth + 1):
        same_as_c(build, f, path, tensors, level)
    lattice = [t for t in tensors if t.scheme == 17]
    if lattice:
        same_as_c(build, f, path, lattice, "rotated")
    print("%s: %d tensors identical at depths 0..%d, %d LATTICE tensors also rotated" % (
        path, len(tensors), depth, len(lattice)))


def cmd_errors(build, path):
    try:
        f, n_failed = nsq.open(path), 0
    except nsq.NsqError as e:
        return zstd_refused_clearly(path, e)
    for t in f.tensors:
        try:
            f.dequantize(t.name, t.n_refine)
            py = "ok"
        except nsq.NsqError as e:
            py = e.rule
        res = subprocess.run([os.path.join(build, "tests", "dequant_dump"), path, str(t.n_refine), t.name],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        words = res.stderr.decode(errors="replace").split()
        c = "ok" if res.returncode == 0 else next((w.rstrip(":") for w in words if w.startswith("R-")), "?")
        if py != c:
            fail("%s: %s: Python %s, libnsq %s" % (path, t.name, py, c))
        n_failed += py != "ok"
    if n_failed == 0:
        fail("%s: every tensor decodes; expected a failure" % path)
    print("%s: %d tensors fail with the same rule in both, %d decode" % (path, n_failed, len(f.tensors) - n_failed))


def cmd_manifest(manifest):
    base, n = os.path.dirname(manifest), 0
    for line in open(manifest):
        if line.startswith("#") or not line.strip():
            continue
        name, status, rule = line.split()
        try:
            nsq.open(os.path.join(base, name)).verify()
            got = ("NSQ_OK", "-")
        except nsq.NsqError as e:
            got = (e.status, e.rule)
        if got != (status, rule):
            fail("%s: want %s %s, got %s %s" % (name, status, rule, got[0], got[1]))
        n += 1
    print("%d files give their listed status and rule" % n)


def cmd_listing(path, expected_json):
    got, want = nsq.open(path).describe(), json.load(open(expected_json))
    for key, value in got.items():
        if key in ("blocks", "tensors"):   # bpw figures are the tool's, not the format's
            if len(value) != len(want[key]):
                fail("%s: %d %s, want %d" % (path, len(value), key, len(want[key])))
            for g, w in zip(value, want[key]):
                diff = {k: (v, w.get(k)) for k, v in g.items() if v != w.get(k)}
                if diff:
                    fail("%s: %s %s differs: %s" % (path, key, g.get("name", g.get("index")), diff))
        elif value != want.get(key):
            fail("%s: %s = %r, want %r" % (path, key, value, want.get(key)))
    print("%s: listing matches %s" % (path, expected_json))


def cmd_nodecoder(path):
    os.environ["NSQ_PY_ZSTD"] = "none"
    try:
        nsq.open(path)
    except nsq.NsqError as e:
        return zstd_refused_clearly(path, e)
    fail("%s: opened without a Zstandard decoder" % path)


def main(argv):
    cmds = {"dequant": lambda a: cmd_dequant(a[0], a[1], a[2:]), "manifest": lambda a: cmd_manifest(a[0]),
            "errors": lambda a: cmd_errors(a[0], a[1]), "listing": lambda a: cmd_listing(a[0], a[1]), "nodecoder": lambda a: cmd_nodecoder(a[0])}
    if len(argv) < 2 or argv[0] not in cmds:
        fail(__doc__)
    cmds[argv[0]](argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
