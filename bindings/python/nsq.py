#!/usr/bin/python3
"""Standalone reader for the .nsq format (spec/nsq-format.md), standard library only.

    f = nsq.open("model.nsq")        # checks every open-time rule (spec 14.3)
    f.metadata                       # {key: value}
    f.tensors, f.blocks              # records of the directory, in file order
    f.verify()                       # full verification: block checksums, R-BLK-*, R-TIER-*, R-LAT-*
    f.dequantize(name, refinements=2)  # -> array('f'), bit-exact (spec 8.4, 9.5, 9.6, 9.12)
    f.dequantize(name, rotated=True)   # a LATTICE tensor's stored, rotated basis W' (spec 9.12)

Invalid files raise NsqError, whose .rule and .status name the violated rule of
spec section 14 (e.g. "R-BLK-1", "NSQ_E_CHECKSUM").

XXH3-64 is computed in pure Python (slow: about 1 s per few MiB). Zstandard
blocks are decoded with the first decoder found: the module compression.zstd
(Python 3.14), the module zstandard (Debian: python3-zstandard), or the zstd
program. With none, a file that requires Zstandard is refused with R-HDR-4 and a
message saying so. NSQ_PY_ZSTD=program skips the modules, =none every decoder.

CLI: nsq.py inspect FILE | verify FILE | dump FILE TENSOR [--refine N] [--rotated] > raw.f32
"""

import argparse
import functools
import importlib
import json
import math
import mmap
import os
import shutil
import struct
import subprocess
import sys
from array import array

__all__ = ["NsqError", "NsqFile", "open", "xxh3_64"]

MAGIC = b"\x89NSQ\r\n\x1a\n"
_BUILTIN_OPEN = open

# ---------------------------------------------------------------------------
# XXH3-64, seed 0, default secret (spec 1.6)

_M64 = (1 << 64) - 1
_P32_1, _P32_2, _P32_3 = 0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D
_P64_1, _P64_2, _P64_3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
_P64_4, _P64_5 = 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5
_PMX1, _PMX2 = 0x165667919E3779F9, 0x9FB21C651E98DF25
_SECRET = bytes.fromhex(
    "b8fe6c3923a44bbe7c01812cf721ad1cded46de9839097db7240a4a4b7b3671f"
    "cb79e64eccc0e578825ad07dccff7221b8084674f743248ee03590e6813a264c"
    "3c2852bb91c300cb88d0658b1b532ea371644897a20df94e3819ef46a9deacd8"
    "a8fa763fe39c343ff9dcbbc7c70b4f1d8a51e04bcdb45931c89f7ec9d9787364"
    "eac5ac8334d3ebc3c581a0fffa1363eb170ddd51b7f0da49d316552629d4689e"
    "2b16be587d47a1fc8ff8b8d17ad031ce45cb3a8f95160428afd7fbcabb4b407e")


def _r64(b, i):
    return int.from_bytes(b[i:i + 8], "little")


def _mulfold(a, b):
    p = a * b
    return (p ^ (p >> 64)) & _M64


def _avalanche(h):
    h ^= h >> 37
    h = (h * _PMX1) & _M64
    return h ^ (h >> 32)


def _xxh64_avalanche(h):
    h ^= h >> 33
    h = (h * _P64_2) & _M64
    h ^= h >> 29
    h = (h * _P64_3) & _M64
    return h ^ (h >> 32)


def _mix16(b, i, s):
    return _mulfold(_r64(b, i) ^ _r64(_SECRET, s), _r64(b, i + 8) ^ _r64(_SECRET, s + 8))


def _xxh3_short(b):
    n = len(b)
    if n == 0:
        return _xxh64_avalanche(_r64(_SECRET, 56) ^ _r64(_SECRET, 64))
    if n <= 3:
        combined = (b[0] << 16) | (b[n >> 1] << 24) | b[n - 1] | (n << 8)
        flip = int.from_bytes(_SECRET[0:4], "little") ^ int.from_bytes(_SECRET[4:8], "little")
        return _xxh64_avalanche(combined ^ flip)
    if n <= 8:
        lo, hi = int.from_bytes(b[0:4], "little"), int.from_bytes(b[n - 4:n], "little")
        h = (hi + (lo << 32)) ^ (_r64(_SECRET, 8) ^ _r64(_SECRET, 16))
        h ^= ((h << 49 | h >> 15) ^ (h << 24 | h >> 40)) & _M64
        h = (h * _PMX2) & _M64
        h ^= (h >> 35) + n
        h = (h * _PMX2) & _M64
        return h ^ (h >> 28)
    if n <= 16:
        lo = _r64(b, 0) ^ (_r64(_SECRET, 24) ^ _r64(_SECRET, 32))
        hi = _r64(b, n - 8) ^ (_r64(_SECRET, 40) ^ _r64(_SECRET, 48))
        swapped = int.from_bytes(lo.to_bytes(8, "little"), "big")
        return _avalanche((n + swapped + hi + _mulfold(lo, hi)) & _M64)
    acc = n * _P64_1
    if n <= 128:
        for k in range((n - 1) // 32, -1, -1):   # the outer pairs first
            acc += _mix16(b, 16 * k, 32 * k) + _mix16(b, n - 16 * (k + 1), 32 * k + 16)
        return _avalanche(acc & _M64)
    for i in range(8):
        acc += _mix16(b, 16 * i, 16 * i)
    acc = _avalanche(acc & _M64)
    for i in range(8, n // 16):
        acc += _mix16(b, 16 * i, 16 * (i - 8) + 3)
    acc += _mix16(b, n - 16, 136 - 17)
    return _avalanche(acc & _M64)


_STRIPE_KEYS = [struct.unpack_from("<8Q", _SECRET, 8 * s) for s in range(16)]
_SCRAMBLE_KEY = struct.unpack_from("<8Q", _SECRET, 192 - 64)
_LAST_KEY = struct.unpack_from("<8Q", _SECRET, 192 - 64 - 7)


def _accumulate(acc, lanes, nstripes, first_key=0, keys=_STRIPE_KEYS):
    for s in range(nstripes):
        key, base = keys[first_key + s], 8 * s
        for i in range(8):
            v = lanes[base + i]
            k = v ^ key[i]
            acc[i ^ 1] += v
            acc[i] += (k & 0xFFFFFFFF) * (k >> 32)


def _xxh3_long(b):
    n = len(b)
    acc = [_P32_3, _P64_1, _P64_2, _P64_3, _P64_4, _P32_2, _P64_5, _P32_1]
    nblocks = (n - 1) // 1024
    for blk in range(nblocks):
        _accumulate(acc, struct.unpack_from("<128Q", b, 1024 * blk), 16)
        for i in range(8):   # scramble; the accumulators may exceed 64 bits until here
            a = acc[i] & _M64
            acc[i] = ((a ^ (a >> 47) ^ _SCRAMBLE_KEY[i]) * _P32_1) & _M64
    nstripes = ((n - 1) - 1024 * nblocks) // 64
    _accumulate(acc, struct.unpack_from("<%dQ" % (8 * nstripes), b, 1024 * nblocks), nstripes)
    _accumulate(acc, struct.unpack_from("<8Q", b, n - 64), 1, 0, [_LAST_KEY])
    acc = [a & _M64 for a in acc]
    h = (n * _P64_1) & _M64
    for i in range(4):
        h += _mulfold(acc[2 * i] ^ _r64(_SECRET, 11 + 16 * i), acc[2 * i + 1] ^ _r64(_SECRET, 19 + 16 * i))
    return _avalanche(h & _M64)


def xxh3_64(data):
    """XXH3-64 of a bytes-like object, seed 0, default secret."""
    return _xxh3_short(data) if len(data) <= 240 else _xxh3_long(data)


# ---------------------------------------------------------------------------
# Numbers (spec 1.8, 9.5)

_F16_TABLE = None


def _f16_bits(h):
    """f32 bit pattern of an f16 bit pattern: exact, NaN payloads kept (spec 1.8)."""
    sign, e, f = (h >> 15) << 31, (h >> 10) & 31, h & 0x3FF
    if e == 31:
        return sign | 0x7F800000 | (f << 13)
    if e == 0:
        if f == 0:
            return sign
        e = 1
        while not f & 0x400:   # normalise the subnormal
            f <<= 1
            e -= 1
        f &= 0x3FF
    return sign | ((e + 112) << 23) | (f << 13)


def _f16_table():
    global _F16_TABLE
    if _F16_TABLE is None:
        _F16_TABLE = array("I", (_f16_bits(h) for h in range(65536)))
    return _F16_TABLE


def _le_array(code, buf):
    a = array(code)
    a.frombytes(buf)
    if sys.byteorder == "big":
        a.byteswap()
    return a


def _bits_to_f32(bits):
    """array('f') holding the given u32 bit patterns; floats never pass through Python."""
    a = array("f")
    a.frombytes(bits.tobytes())
    return a


def _fl(xs):
    """Round each double to binary32. Exact emulation: for +, -, *, / of two binary32
    values the double result rounded to binary32 equals the binary32 result (53 >= 2*24+2)."""
    return array("f", xs).tolist()


def _pad64(n):
    return (n + 63) & ~63


def _align(n, a):
    return (n + a - 1) & ~(a - 1)


# ---------------------------------------------------------------------------
# Errors and Zstandard

STATUS = {"NSQ_E_MAGIC": 4, "NSQ_E_VERSION": 5, "NSQ_E_UNSUPPORTED": 6, "NSQ_E_TRUNCATED": 7,
          "NSQ_E_CHECKSUM": 8, "NSQ_E_LIMIT": 9, "NSQ_E_RANGE": 10, "NSQ_E_LAYOUT": 11,
          "NSQ_E_FORMAT": 12, "NSQ_E_METADATA": 13, "NSQ_E_TOKENIZER": 14,
          "NSQ_E_DIRECTORY": 15, "NSQ_E_BLOCK": 16, "NSQ_E_TENSOR": 17,
          "NSQ_E_COMPRESSION": 18, "NSQ_E_IMPORTANCE": 19, "NSQ_E_ROUTER": 20,
          "NSQ_E_FEATURE": 21, "NSQ_E_RESERVED": 25}


class NsqError(Exception):
    """An invalid file: .rule is the spec rule id, .status the status name, .code its value."""

    def __init__(self, rule, status, message):
        super().__init__("%s (%s): %s" % (rule, status, message))
        self.rule, self.status, self.code = rule, status, STATUS[status]


def _check(cond, rule, status, message):
    if not cond:
        raise NsqError(rule, "NSQ_E_" + status, message)


def _zstd_decoder():
    """A function bytes -> bytes raising ValueError on corrupt data, or None when no
    Zstandard decoder is available. NSQ_PY_ZSTD=none: none; =program: the zstd program."""
    choice = os.environ.get("NSQ_PY_ZSTD", "")
    if choice == "none":
        return None
    for name in ("compression.zstd", "zstandard") if choice != "program" else ():
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        return functools.partial(_zstd_module, mod)
    prog = shutil.which("zstd")
    return functools.partial(_zstd_program, prog) if prog else None


def _zstd_module(mod, data):
    try:
        if mod.__name__ == "zstandard":   # windows up to 2 GiB, as one-pass decoding allows
            return mod.ZstdDecompressor(max_window_size=1 << 31).decompress(data)
        return mod.decompress(data, options={mod.DecompressionParameter.window_log_max: 31})
    except mod.ZstdError as e:
        raise ValueError(str(e)) from None


def _zstd_program(prog, data):
    res = subprocess.run([prog, "-d", "-c", "-q", "--memory=2048MB"], input=data,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if res.returncode != 0:
        raise ValueError(res.stderr.decode(errors="replace").strip())
    return res.stdout


def _zstd_frame_size(buf):
    """Frame_Content_Size of the single frame that buf must be exactly (RFC 8878), or
    raise ValueError. The decoder cannot tell us about trailing data, so walk the blocks."""
    if len(buf) < 6 or buf[:4] != b"\x28\xb5\x2f\xfd":
        raise ValueError("no Zstandard frame magic")
    fhd = buf[4]
    fcs_flag, single, checksum, did_flag = fhd >> 6, (fhd >> 5) & 1, (fhd >> 2) & 1, fhd & 3
    if fhd & 0x08:
        raise ValueError("reserved frame header bit set")
    pos = 5 + (0 if single else 1)
    did_size = (0, 1, 2, 4)[did_flag]
    if int.from_bytes(buf[pos:pos + did_size], "little") != 0:
        raise ValueError("frame needs a dictionary")
    pos += did_size
    fcs_size = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if fcs_size == 0:
        raise ValueError("frame does not declare its content size")
    fcs = int.from_bytes(buf[pos:pos + fcs_size], "little") + (256 if fcs_size == 2 else 0)
    pos += fcs_size
    while True:
        if pos + 3 > len(buf):
            raise ValueError("truncated frame")
        head = int.from_bytes(buf[pos:pos + 3], "little")
        btype, bsize = (head >> 1) & 3, head >> 3
        if btype == 3:
            raise ValueError("reserved block type")
        pos += 3 + (1 if btype == 1 else bsize)
        if head & 1:
            break
    pos += 4 * checksum
    if pos != len(buf):
        raise ValueError("%d bytes after the frame" % (len(buf) - pos) if pos < len(buf)
                         else "truncated frame")
    return fcs


# ---------------------------------------------------------------------------
# Records

class Range:
    """A block's base range (level 0) or one refinement range."""

    def __init__(self, block, level, compression, offset, stored_size, raw_size, checksum):
        self.block, self.level, self.compression = block, level, compression
        self.offset, self.stored_size, self.raw_size, self.checksum = offset, stored_size, raw_size, checksum


class Block(Range):
    KINDS = {1: "embeddings", 2: "layers", 3: "output"}

    def __init__(self, index, kind, first_layer, n_layers, *rest):
        super().__init__(index, 0, *rest)
        self.index, self.kind, self.first_layer, self.n_layers = index, kind, first_layer, n_layers
        self.refinements = []   # Range, levels 1..L in order
        self.tensors = []       # Tensor, in payload order


class Tensor:
    SCHEMES = {1: "f32", 2: "f16", 3: "bf16", 16: "tiered", 17: "lattice"}

    def __init__(self, index, name, scheme, dims, block, group_size, offset, size, refine, kinds=None):
        self.index, self.name, self.scheme, self.dims = index, name, scheme, dims
        self.block, self.group_size, self.offset, self.size = block, group_size, offset, size
        # [(bits, offset, size)] for levels 1..n_refine; for LATTICE, bits is the
        # part's n_stages and kinds[l - 1] the kinds of level l's stages
        self.refine = refine
        self.kinds = kinds or [[] for _ in refine]
        self.n_elements = math.prod(dims)
        self.cols = dims[-1]
        self.n_groups = self.n_elements // group_size if group_size else 0

    @property
    def n_refine(self):
        return len(self.refine)


class _Cursor:
    """Bounded little-endian reads inside one section; a short read fails `rule`."""

    def __init__(self, buf, status):
        self.buf, self.pos, self.status = buf, 0, status

    def take(self, n, rule, what):
        _check(self.pos + n <= len(self.buf), rule, self.status, "%s runs past the section" % what)
        self.pos += n
        return self.buf[self.pos - n:self.pos]

    def u(self, size, rule, what):
        return int.from_bytes(self.take(size, rule, what), "little")


def _utf8(raw):
    """Strict UTF-8 without NUL (spec 1.7), or None."""
    try:
        text = bytes(raw).decode("utf-8", "strict")
    except UnicodeDecodeError:
        return None
    return None if "\0" in text else text


# ---------------------------------------------------------------------------
# The file

FORMAT_MAJOR, FORMAT_MINOR = 1, 4   # the format version this module reads (spec 13)
_SECTION_CAPS = {1: 64 << 20, 2: 256 << 20, 3: 256 << 20, 4: 4 << 30, 5: 256 << 20}
_META_TYPES = {1: "u64", 2: "i64", 3: "f64", 4: "bool", 5: "string"}
_REQUIRED_KEYS = [   # (key, type); spec 5.2, in sort order. Any STRING value is valid.
    ("general.architecture", 5), ("model.activation", 5), ("model.attention_bias", 4),
    ("model.context_length", 1), ("model.head_dim", 1), ("model.hidden_size", 1),
    ("model.intermediate_size", 1), ("model.mlp_bias", 4), ("model.n_heads", 1),
    ("model.n_kv_heads", 1), ("model.n_layers", 1), ("model.norm.epsilon", 3),
    ("model.norm.type", 5), ("model.position", 5), ("model.rope.scaling.factor", 3),
    ("model.rope.scaling.type", 5), ("model.rope.theta", 3), ("model.sliding_window", 1),
    ("model.tied_head", 4), ("model.vocab_size", 1), ("provenance.converter", 5),
    ("provenance.recipe", 5), ("provenance.source", 5), ("tokenizer.add_bos", 4),
    ("tokenizer.bos_id", 2), ("tokenizer.eos_id", 2)]
_TOKENIZER_KINDS = {1: ("hf_json", ["tokenizer.json"]), 2: ("gpt2_bpe", ["merges.txt", "vocab.json"]),
                    3: ("sentencepiece", ["tokenizer.model"])}
_KEY_CHARS = set(b"abcdefghijklmnopqrstuvwxyz0123456789_.")
_FILE_CHARS = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


class NsqFile:
    """An opened, validated .nsq file. Use nsq.open(path)."""

    def __init__(self, path):
        self.path = path
        with _BUILTIN_OPEN(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            self._data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        self._zstd = _zstd_decoder()
        self._raw = {}   # (block, level) -> raw bytes
        self._parse_header()
        self._parse_section_table()
        self.metadata, self.metadata_types = self._parse_metadata(self._section(1))
        self.tokenizer_kind, self.tokenizer_files = self._parse_tokenizer(self._section(2))
        self.blocks, self.tensors = self._parse_directory(self._section(3))
        self._by_name = {t.name: t for t in self.tensors}
        self.importance = self._parse_importance(self._section(4)) if 4 in self._sections else None
        self.router = self._parse_router(self._section(5)) if 5 in self._sections else None
        self._check_layout()
        self._check_features()

    def close(self):
        if isinstance(self._data, mmap.mmap):
            self._data.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- header and section table (spec 3, 4) --

    def _parse_header(self):
        d, n = self._data, len(self._data)
        if n < 128:
            _check(n < 8 or d[:8] == MAGIC, "R-HDR-1", "MAGIC", "not an nsq file")
            _check(False, "R-HDR-5", "TRUNCATED", "file of %d bytes is shorter than 128" % n)
        _check(d[:8] == MAGIC, "R-HDR-1", "MAGIC", "not an nsq file")
        (self.version_major, self.version_minor, header_size, self.required_features,
         self.optional_features, file_size, self._table_offset, self._section_count,
         entry_size, self.header_checksum) = struct.unpack_from("<HHIQQQQIIQ", d, 8)
        _check(self.version_major == FORMAT_MAJOR, "R-HDR-2", "VERSION", "major version %d" % self.version_major)
        _check(header_size == 128, "R-HDR-3", "FORMAT", "header_size %d" % header_size)
        # ZSTD with a decoder, LATTICE, LATTICE_LEVELS, LATTICE_E8S (spec 3.2)
        known = (1 if self._zstd else 0) | 2 | 4 | 8
        _check(self.required_features & ~known == 0, "R-HDR-4", "UNSUPPORTED",
               "required_features 0x%x: " % self.required_features +
               ("unknown feature bits" if self.required_features & ~15 else
                "the file has Zstandard-compressed blocks and no decoder is available "
                "(install python3-zstandard or the zstd program)"))
        _check(file_size == n, "R-HDR-5", "TRUNCATED", "file_size %d, actual length %d" % (file_size, n))
        _check(file_size <= 1 << 48, "R-HDR-5", "LIMIT", "file_size above 2^48")
        self.file_size = file_size
        _check(3 <= self._section_count <= 64, "R-HDR-6", "LIMIT", "section_count %d" % self._section_count)
        _check(entry_size == 32, "R-HDR-7", "FORMAT", "section_entry_size %d" % entry_size)
        t = self._table_offset
        _check(t % 8 == 0 and t >= 128 and t + 32 * self._section_count <= file_size,
               "R-HDR-8", "RANGE", "section table at %d" % t)
        _check(self.version_minor > FORMAT_MINOR or d[64:128] == bytes(64), "R-HDR-9", "RESERVED",
               "header bytes 64..127 not zero")

    def _parse_section_table(self):
        self._sections = {}   # kind -> (offset, size, checksum), in table order
        prev_end = None
        for i in range(self._section_count):
            kind, flags, off, size, csum = struct.unpack_from("<IIQQQ", self._data, self._table_offset + 32 * i)
            _check(flags == 0, "R-SEC-1", "RESERVED", "section %d flags 0x%x" % (i, flags))
            _check(kind != 0 and kind not in self._sections, "R-SEC-2", "FORMAT", "section kind %d" % kind)
            _check(1 <= size <= _SECTION_CAPS.get(kind, 4 << 30), "R-SEC-3", "LIMIT",
                   "section kind %d size %d" % (kind, size))
            _check(off % 8 == 0 and off + size <= self.file_size, "R-SEC-4", "RANGE",
                   "section kind %d at %d+%d" % (kind, off, size))
            _check(prev_end is None or (off > prev_end[0] and off >= prev_end[1]), "R-SEC-5", "RANGE",
                   "section kind %d out of order or overlapping" % kind)
            prev_end = (off, off + size)
            self._sections[kind] = (off, size, csum)
        _check(all(k in self._sections for k in (1, 2, 3)), "R-SEC-6", "FORMAT",
               "metadata, tokenizer or directory section missing")
        for kind, (off, size, csum) in self._sections.items():
            _check(xxh3_64(self._data[off:off + size]) == csum, "R-SEC-7", "CHECKSUM",
                   "section kind %d checksum" % kind)
        d_off, d_size, _ = self._sections[3]
        head = bytes(self._data[:56]) + bytes(8) + bytes(self._data[64:128])
        t = self._table_offset
        covered = head + self._data[t:t + 32 * self._section_count] + self._data[d_off:d_off + d_size]
        _check(xxh3_64(covered) == self.header_checksum, "R-HDR-10", "CHECKSUM", "header checksum")

    def _section(self, kind):
        off, size, _ = self._sections[kind]
        return self._data[off:off + size]

    # -- metadata (spec 5) --

    def _parse_metadata(self, buf):
        c = _Cursor(buf, "METADATA")
        count = c.u(4, "R-META-1", "entry_count")
        _check(1 <= count <= 65536 and count <= len(buf) // 5, "R-META-1", "LIMIT", "entry_count %d" % count)
        values, types, prev = {}, {}, None
        for _ in range(count):
            key = bytes(c.take(c.u(2, "R-META-2", "key_len"), "R-META-2", "key"))
            _check(1 <= len(key) <= 128 and set(key) <= _KEY_CHARS and b"" not in key.split(b"."),
                   "R-META-3", "METADATA", "key %r" % key)
            _check(prev is None or key > prev, "R-META-4", "METADATA", "key %r not after %r" % (key, prev))
            prev = key
            typ = c.u(1, "R-META-5", "type")
            elem = typ & 0x7F
            _check(1 <= elem <= 5, "R-META-9", "METADATA", "type 0x%02x" % typ)
            n = 1
            if typ & 0x80:
                n = c.u(4, "R-META-5", "array count")
                _check(n <= 1 << 24, "R-META-6", "LIMIT", "array of %d elements" % n)
            items = [self._meta_value(c, elem, key) for _ in range(n)]
            name = key.decode()
            values[name] = items if typ & 0x80 else items[0]
            types[name] = (_META_TYPES[elem], bool(typ & 0x80))
        _check(c.pos == len(buf), "R-META-10", "METADATA", "%d bytes after the last entry" % (len(buf) - c.pos))
        self._check_required_keys(values, types)
        return values, types

    @staticmethod
    def _meta_value(c, elem, key):
        if elem == 5:
            n = c.u(4, "R-META-5", "string length")
            _check(n <= 1 << 24, "R-META-6", "LIMIT", "string of %d bytes" % n)
            text = _utf8(c.take(n, "R-META-5", "string"))
            _check(text is not None, "R-META-7", "METADATA", "string of %r is not UTF-8" % key)
            return text
        if elem == 4:
            v = c.u(1, "R-META-5", "bool")
            _check(v <= 1, "R-META-8", "METADATA", "bool of %r is %d" % (key, v))
            return bool(v)
        raw = c.take(8, "R-META-5", "value")
        if elem == 3:
            v = struct.unpack("<d", raw)[0]
            _check(math.isfinite(v), "R-META-8", "METADATA", "f64 of %r not finite" % key)
            return v
        return struct.unpack("<q" if elem == 2 else "<Q", raw)[0]

    @staticmethod
    def _check_required_keys(values, types):
        for key, typ in _REQUIRED_KEYS:
            _check(types.get(key) == (_META_TYPES[typ], False), "R-META-11", "METADATA",
                   "required key %s missing or not a %s" % (key, _META_TYPES[typ]))
            v = values[key]
            ok = typ != 1 or key == "model.sliding_window" or 1 <= v <= 1 << 31
            _check(ok, "R-META-12", "METADATA", "%s = %r, must be 1..2^31" % (key, v))
        _check(values["model.n_heads"] % values["model.n_kv_heads"] == 0, "R-META-12", "METADATA",
               "model.n_heads is not a multiple of model.n_kv_heads")
        _check(values["model.n_layers"] <= 65536, "R-META-12", "LIMIT", "model.n_layers above 65536")

    # -- tokenizer (spec 6) --

    @staticmethod
    def _parse_tokenizer(buf):
        _check(len(buf) >= 8, "R-TOK-1", "TOKENIZER", "section shorter than 8 bytes")
        kind, count = struct.unpack_from("<II", buf, 0)
        _check(kind in _TOKENIZER_KINDS, "R-TOK-1", "TOKENIZER", "kind %d" % kind)
        _check(1 <= count <= 16, "R-TOK-2", "LIMIT", "file_count %d" % count)
        c = _Cursor(buf, "TOKENIZER")
        c.pos = 8
        files, prev = {}, None
        for _ in range(count):
            n = c.u(2, "R-TOK-3", "name_len")
            name = bytes(c.take(n, "R-TOK-4", "name"))
            _check(1 <= n <= 255 and set(name) <= _FILE_CHARS, "R-TOK-4", "TOKENIZER", "file name %r" % name)
            _check(prev is None or name > prev, "R-TOK-5", "TOKENIZER", "file %r not after %r" % (name, prev))
            prev = name
            files[name.decode()] = bytes(c.take(c.u(8, "R-TOK-3", "size"), "R-TOK-3", "file data"))
        _check(c.pos == len(buf), "R-TOK-6", "TOKENIZER", "bytes after the last file")
        kind_name, required = _TOKENIZER_KINDS[kind]
        _check(all(r in files for r in required), "R-TOK-7", "TOKENIZER", "%s needs %s" % (kind_name, required))
        return kind_name, files

    # -- directory (spec 7) --

    def _parse_directory(self, buf):
        _check(len(buf) >= 16, "R-DIR-1", "DIRECTORY", "section shorter than 16 bytes")
        nb, nr, nt, reserved = struct.unpack_from("<IIII", buf, 0)
        _check(reserved == 0, "R-DIR-3", "RESERVED", "directory header reserved field")
        left = len(buf) - 16
        _check(2 <= nb <= 65536 and 64 * nb <= left and nr <= 16 * nb and 64 * nb + 48 * nr <= left
               and 1 <= nt <= 1 << 20 and nt <= left // 35, "R-DIR-2", "LIMIT",
               "counts: %d blocks, %d refinements, %d tensors" % (nb, nr, nt))
        blocks = [self._block_record(buf, 16 + 64 * i, i, nb) for i in range(nb)]
        self._check_tiling(blocks)
        prev = None
        for i in range(nr):
            rng = self._refinement_record(buf, 16 + 64 * nb + 48 * i, nb, prev)
            blocks[rng.block].refinements.append(rng)
            prev = rng
        c = _Cursor(buf, "DIRECTORY")
        c.pos = 16 + 64 * nb + 48 * nr
        tensors = [self._tensor_record(c, i, blocks) for i in range(nt)]
        _check(c.pos == len(buf), "R-DIR-12", "DIRECTORY", "bytes after the last tensor record")
        self._check_packing(blocks, tensors)
        return blocks, tensors

    def _range_fields(self, what, compression, off, stored, raw):
        _check(compression in (0, 1), "R-DIR-5", "DIRECTORY", "%s compression %d" % (what, compression))
        _check(off % 4096 == 0 and stored >= 1 and off + stored <= self.file_size, "R-DIR-6", "RANGE",
               "%s at %d+%d" % (what, off, stored))
        _check(1 <= raw <= 1 << 36, "R-DIR-7", "LIMIT", "%s raw_size %d" % (what, raw))
        _check(stored == raw if compression == 0 else raw // 1024 <= stored, "R-DIR-8", "DIRECTORY",
               "%s stored_size %d, raw_size %d" % (what, stored, raw))

    def _block_record(self, buf, pos, i, nb):
        kind, first, nl, comp, off, stored, raw, csum = struct.unpack_from("<IIIIQQQQ", buf, pos)
        _check(buf[pos + 48:pos + 64] == bytes(16), "R-DIR-3", "RESERVED", "block %d reserved bytes" % i)
        _check(kind == (1 if i == 0 else 3 if i == nb - 1 else 2), "R-DIR-4", "DIRECTORY",
               "block %d kind %d" % (i, kind))
        self._range_fields("block %d" % i, comp, off, stored, raw)
        return Block(i, kind, first, nl, comp, off, stored, raw, csum)

    def _check_tiling(self, blocks):
        expect = 0
        for b in blocks:
            ok = (b.first_layer == 0 and b.n_layers == 0) if b.kind != 2 else \
                (b.first_layer == expect and b.n_layers >= 1)
            _check(ok, "R-DIR-9", "DIRECTORY", "block %d layers %d+%d" % (b.index, b.first_layer, b.n_layers))
            expect += b.n_layers
        _check(expect == self.metadata["model.n_layers"], "R-DIR-9", "DIRECTORY",
               "LAYERS blocks hold %d layers, model.n_layers is %d" % (expect, self.metadata["model.n_layers"]))

    def _refinement_record(self, buf, pos, nb, prev):
        block, level, comp, reserved, off, stored, raw, csum = struct.unpack_from("<IIIIQQQQ", buf, pos)
        _check(reserved == 0, "R-DIR-3", "RESERVED", "refinement record reserved field")
        same = prev is not None and prev.block == block
        _check(block < nb and (prev is None or block >= prev.block) and level <= 16 and
               level == (prev.level + 1 if same else 1), "R-DIR-10", "DIRECTORY",
               "refinement record block %d level %d" % (block, level))
        self._range_fields("refinement %d/%d" % (block, level), comp, off, stored, raw)
        return Range(block, level, comp, off, stored, raw, csum)

    def _tensor_record(self, c, index, blocks):
        n = c.u(2, "R-DIR-11", "tensor name_len")
        _check(1 <= n <= 256 and c.pos + n <= len(c.buf), "R-TEN-1", "DIRECTORY", "tensor %d name" % index)
        raw_name = bytes(c.take(n, "R-TEN-1", "name"))
        _check(all(0x21 <= ch <= 0x7E for ch in raw_name), "R-TEN-1", "DIRECTORY", "tensor name %r" % raw_name)
        name = raw_name.decode()
        fixed = c.take(16, "R-DIR-11", "tensor record")
        scheme, ndims, block, gs, nref = struct.unpack_from("<BBIIB", fixed, 0)
        _check(fixed[11:16] == bytes(5), "R-DIR-3", "RESERVED", "%s reserved bytes" % name)
        _check(1 <= ndims <= 4 and nref <= 16, "R-TEN-4", "DIRECTORY", "%s n_dims %d n_refine %d" % (name, ndims, nref))
        rest = c.take(8 * ndims + 16 + 24 * nref, "R-DIR-11", "tensor record")
        vals = struct.unpack_from("<%dQ" % (ndims + 2), rest, 0)
        dims, offset, size = list(vals[:ndims]), vals[ndims], vals[ndims + 1]
        parts = [struct.unpack_from("<B7sQQ", rest, 8 * ndims + 16 + 24 * k) for k in range(nref)]
        # bytes 1..3 of a LATTICE part are its stage kinds, reserved otherwise (spec 7.5)
        first = 3 if scheme == 17 else 0
        _check(all(p[1][first:] == bytes(7 - first) for p in parts), "R-DIR-3", "RESERVED",
               "%s refinement reserved bytes" % name)
        _check(scheme in Tensor.SCHEMES, "R-TEN-2", "DIRECTORY", "%s scheme %d" % (name, scheme))
        _check(block < len(blocks), "R-TEN-3", "DIRECTORY", "%s block %d" % (name, block))
        _check(all(1 <= d < 1 << 32 for d in dims) and math.prod(dims) <= 1 << 40, "R-TEN-4", "LIMIT",
               "%s dims %s" % (name, dims))
        t = Tensor(index, name, scheme, dims, block, gs if scheme in (16, 17) else 0, offset, size,
                   [(p[0], p[2], p[3]) for p in parts], [list(p[1][:3]) for p in parts] if scheme == 17 else None)
        if scheme == 17:
            return self._lattice_record(t, ndims, gs, len(blocks[block].refinements))
        if scheme != 16:
            _check(gs == 0 and nref == 0, "R-TEN-5", "DIRECTORY", "%s has group_size or refinements" % name)
            _check(size == (4 if scheme == 1 else 2) * t.n_elements, "R-TEN-6", "DIRECTORY", "%s size %d" % (name, size))
            return t
        _check(ndims == 2 and gs in (32, 64, 128, 256) and t.cols % gs == 0, "R-TEN-7", "DIRECTORY",
               "%s: TIERED needs 2 dims and a group size dividing cols" % name)
        ng, base = t.n_groups, _pad64((t.n_groups + 3) // 4)
        _check(base + ng * (gs // 4 + 4) <= size <= base + ng * 2 * gs + 7 * 63, "R-TEN-6", "DIRECTORY",
               "%s size %d" % (name, size))
        _check(nref <= len(blocks[block].refinements), "R-TEN-8", "DIRECTORY",
               "%s has %d levels, its block %d" % (name, nref, len(blocks[block].refinements)))
        for bits, _, psize in t.refine:
            _check(bits in (1, 2, 4, 8) and psize <= _pad64(ng * gs * bits // 8), "R-TEN-9", "DIRECTORY",
                   "%s refinement bits %d size %d" % (name, bits, psize))
        return t

    @staticmethod
    def _lattice_record(t, ndims, gs, levels):
        """R-TEN-7, R-TEN-6, R-TEN-8, then R-TEN-9 part by part (form, then size), as spec 14.3 orders them."""
        _check(ndims == 2 and 8 <= gs <= 16384 and gs & (gs - 1) == 0 and t.cols % gs == 0, "R-TEN-7",
               "DIRECTORY", "%s: LATTICE needs 2 dims and a power-of-two group size 8..16384 dividing cols" % t.name)
        # counts of E8, SIGN and INT8 stages; an E8S stage has a SIGN stage's size (spec 9.10)
        counts = [(e, s, i) for e in range(5) for s in range(5 - e) for i in range(5 - e - s) if e + s + i]
        _check(any(_lattice_size(t, [1] * e + [2] * s + [3] * i) == t.size for e, s, i in counts), "R-TEN-6",
               "DIRECTORY", "%s size %d is no LATTICE payload size" % (t.name, t.size))
        _check(t.n_refine <= levels, "R-TEN-8", "DIRECTORY",
               "%s has %d levels, its block %d" % (t.name, t.n_refine, levels))
        total = 0
        for level, ((n, _, psize), kinds) in enumerate(zip(t.refine, t.kinds), 1):
            total += n
            _check(n <= 3 and all(k in _LAT_BITS for k in kinds[:n]) and not any(kinds[n:]) and total <= 3,
                   "R-TEN-9", "DIRECTORY", "%s level %d: %d stages of kinds %s, %d in parts 1..%d" % (
                       t.name, level, n, kinds, total, level))
            want = _lattice_size(t, kinds[:n], header=False)
            _check(psize == want, "R-TEN-9", "DIRECTORY",
                   "%s level %d: size %d, its stages take %d" % (t.name, level, psize, want))
        return t

    @staticmethod
    def _check_packing(blocks, tensors):
        i = 0
        for b in blocks:
            run = []
            while i < len(tensors) and tensors[i].block == b.index:
                run.append(tensors[i])
                i += 1
            b.tensors = run
            levels = [(0, b.raw_size, run)] + [
                (r.level, r.raw_size, [t for t in run if t.n_refine >= r.level]) for r in b.refinements]
            for level, raw_size, members in levels:
                pos = 0
                for t in members:
                    off, size = (t.offset, t.size) if level == 0 else t.refine[level - 1][1:]
                    _check(off == _align(pos, 64), "R-TEN-10", "DIRECTORY",
                           "%s level %d at %d, expected %d" % (t.name, level, off, _align(pos, 64)))
                    pos = off + size
                _check(members and pos == raw_size, "R-TEN-11", "DIRECTORY",
                       "block %d level %d: payloads end at %d, raw_size %d" % (b.index, level, pos, raw_size))
        _check(i == len(tensors), "R-TEN-12", "DIRECTORY", "tensor records not grouped by block")
        names = set()
        for t in tensors:
            _check(t.name not in names, "R-TEN-13", "DIRECTORY", "duplicate tensor %s" % t.name)
            names.add(t.name)

    # -- importance and router (spec 10, 11) --

    def _parse_importance(self, buf):
        _check(len(buf) >= 20, "R-IMP-1", "IMPORTANCE", "section shorter than 20 bytes")
        method, count, bpw, plen = struct.unpack_from("<IIdI", buf, 0)
        _check(method in (1, 2) and math.isfinite(bpw) and 0 <= bpw <= 32, "R-IMP-1", "IMPORTANCE",
               "method %d target_bpw %r" % (method, bpw))
        _check(count <= len(self.tensors) and plen <= 1 << 20, "R-IMP-2", "LIMIT",
               "entry_count %d provenance_len %d" % (count, plen))
        c = _Cursor(buf, "IMPORTANCE")
        c.pos = 20
        prov = _utf8(c.take(plen, "R-IMP-2", "provenance"))
        _check(prov is not None, "R-IMP-2", "IMPORTANCE", "provenance is not UTF-8")
        entries, prev = {}, -1
        for _ in range(count):
            ti, reserved, ngs, ncs = struct.unpack("<IIQQ", c.take(24, "R-IMP-3", "entry"))
            _check(reserved == 0, "R-IMP-3", "RESERVED", "entry reserved field")
            _check(prev < ti < len(self.tensors) and self.tensors[ti].scheme in (16, 17), "R-IMP-4", "IMPORTANCE",
                   "entry for tensor %d" % ti)
            prev, t = ti, self.tensors[ti]
            _check(ngs in (0, t.n_groups) and ncs in (0, t.cols), "R-IMP-5", "IMPORTANCE",
                   "%s: %d group and %d column statistics" % (t.name, ngs, ncs))
            stats = [_le_array("f", c.take(4 * n, "R-IMP-3", "statistics")) for n in (ngs, ncs)]
            _check(all(math.isfinite(x) and x >= 0 for a in stats for x in a), "R-IMP-6", "IMPORTANCE",
                   "%s: a statistic is negative or not finite" % t.name)
            entries[t.name] = stats
        _check(c.pos == len(buf), "R-IMP-7", "IMPORTANCE", "bytes after the last entry")
        return {"method": {1: "magnitude", 2: "calibrated"}[method], "target_bpw": bpw,
                "provenance": prov, "entries": entries}

    def _parse_router(self, buf):
        _check(len(buf) >= 32, "R-RTR-1", "ROUTER", "section shorter than 32 bytes")
        feature, dim, hidden, act, nb, temp, reserved = struct.unpack_from("<IIIIIfQ", buf, 0)
        _check(reserved == 0, "R-RTR-1", "RESERVED", "router reserved field")
        _check(feature == 1 and dim == self.metadata["model.hidden_size"] and hidden <= 4096 and act <= 2
               and nb == len(self.blocks) and math.isfinite(temp) and temp > 0, "R-RTR-2", "ROUTER",
               "feature %d input_dim %d hidden_dim %d activation %d block_count %d temperature %r"
               % (feature, dim, hidden, act, nb, temp))
        o = 3 * nb
        n_params = 2 * dim + (hidden * dim + hidden + o * hidden + o if hidden else o * dim + o)
        start = 32 + _align(nb, 4)
        _check(len(buf) == start + 4 * n_params, "R-RTR-4", "ROUTER", "section size %d" % len(buf))
        masks = bytes(buf[32:32 + nb])
        for b, m in zip(self.blocks, masks):
            edge = b.kind != 2
            _check(m != 0 and m & ~7 == 0 and (b.refinements or not m & 4) and
                   (not edge or (m & 3) == 2), "R-RTR-3", "ROUTER", "block %d choice_mask 0x%x" % (b.index, m))
        _check(buf[32 + nb:start] == bytes(start - 32 - nb), "R-RTR-5", "ROUTER", "padding after choice_mask")
        _check(all(math.isfinite(x) for x in _le_array("f", buf[start:])), "R-RTR-6", "ROUTER", "a parameter is not finite")
        return {"feature": feature, "input_dim": dim, "hidden_dim": hidden,
                "activation": ("identity", "relu", "tanh")[act], "temperature": temp,
                "choice_mask": list(masks), "parameters": _le_array("f", buf[start:])}

    # -- whole-file rules (spec 2.2, 3.2) --

    def _check_layout(self):
        ranges = [(0, 128, 1), (self._table_offset, 32 * self._section_count, 8)]
        ranges += [(off, size, 8) for off, size, _ in self._sections.values()]
        for b in self.blocks:
            ranges += [(r.offset, r.stored_size, 4096) for r in [b] + b.refinements]
        pos = 0
        for off, size, a in sorted(ranges):
            _check(off == _align(pos, a), "R-LAY-1", "LAYOUT", "range at %d, expected %d" % (off, _align(pos, a)))
            _check(self._data[pos:off] == bytes(off - pos), "R-LAY-2", "LAYOUT", "padding before %d not zero" % off)
            pos = off + size
        _check(pos == self.file_size, "R-LAY-3", "LAYOUT", "%d bytes after the last range" % (self.file_size - pos))

    def _check_features(self):
        # bit 3 against the parts' kinds first; payloads' kinds are checked when
        # viewed (_lattice_view) and bit 3 set without E8S by verify (spec 3.2)
        _check(self.required_features & 8 or not any(
            4 in kinds[:n] for t in self.tensors if t.scheme == 17 for (n, _, _), kinds in zip(t.refine, t.kinds)),
            "R-HDR-11", "FEATURE", "required_features bit 3 is clear but a refinement part has an E8S stage")
        ranges = [r for b in self.blocks for r in [b] + b.refinements]
        checks = [("required", self.required_features, 0, any(r.compression == 1 for r in ranges)),
                  ("required", self.required_features, 1, any(t.scheme == 17 for t in self.tensors)),
                  ("required", self.required_features, 2, any(t.scheme == 17 and t.n_refine for t in self.tensors)),
                  ("optional", self.optional_features, 0, any(b.refinements for b in self.blocks)),
                  ("optional", self.optional_features, 1, 4 in self._sections),
                  ("optional", self.optional_features, 2, 5 in self._sections)]
        for field, value, bit, present in checks:
            # every reader knows bit 0 (spec 3.2): a compressed range with bit 0
            # clear fails here even without a decoder
            _check(bool(value >> bit & 1) == present, "R-HDR-11", "FEATURE",
                   "%s_features bit %d disagrees with the content" % (field, bit))

    # -- blocks (spec 8) --

    def _load(self, rng):
        """Raw bytes of a block's base range or refinement range (R-BLK-1, R-BLK-2)."""
        key = (rng.block, rng.level)
        if key not in self._raw:
            what = "block %d" % rng.block + (" level %d" % rng.level if rng.level else "")
            stored = self._data[rng.offset:rng.offset + rng.stored_size]
            _check(xxh3_64(stored) == rng.checksum, "R-BLK-1", "CHECKSUM", "%s checksum" % what)
            raw = stored
            if rng.compression == 1:
                if self._zstd is None:
                    raise NsqError("R-HDR-4", "NSQ_E_UNSUPPORTED",
                                   "%s is Zstandard-compressed and no decoder is available" % what)
                try:
                    _check(_zstd_frame_size(stored) == rng.raw_size, "R-BLK-2", "COMPRESSION",
                           "%s frame content size is not raw_size %d" % (what, rng.raw_size))
                    raw = self._zstd(stored)
                except ValueError as e:
                    raise NsqError("R-BLK-2", "NSQ_E_COMPRESSION", "%s: %s" % (what, e)) from None
                _check(len(raw) == rng.raw_size, "R-BLK-2", "COMPRESSION", "%s decodes to %d bytes" % (what, len(raw)))
            self._raw[key] = raw
        return self._raw[key]

    def verify(self):
        """Full verification (spec 14.3, last paragraph): every rule the open did not check."""
        e8s = False   # some payload or part has an E8S stage (required bit 3, spec 3.2)
        for b in self.blocks:
            for rng in [b] + b.refinements:
                raw = self._load(rng)
                members = [t for t in b.tensors if rng.level == 0 or t.n_refine >= rng.level]
                pos = 0
                for t in members:
                    off, size = (t.offset, t.size) if rng.level == 0 else t.refine[rng.level - 1][1:]
                    _check(raw[pos:off] == bytes(off - pos), "R-BLK-3", "BLOCK",
                           "padding before %s in block %d level %d" % (t.name, b.index, rng.level))
                    pos = off + size
                for t in members:
                    if t.scheme == 16:
                        nq = t.n_groups - self._view(t)[0][1].count(0)
                        if rng.level:
                            self._part(t, rng.level, nq)
                    elif t.scheme == 17:
                        e8s |= any(k == 4 for k, _, _ in self._lattice_view(t)[1])
                        if rng.level:
                            e8s |= any(k == 4 for k, _, _ in self._lattice_part(t, rng.level))
        _check(e8s or not self.required_features & 8, "R-HDR-11", "FEATURE",
               "required_features bit 3 is set but no stage is E8S")

    # -- decoding (spec 9) --

    def tensor(self, name):
        return self._by_name[name]

    def _view(self, t):
        """Validated streams of a TIERED payload (R-TIER-1..4)."""
        raw = self._load(self.blocks[t.block])
        return self._tier_streams(t, memoryview(raw)[t.offset:t.offset + t.size])

    def _part(self, t, level, nq):
        """Validated level-`level` refinement part of t, which has nq quantized groups."""
        bits, off, size = t.refine[level - 1]
        used = nq * t.group_size * bits // 8
        _check(size == _pad64(used), "R-TIER-5", "TENSOR", "%s level %d size %d" % (t.name, level, size))
        part = memoryview(self._load(self.blocks[t.block].refinements[level - 1]))[off:off + size]
        _check(part[used:] == bytes(size - used), "R-TIER-2", "TENSOR", "%s level %d padding" % (t.name, level))
        return part

    def _tier_streams(self, t, payload):
        """[(tier map, tiers)] + 7 stream views, after R-TIER-1..4."""
        G, ng = t.group_size, t.n_groups
        map_len = (ng + 3) // 4
        _check(len(payload) >= _pad64(map_len), "R-TIER-1", "TENSOR", "%s shorter than its tier map" % t.name)
        tiers = [(payload[g >> 2] >> (2 * (g & 3))) & 3 for g in range(ng)]
        unused = payload[map_len - 1] >> (2 * (ng % 4)) if ng % 4 else 0
        _check(unused == 0 and payload[map_len:_pad64(map_len)] == bytes(_pad64(map_len) - map_len),
               "R-TIER-2", "TENSOR", "%s tier map padding" % t.name)
        n = [tiers.count(k) for k in range(4)]
        lengths = [n[0] * 2 * G, n[1] * G, n[1] * 4, n[2] * G // 2, n[2] * 4, n[3] * G // 4, n[3] * 4]
        _check(len(payload) == _pad64(map_len) + sum(_pad64(x) for x in lengths), "R-TIER-3", "TENSOR",
               "%s size %d does not match its tier map" % (t.name, len(payload)))
        streams, pos = [(payload[:map_len], tiers)], _pad64(map_len)
        for k, length in enumerate(lengths):
            s = payload[pos:pos + length]
            _check(payload[pos + length:pos + _pad64(length)] == bytes(_pad64(length) - length),
                   "R-TIER-2", "TENSOR", "%s stream %d padding" % (t.name, k + 2))
            if k in (2, 4, 6):   # (d, m) parameters must be finite f16: exponent field not 31
                h = _le_array("H", s)
                _check(all(x & 0x7C00 != 0x7C00 for x in h), "R-TIER-4", "TENSOR",
                       "%s has a non-finite d or m" % t.name)
            streams.append(s)
            pos += _pad64(length)
        return streams

    def dequantize(self, name, refinements=0, rotated=False):
        """The tensor's values as array('f') in row-major order, with levels
        1..min(refinements, n_refine) applied (spec 8.4). rotated: a LATTICE
        tensor's rotated basis W' instead of W (spec 9.12)."""
        t = self._by_name[name]
        if refinements < 0:
            raise ValueError("refinements must be >= 0")
        if rotated and t.scheme != 17:
            raise ValueError("%s is not a LATTICE tensor: it has no rotated basis" % name)
        payload = memoryview(self._load(self.blocks[t.block]))[t.offset:t.offset + t.size]
        if t.scheme == 1:
            return _le_array("f", payload)
        if t.scheme == 2:
            table = _f16_table()
            return _bits_to_f32(array("I", (table[h] for h in _le_array("H", payload))))
        if t.scheme == 3:
            return _bits_to_f32(array("I", (h << 16 for h in _le_array("H", payload))))
        if t.scheme == 17:
            return self._decode_lattice(t, rotated, min(refinements, t.n_refine))
        return self._decode_tiered(t, min(refinements, t.n_refine))

    def _decode_tiered(self, t, levels):
        G = t.group_size
        streams = self._view(t)
        tiers = streams[0][1]
        f16 = _bits_to_f32(array("I", (_f16_table()[h] for h in _le_array("H", streams[1]))))
        # Base decode of the quantized groups, in quantized-rank order (spec 9.5).
        qgroups, steps, vals = [], [], []
        rank = [0, 0, 0, 0]
        for g, tier in enumerate(tiers):
            if tier == 0:
                continue
            bits = 8 >> (tier - 1)
            r, rank[tier] = rank[tier], rank[tier] + 1
            stride = G * bits // 8
            codes = _codes(streams[2 * tier][r * stride:(r + 1) * stride], bits)
            d, m = struct.unpack_from("<ee", streams[2 * tier + 1], 4 * r)
            vals += _fl([p + m for p in _fl([d * q for q in codes])])
            qgroups.append(g)
            steps.append(d)
        # Refinement levels in order (spec 9.6).
        for level in range(1, levels + 1):
            k = t.refine[level - 1][0]
            part = self._part(t, level, len(steps))
            stride = G * k // 8
            c_of = _fl([x - 0.5 for x in _fl([(2 * r + 1) / 2.0 ** (k + 1) for r in range(1 << k)])])
            prods = []
            for qr, s in enumerate(steps):
                prods += [s * c_of[r] for r in _codes(part[qr * stride:(qr + 1) * stride], k)]
            vals = _fl([v + p for v, p in zip(vals, _fl(prods))])
            steps = _fl([s / 2.0 ** k for s in steps])
        out = array("f", bytes(4 * t.n_elements))
        qvals = array("f", vals)
        f16_rank = 0
        for qr, g in enumerate(qgroups):
            out[g * G:(g + 1) * G] = qvals[qr * G:(qr + 1) * G]
        for g, tier in enumerate(tiers):
            if tier == 0:
                out[g * G:(g + 1) * G] = f16[f16_rank * G:(f16_rank + 1) * G]
                f16_rank += 1
        return out

    def _lattice_view(self, t):
        """(signs, [(kind, scales, codes)]) of a LATTICE payload, after R-LAT-1..5
        in the order of spec 9.13, then R-LAT-6 when the tensor has refinement parts,
        then R-HDR-11 for an E8S stage in a file whose required bit 3 is clear."""
        p = memoryview(self._load(self.blocks[t.block]))[t.offset:t.offset + t.size]
        _check(len(p) >= 64, "R-LAT-1", "TENSOR", "%s shorter than its header" % t.name)
        n = p[0]
        _check(1 <= n <= 4 and all(k in _LAT_BITS for k in p[1:1 + n]), "R-LAT-1", "TENSOR",
               "%s: n_stages %d or a stage kind is invalid" % (t.name, n))
        _check(p[1 + n:64] == bytes(63 - n), "R-LAT-2", "TENSOR", "%s reserved header bytes" % t.name)
        kinds = list(p[1:1 + n])
        _check(len(p) == _lattice_size(t, kinds), "R-LAT-3", "TENSOR",
               "%s size %d does not match its header" % (t.name, len(p)))
        length = t.cols // 8
        _check(p[64 + length:64 + _pad64(length)] == bytes(_pad64(length) - length), "R-LAT-4", "TENSOR",
               "%s padding" % t.name)
        stages = self._lattice_stages(t, p, 64 + _pad64(length), kinds, "")
        n_parts = sum(part[0] for part in t.refine)
        _check(n + n_parts <= 4, "R-LAT-6", "TENSOR",
               "%s: %d base stages and %d in refinements: over 4" % (t.name, n, n_parts))
        _check(self.required_features & 8 or 4 not in kinds, "R-HDR-11", "FEATURE",
               "%s has an E8S stage and required_features bit 3 is clear" % t.name)
        return p[64:64 + length], stages

    def _lattice_part(self, t, level):
        """[(kind, scales, codes)] of the stages that LATTICE tensor t's level-`level`
        part adds, after R-LAT-5 and R-LAT-4 (spec 9.13); its size was checked at open."""
        n, off, size = t.refine[level - 1]
        part = memoryview(self._load(self.blocks[t.block].refinements[level - 1]))[off:off + size]
        return self._lattice_stages(t, part, 0, t.kinds[level - 1][:n], " level %d" % level)

    @staticmethod
    def _lattice_stages(t, buf, pos, kinds, where):
        """The stages of these kinds laid out from buf[pos]: for each, scales (R-LAT-5,
        then R-LAT-4 for their padding) and codes (R-LAT-4 for their padding)."""
        rows, nb = t.n_elements // t.cols, t.cols // t.group_size
        out = []
        for k in kinds:
            streams = []
            for i, length in enumerate((2 * rows * nb, t.n_elements * _LAT_BITS[k] // 8)):
                s = buf[pos:pos + length]
                _check(i or all(h & 0x7C00 != 0x7C00 for h in _le_array("H", s)), "R-LAT-5", "TENSOR",
                       "%s%s has a non-finite scale" % (t.name, where))
                _check(buf[pos + length:pos + _pad64(length)] == bytes(_pad64(length) - length), "R-LAT-4",
                       "TENSOR", "%s%s padding" % (t.name, where))
                streams.append(s)
                pos += _pad64(length)
            out.append((k, streams[0], streams[1]))
        return out

    def _decode_lattice(self, t, rotated, levels=0):
        """W' (rotated) or W = W' R, bit-exact (spec 9.12), for the stage list of depth
        `levels` (spec 8.4): the payload's stages, then those of parts 1..levels in order."""
        signs, stages = self._lattice_view(t)
        for level in range(1, levels + 1):
            stages = stages + self._lattice_part(t, level)
        B, cols, n = t.group_size, t.cols, t.n_elements
        nb = cols // B
        acc = None
        for kind, scales, codes in stages:
            d = _bits_to_f32(array("I", (_f16_table()[h] for h in _le_array("H", scales))))
            v = _lattice_values(kind, codes)
            prods = _fl([d[i // cols * nb + i % cols // B] * v[i] for i in range(n)])
            acc = prods if acc is None else _fl([a + b for a, b in zip(acc, prods)])
        if rotated:
            return array("f", acc)
        h = 1
        while h < B:   # the butterfly of every block at once: blocks start at multiples of B
            lo = [i for i in range(n) if not i & h]
            sums = _fl([acc[i] + acc[i + h] for i in lo])
            diffs = _fl([acc[i] - acc[i + h] for i in lo])
            for i, a, b in zip(lo, sums, diffs):
                acc[i], acc[i + h] = a, b
            h *= 2
        k = B.bit_length() - 1
        c = math.ldexp(float.fromhex("0x1.6a09e6p-1") if k % 2 else 1.0, -(k // 2))
        w = _fl([x * c for x in acc])
        return array("f", (-x if signs[i % cols // 8] >> (i % 8) & 1 else x for i, x in enumerate(w)))

    def tier_counts(self, name):
        """{'f16': n0, 'q8': n1, 'q4': n2, 'q2': n3} of a TIERED tensor."""
        tiers = self._view(self._by_name[name])[0][1]
        return {k: tiers.count(i) for i, k in enumerate(("f16", "q8", "q4", "q2"))}

    def lattice_stages(self, name):
        """['e8', 'sign', 'int8', 'e8s', ...]: the stage kinds of a LATTICE tensor, in order."""
        return [_LAT_NAMES[k] for k, _, _ in self._lattice_view(self._by_name[name])[1]]

    def describe(self, payloads=True):
        """A JSON-friendly summary, shaped like nsq-inspect --json --blocks --tensors.
        payloads: also read the TIERED and LATTICE payloads (tier counts, stage kinds)."""
        comp = ("none", "zstd")
        req = _flag_names(self.required_features, ("zstd", "lattice", "lattice_levels", "lattice_e8s"))
        opt = _flag_names(self.optional_features, ("refinements", "importance", "router"))
        blocks = [{"index": b.index, "kind": Block.KINDS[b.kind], "first_layer": b.first_layer,
                   "n_layers": b.n_layers, "compression": comp[b.compression], "offset": b.offset,
                   "stored_size": b.stored_size, "raw_size": b.raw_size, "checksum": "%016x" % b.checksum,
                   "tensor_count": len(b.tensors),
                   "refinements": [{"level": r.level, "compression": comp[r.compression], "offset": r.offset,
                                    "stored_size": r.stored_size, "raw_size": r.raw_size,
                                    "checksum": "%016x" % r.checksum} for r in b.refinements]}
                  for b in self.blocks]
        tensors = []
        for t in self.tensors:
            d = {"name": t.name, "shape": t.dims, "scheme": Tensor.SCHEMES[t.scheme], "block": t.block,
                 "offset": t.offset, "size": t.size}
            if t.scheme in (16, 17):
                d["group_size"] = t.group_size
            if t.scheme == 16:
                if payloads:
                    d["tiers"] = self.tier_counts(t.name)
                d["refinements"] = [{"level": i + 1, "bits": p[0], "size": p[2]} for i, p in enumerate(t.refine)]
            if t.scheme == 17 and payloads:
                d["stages"] = self.lattice_stages(t.name)
            if t.scheme == 17 and t.n_refine:   # the stages each level adds
                d["refinements"] = [{"level": i + 1, "stages": [_LAT_NAMES[k] for k in kinds[:p[0]]], "size": p[2]}
                                    for i, (p, kinds) in enumerate(zip(t.refine, t.kinds))]
            tensors.append(d)
        return {"format_version": "%d.%d" % (self.version_major, self.version_minor),
                "file_size": self.file_size, "required_features": req, "optional_features": opt,
                "metadata": [{"key": k, "type": self.metadata_types[k][0], "array": self.metadata_types[k][1],
                              "value": v} for k, v in self.metadata.items()],
                "tokenizer": {"kind": self.tokenizer_kind,
                              "files": [{"name": n, "size": len(v)} for n, v in self.tokenizer_files.items()]},
                "block_count": len(self.blocks), "refinement_count": sum(len(b.refinements) for b in self.blocks),
                "tensor_count": len(self.tensors), "blocks": blocks, "tensors": tensors}


_LAT_BITS = {1: 2, 2: 1, 3: 8, 4: 1}   # bits per weight of the LATTICE stage kinds E8, SIGN, INT8, E8S (spec 9.10)
_LAT_NAMES = {1: "e8", 2: "sign", 3: "int8", 4: "e8s"}


def _lattice_size(t, kinds, header=True):
    """The payload size of LATTICE tensor t with these stage kinds (spec 9.10); without
    the header and signs, the size of a refinement part with these stages."""
    rows, nb = t.n_elements // t.cols, t.cols // t.group_size
    return (64 + _pad64(t.cols // 8) if header else 0) + sum(
        _pad64(2 * rows * nb) + _pad64(t.n_elements * _LAT_BITS[k] // 8) for k in kinds)


@functools.lru_cache(maxsize=1)
def _e8_values():
    """4 * the 8 values of each of the 65536 E8 codes, from the rule of spec 9.11."""
    import itertools
    table = sorted((u for u in itertools.product((1, 3, 5, 7), repeat=8)
                    if sum(x * x for x in u) <= 40 or sorted(u) == [1] * 6 + [5, 5] or u == (3,) * 8),
                   key=lambda u: (sum(x * x for x in u), u))
    out = []
    for c in range(65536):
        u, neg = table[c & 0xFF], (c >> 8) & 0x7F
        neg |= (bin(neg).count("1") % 2 != sum(u) // 2 % 2) << 7
        out.append([(-2 if neg >> k & 1 else 2) * u[k] + (-1 if c & 0x8000 else 1) for k in range(8)])
    return out


@functools.lru_cache(maxsize=1)
def _e8s_values():
    """The 8 values of each of the 256 E8S codes, from the rule of spec 9.11."""
    pairs = [(i, j) for i in range(8) for j in range(i + 1, 8)]   # (0,1), (0,2), ..., (6,7)
    out = []
    for c in range(256):
        v = [0.0] * 8
        if c < 112:   # +-1 at a pair of coordinates
            i, j = pairs[c // 4]
            v[i], v[j] = -1.0 if c & 1 else 1.0, -1.0 if c & 2 else 1.0
        elif c < 240:   # +-1/2 everywhere, an even number of them negative
            m = c - 112
            m |= (bin(m).count("1") & 1) << 7
            v = [-0.5 if m >> k & 1 else 0.5 for k in range(8)]
        else:   # +-2 at one coordinate
            v[(c - 240) // 2] = -2.0 if c & 1 else 2.0
        out.append(v)
    return out


def _lattice_values(kind, codes):
    """The code values of one LATTICE stage, row-major (exact in binary32)."""
    if kind == 1:
        table = _e8_values()
        return [x / 4 for c in _le_array("H", codes) for x in table[c]]
    if kind == 4:
        table = _e8s_values()
        return [x for c in codes for x in table[c]]
    if kind == 2:
        return [-1.0 if b >> k & 1 else 1.0 for b in codes for k in range(8)]
    return [float(b - 256 if b > 127 else b) for b in codes]


def _flag_names(value, known):
    return [known[b] if b < len(known) else "bit%d" % b for b in range(64) if value >> b & 1]


def _codes(record, bits):
    """The G codes of a code record, in order (spec 9.4: bit planes)."""
    if bits == 8:
        return list(record)
    mask, out = (1 << bits) - 1, []
    for shift in range(0, 8, bits):
        out += [(x >> shift) & mask for x in record]
    return out


def open(path):   # noqa: A001 - the module's entry point mirrors the builtin
    """Open and validate a .nsq file; raises NsqError for an invalid one."""
    return NsqFile(path)


# ---------------------------------------------------------------------------
# CLI

def _main(argv):
    ap = argparse.ArgumentParser(prog="nsq.py", description="Read .nsq files (spec/nsq-format.md).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("inspect", help="print the file's structure as JSON").add_argument("file")
    sub.add_parser("verify", help="check every rule, block contents included").add_argument("file")
    dump = sub.add_parser("dump", help="write a tensor's f32 values, raw little-endian, to stdout")
    dump.add_argument("file")
    dump.add_argument("tensor")
    dump.add_argument("--refine", type=int, default=0, metavar="N", help="refinement levels to apply")
    dump.add_argument("--rotated", action="store_true", help="a LATTICE tensor's rotated basis W'")
    args = ap.parse_args(argv)
    try:
        with open(args.file) as f:
            if args.cmd == "inspect":
                json.dump(f.describe(), sys.stdout, indent=1)
                print()
            elif args.cmd == "verify":
                f.verify()
                print("%s: ok" % args.file)
            else:
                values = f.dequantize(args.tensor, max(args.refine, 0), args.rotated)
                if sys.byteorder == "big":
                    values.byteswap()
                sys.stdout.buffer.write(values.tobytes())
    except (NsqError, OSError, ValueError) as e:
        print("%s: %s" % (args.file, e), file=sys.stderr)
        return 1
    except KeyError:
        print("%s: no tensor %s" % (args.file, args.tensor), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
