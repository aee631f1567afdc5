#!/usr/bin/python3
"""Tokenizes the corpus splits with Tandem's own (C++) tokenizer into flat token
files for training.

    tools/tokenize_corpus.py [--tokenizer models/tandem-tiny/tokenizer.json]
                             [--corpus data/corpus] [--update-checksums]

For each split, data/corpus/{split}.txt (documents separated by an empty line, see
tools/prepare_corpus.py) becomes data/corpus/{split}.bin: little-endian uint16
token ids, each document as <|begin_of_text|> <document ids> <|end_of_text|>, so
an EOS separates documents and every document starts the way an inference prompt
does (the post-processor prepends BOS). A document's text is its paragraphs
joined by "\\n" (no trailing newline); each is checked to decode back exactly.

The encoder is the C++ tokenizer through the `tandem` Python module (found on
PYTHONPATH or in build*/python). Without it, the `tandem tokenize` CLI is run once
per document (slower: one process start each).

Prints tokens per split and bytes per token (UTF-8 bytes of the documents'
text / their tokens, BOS and EOS not counted). The .bin files are checked against
tools/corpus_tokens.sha256 (warning on mismatch; --update-checksums rewrites it).
"""
import argparse
import glob
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from prepare_corpus import SPLITS, check_or_update  # noqa: E402

TOKEN_CHECKSUMS = os.path.join(ROOT, "tools", "corpus_tokens.sha256")


def import_tandem():
    try:
        import tandem  # noqa: F401
        return tandem
    except ImportError:
        pass
    for d in sorted(glob.glob(os.path.join(ROOT, "build*", "python"))):
        if glob.glob(os.path.join(d, "tandem", "_tandem*.so")):
            sys.path.insert(0, d)
            try:
                import tandem
                return tandem
            except ImportError:
                sys.path.pop(0)
    return None


class ModuleEncoder:
    def __init__(self, tandem, path):
        self.tok = tandem.Tokenizer.load(path)
        self.bos, self.eos = self.tok.bos_id, self.tok.eos_id

    def encode(self, text):
        return list(self.tok.encode(text, add_special_tokens=False))

    def decode(self, ids):
        return self.tok.decode(ids)


class CliEncoder:
    def __init__(self, cli, path, special_ids):
        self.cli, self.path = cli, path
        self.bos, self.eos = special_ids

    def _run(self, args, text):
        r = subprocess.run([self.cli, "tokenize", "--tokenizer", self.path, *args],
                           input=text.encode("utf-8"), stdout=subprocess.PIPE, check=True)
        return r.stdout

    def encode(self, text):
        return [int(x) for x in self._run(["--no-special"], text).split()]

    def decode(self, ids):
        return self._run(["--decode"], " ".join(map(str, ids))).decode("utf-8")


def make_encoder(path, cli):
    tandem = import_tandem()
    if tandem is not None:
        print(f"encoder: tandem module ({os.path.dirname(tandem.__file__)})")
        return ModuleEncoder(tandem, path)
    candidates = [cli] if cli else sorted(glob.glob(os.path.join(ROOT, "build*", "examples", "tandem")))
    candidates = [c for c in candidates if c and os.access(c, os.X_OK)]
    if not candidates:
        sys.exit("tokenize_corpus: neither the `tandem` Python module nor the `tandem` CLI was "
                 "found; build them (cmake --build build --target tandem _tandem)")
    import json
    added = {t["content"]: t["id"] for t in json.load(open(path, encoding="utf-8"))["added_tokens"]}
    print(f"encoder: {candidates[0]} tokenize (one process per document: slow)")
    return CliEncoder(candidates[0], path, (added["<|begin_of_text|>"], added["<|end_of_text|>"]))


def main():
    ap = argparse.ArgumentParser(description="Tokenize data/corpus/*.txt into uint16 .bin files.")
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "models", "tandem-tiny", "tokenizer.json"))
    ap.add_argument("--corpus", default=os.path.join(ROOT, "data", "corpus"))
    ap.add_argument("--cli", default=None, help="path of the tandem CLI (fallback encoder)")
    ap.add_argument("--no-verify", action="store_true", help="skip the per-document decode check")
    ap.add_argument("--update-checksums", action="store_true")
    ap.add_argument("--strict", action="store_true", help="exit non-zero on a checksum mismatch")
    ap.add_argument("--splits", default=",".join(SPLITS),
                    help="comma-separated file stems under --corpus (the out-of-domain text: "
                         "--corpus data/ood --splits devil)")
    args = ap.parse_args()

    enc = make_encoder(args.tokenizer, args.cli)
    if enc.bos < 0 or enc.eos < 0:
        sys.exit("tokenize_corpus: the tokenizer has no BOS or EOS token")
    files = {}
    print(f"{'split':6} {'docs':>5} {'bytes':>10} {'tokens':>9} {'bytes/token':>11} {'seconds':>7}")
    for split in args.splits.split(","):
        t0 = time.time()
        src = os.path.join(args.corpus, f"{split}.txt")
        with open(src, encoding="utf-8", newline="") as f:
            docs = [d.strip("\n") for d in f.read().split("\n\n") if d.strip("\n")]
        ids, n_bytes, n_text_tokens = [], 0, 0
        for d in docs:
            t = enc.encode(d)
            if not args.no_verify and enc.decode(t) != d:
                sys.exit(f"tokenize_corpus: a {split} document does not decode back exactly: "
                         f"{d[:80]!r}...")
            ids.append(enc.bos)
            ids.extend(t)
            ids.append(enc.eos)
            n_bytes += len(d.encode("utf-8"))
            n_text_tokens += len(t)
        arr = np.asarray(ids, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 0xFFFF):
            sys.exit("tokenize_corpus: token id does not fit in uint16")
        out = os.path.join(args.corpus, f"{split}.bin")
        arr.astype("<u2").tofile(out)
        files[os.path.relpath(out, ROOT)] = out
        print(f"{split:6} {len(docs):5d} {n_bytes:10d} {arr.size:9d} "
              f"{n_bytes / max(n_text_tokens, 1):11.3f} {time.time() - t0:7.1f}")
    print(f"wrote {', '.join(os.path.relpath(p, ROOT) for p in files.values())} "
          f"(uint16 LE; <|begin_of_text|> doc <|end_of_text|> per document)")
    if os.path.abspath(args.corpus) == os.path.abspath(os.path.join(ROOT, "data", "corpus")) \
            and args.splits == ",".join(SPLITS):
        check_or_update(files, TOKEN_CHECKSUMS, args.update_checksums, args.strict,
                        "the tokenized corpus files", "tools/tokenize_corpus.py")


if __name__ == "__main__":
    main()
