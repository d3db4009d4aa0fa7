#!/usr/bin/python3
"""Checks nsq-run against a model's PyTorch reference outputs (refs.json).

  check_refs.py NSQ_RUN MODEL.nsq REF_DIR [--threads N]

For each of the 8 prompts: the tokenized prompt ids (via --dump-ids of the
text prompt, compared with the reference ids), the last-position logits
(max |diff| <= 1e-3 * max |logit|), the 32 greedy ids, and the streamed text.
Then the 64-position logits of refs' `long` sequence. Exit 0 when all pass.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

TOL = 1e-3


def run(cmd):
    p = subprocess.run(cmd, capture_output=True)
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), p.returncode, p.stderr.decode(errors="replace")))
    return p.stdout


def close(got, want):
    scale = np.abs(want).max()
    diff = np.abs(got - want).max()
    return diff <= TOL * scale, diff / scale


def main():
    nsq_run, model, ref_dir = sys.argv[1:4]
    extra = sys.argv[4:]
    refs = json.load(open(os.path.join(ref_dir, "refs.json")))
    failures = 0
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "logits.f32")
        for k, p in enumerate(refs["prompts"]):
            ids = ",".join(map(str, p["ids"]))
            out = run([nsq_run, model, "--prompt-ids", ids, "-n", "32", "--ignore-eos", "--print-ids",
                       "--dump-logits", dump] + extra)
            got_ids = list(map(int, out.split()))
            logits = np.fromfile(dump, dtype="<f4").reshape(len(p["ids"]), -1)
            ok, rel = close(logits[-1], np.array(p["last_logits"], dtype=np.float32))
            worst = max(worst, rel)
            if not ok:
                print("prompt %d: last logits differ: max diff %.3g of max |logit|" % (k, rel))
                failures += 1
            if got_ids != p["greedy_ids"]:
                print("prompt %d: greedy ids differ:\n  got  %s\n  want %s" % (k, got_ids, p["greedy_ids"]))
                failures += 1
            text = run([nsq_run, model, p["prompt"], "-n", "32", "--ignore-eos", "--dump-logits", dump] + extra)
            text = text.decode("utf-8")
            n_prompt = os.path.getsize(dump) // 4 // logits.shape[1]
            if n_prompt != len(p["ids"]):
                print("prompt %d: the text prompt tokenized to %d ids, the reference has %d" % (k, n_prompt, len(p["ids"])))
                failures += 1
            # a decoder that strips the first space (SentencePiece) shows the continuation without it
            if text != p["greedy_text"] and text != " " + p["greedy_text"]:
                print("prompt %d: text differs:\n  got  %r\n  want %r" % (k, text, p["greedy_text"]))
                failures += 1
        ids = ",".join(map(str, refs["long"]["ids"]))
        run([nsq_run, model, "--prompt-ids", ids, "-n", "0", "--dump-logits", dump] + extra)
        got = np.fromfile(dump, dtype="<f4")
        want = np.fromfile(os.path.join(ref_dir, refs["long"]["logits_file"]), dtype="<f4")
        if got.shape != want.shape:
            print("long: %d logits, want %d" % (got.size, want.size))
            failures += 1
        else:
            ok, rel = close(got, want)
            worst = max(worst, rel)
            if not ok:
                print("long: logits differ: max diff %.3g of max |logit|" % rel)
                failures += 1
    print("%s: %d prompts + long sequence, worst logit diff %.3g of max |logit|, %d failures"
          % (os.path.basename(ref_dir), len(refs["prompts"]), worst, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
