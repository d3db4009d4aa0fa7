#!/usr/bin/env python3
"""Writes the seeds of fuzz_tokenizer and fuzz_tokenize_text to
fuzz/corpus/<target>/ (run from the repository root); input layouts: see the
targets. fuzz_tokenizer's are the fixtures' tokenizers cut down to their first
few hundred ids, and small hand-made ones that reach every supported pipeline
component; fuzz_tokenize_text's are texts for each of its three tokenizers.
Files named regress-* are not written here: they are inputs that found bugs."""
import json
import os

OUT = "fuzz/corpus/fuzz_tokenizer"
OUT_TEXT = "fuzz/corpus/fuzz_tokenize_text"
TEXT = "Hello wörld, <s>it's 2024!\n  \tcafé 日本 \u2581x <|endoftext|>"


def dump(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def write(name, *parts):
    """parts: bytes or objects (JSON); joined with NUL bytes."""
    data = b"\0".join(p if isinstance(p, bytes) else p.encode() if isinstance(p, str) else dump(p) for p in parts)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def trim_model(model, keep):
    """The vocabulary's ids below keep, and the merges among them."""
    vocab = {k: v for k, v in model["vocab"].items() if v < keep}
    merges = []
    for m in model.get("merges", []):
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(m)
    return dict(model, vocab=vocab, merges=merges)


def trimmed(path, keep):
    tok = json.load(open(path))
    tok["model"] = trim_model(tok["model"], keep)
    return tok


def bpe(vocab, merges=(), **opts):
    return dict({"type": "BPE", "vocab": vocab, "merges": list(merges)}, **opts)


def byte_vocab():
    """GPT-2's byte-to-character map as a 256-token vocabulary."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): i for i, c in enumerate(cs)}


def main():
    os.makedirs(OUT, exist_ok=True)
    # the fixtures, cut down
    write("tiny-gpt2", trimmed("fixtures/models/tiny-gpt2/tokenizer.json", 400), TEXT)
    write("tiny-llama", trimmed("fixtures/models/tiny-llama/tokenizer.json", 500),
          open("fixtures/models/tiny-llama/tokenizer_config.json", "rb").read(), TEXT)
    vocab = {k: v for k, v in json.load(open("fixtures/tokenizers/gpt2/vocab.json")).items() if v < 600}
    merges = ["#version: 0.2"]
    for line in open("fixtures/tokenizers/gpt2/merges.txt", encoding="utf-8").read().split("\n")[1:]:
        a, _, b = line.partition(" ")
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(line)
    cfg = {"add_bos_token": True, "bos_token": "<|endoftext|>",
           "added_tokens_decoder": {"600": {"content": "<|endoftext|>", "special": True}}}
    write("gpt2-files", vocab, "\n".join(merges) + "\n", cfg, TEXT)

    # byte-level BPE
    bv = byte_vocab()
    g = {k: v for k, v in bv.items()}
    for i, (a, b) in enumerate([("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("l", "l"), ("Ġ", "w")]):
        g[a + b] = 256 + i
    write("byte-level", {"model": bpe(g, [f"{a} {b}" for a, b in [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("l", "l"), ("Ġ", "w")]]),
                         "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True},
                         "decoder": {"type": "ByteLevel"},
                         "post_processor": {"type": "ByteLevel", "trim_offsets": True},
                         "added_tokens": [{"id": 300, "content": "<|endoftext|>", "special": True}]}, TEXT)

    # SentencePiece-style with byte fallback, Llama's old normalizer
    sp = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        sp["<0x%02X>" % b] = 3 + b
    for w in ["▁", "e", "l", "o", "H", "▁H", "ll", "llo", "▁Hello", "a", "b", "ab"]:
        sp.setdefault(w, len(sp))
    sp_merges = [["▁", "H"], ["l", "l"], ["ll", "o"], ["a", "b"]]
    write("sentencepiece", {
        "added_tokens": [{"id": i, "content": c, "special": True, "normalized": False} for c, i in
                         [("<unk>", 0), ("<s>", 1), ("</s>", 2)]],
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                                                           {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                                                    {"Sequence": {"id": "A", "type_id": 0}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
            {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": bpe(sp, sp_merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True)}, TEXT)

    # Metaspace pre-tokenizer and decoder, each prepend scheme
    for scheme, split in [("first", True), ("always", False), ("never", True)]:
        write(f"metaspace-{scheme}", {
            "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": split},
            "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme},
            "model": bpe(sp, sp_merges, byte_fallback=True)}, TEXT)

    small = {c: i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz .,!'0123456789")}
    small.update({"ab": 100, "abc": 101, "##b": 102, "b</w>": 103, "[UNK]": 104})
    # normalizers
    write("normalizers", {"normalizer": {"type": "Sequence", "normalizers": [
        {"type": "NFKD"}, {"type": "NFC"}, {"type": "NFKC"}, {"type": "NFD"}, {"type": "Lowercase"},
        {"type": "Strip", "strip_left": True, "strip_right": True},
        {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
        {"type": "Precompiled", "precompiled_charsmap": None}]},
        "pre_tokenizer": {"type": "WhitespaceSplit"}, "model": bpe(small, ["a b", "ab c"], unk_token="[UNK]")},
        "  ÀB c\u00bd  D\u0301  ")
    # pre-tokenizers: Split behaviors, built-ins
    for beh in ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"]:
        write(f"split-{beh}", {"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "[0-9]+|\\s"}, "behavior": beh,
                                                  "invert": beh == "Contiguous"},
                               "model": bpe(small, ["a b"])}, "ab12 cd  3e")
    write("split-string", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": ", "}, "behavior": "Removed"},
        {"type": "CharDelimiterSplit", "delimiter": "."}, {"type": "Digits", "individual_digits": True},
        {"type": "Punctuation", "behavior": "Isolated"}]}, "model": bpe(small, ["a b"])}, "ab, c.d12!e")
    write("bert", {"normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "BertPreTokenizer"},
                   "post_processor": {"type": "BertProcessing", "cls": ["a", 0], "sep": ["b", 1]},
                   "decoder": {"type": "BPEDecoder", "suffix": "</w>"},
                   "model": bpe(small, ["a b"], continuing_subword_prefix="##", end_of_word_suffix="</w>",
                                unk_token="[UNK]")}, "Ab, b! 12")
    write("whitespace", {"pre_tokenizer": {"type": "Whitespace"},
                         "post_processor": {"type": "Sequence", "processors": [
                             {"type": "ByteLevel"}, {"type": "RobertaProcessing", "cls": ["c", 2], "sep": ["d", 3]}]},
                         "model": bpe(small, ["a b", "ab c"], ignore_merges=True)}, "abc ab!? x")
    # added tokens and their options, tokenizer_config.json
    write("added", {"added_tokens": [
        {"id": 200, "content": "<s>", "special": True, "lstrip": True, "rstrip": True},
        {"id": 201, "content": "ab", "single_word": True, "normalized": True},
        {"id": 202, "content": "[X]", "special": False, "normalized": False},
        {"id": 203, "content": "Ab", "normalized": True}],
        "normalizer": {"type": "Lowercase"}, "model": bpe(small, ["a b"])},
        {"add_bos_token": True, "add_eos_token": True, "bos_token": {"content": "<s>"}, "eos_token": "[X]"},
        "ab xab  <s>  [X]Ab")
    write("decoders", {"decoder": {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"Regex": "a+"}, "content": "A"}, {"type": "ByteFallback"},
        {"type": "Fuse"}, {"type": "Strip", "content": "b", "start": 2, "stop": 1}]},
        "model": bpe(small, ["a b"])}, "bbaab aaa bb")
    # at the limits: a text whose normalizer doubles, a slow regex, a post-processor of 3 ids
    write("limits", {"normalizer": {"type": "Sequence", "normalizers": [
        {"type": "Replace", "pattern": {"String": "a"}, "content": "aa"}] * 4},
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(a|aa)+$"}, "behavior": "Isolated"},
        "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "x"}}, {"Sequence": {"id": "A"}},
                                                                    {"SpecialToken": {"id": "x"}}],
                           "special_tokens": {"x": {"id": "x", "ids": [0, 1, 2]}}},
        "model": bpe(small, ["a b"])}, "a" * 40 + "!")


def texts():
    """A selection of the reference strings, and texts at the edges."""
    os.makedirs(OUT_TEXT, exist_ok=True)
    strings = json.load(open("fixtures/tokenizers/vectors.json"))["strings"]
    picked = [s for s in strings if len(s.encode()) < 2000][::12]
    edges = [b"", b" leading space", b"\xff\xfe broken \xc3( utf-8 \xe2\x82", "<s>x</s> <unk> a<s> b".encode(),
             "\u2581x \u2581\u2581".encode(), b" " * 3000 + b"x", b"\n" * 500, "A" * 3000, "\U0001F642\u200d" * 200,
             "<|endoftext|>Hello<|endoftext|>".encode(), b"a\0b\0"]
    edges = [e.encode() if isinstance(e, str) else e for e in edges]
    for i, t in enumerate([x.encode() for x in picked] + edges):
        for k in range(3):
            if (i + k) % 2 and i < len(picked):
                continue  # each reference string for some of the tokenizers
            with open(os.path.join(OUT_TEXT, "text-%02d-%d" % (i, k)), "wb") as f:
                f.write(bytes([k]) + t)


if __name__ == "__main__":
    main()
    texts()
