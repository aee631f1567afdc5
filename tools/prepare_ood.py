#!/usr/bin/python3
"""Builds the out-of-domain evaluation text: Ambrose Bierce's "The Devil's
Dictionary" (1911, public domain), from Debian's package dict-devil.

    tools/prepare_ood.py [--out data/ood]

It is never trained on: the shipped model's corpus is the King James Bible and
the Brown corpus (tools/prepare_corpus.py). The card reports edge share and
agreement on it beside the in-domain test split (issue 13). Fortunes and the
Jargon File stay out of both, as earlier out-of-domain checks used them.

Source: /usr/share/dictd/devil.dict.dz, sliced by /usr/share/dictd/devil.index
(dictd's format: headword, base64 offset, base64 length). The 00-database-*
entries (the Internet Wiretap header and dictfmt metadata) are dropped.

Cleaning: an entry's lines are joined with single spaces (the verse quotations
lose their line breaks) into one paragraph; entries are grouped into one
document per initial letter, in dictionary order. Output has the corpus format
(tools/prepare_corpus.py): one paragraph per line, documents separated by an
empty line; data/ood/devil.txt, then tools/tokenize_corpus.py --corpus data/ood
--splits devil makes data/ood/devil.bin. Checked against tools/ood.sha256.
"""
import argparse
import gzip
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from prepare_corpus import check_or_update  # noqa: E402

DICT = "/usr/share/dictd/devil.dict.dz"
INDEX = "/usr/share/dictd/devil.index"
CHECKSUMS = os.path.join(ROOT, "tools", "ood.sha256")
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64(s):
    v = 0
    for c in s:
        v = v * 64 + B64.index(c)
    return v


def entries():
    data = gzip.open(DICT).read()
    out = []
    with open(INDEX, encoding="utf-8") as f:
        for line in f:
            head, off, size = line.rstrip("\n").split("\t")
            if head.startswith("00database"):
                continue
            off, size = b64(off), b64(size)
            text = data[off:off + size].decode("utf-8")
            para = " ".join(text.split())
            if para:
                out.append((off, para))
    out.sort()  # dictionary order (the index is sorted by folded headword)
    return [p for _, p in out]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "data", "ood"))
    ap.add_argument("--update-checksums", action="store_true")
    args = ap.parse_args()
    if not os.path.exists(DICT):
        sys.exit("prepare_ood: install Debian's dict-devil (tools/install_training_deps.sh)")
    docs = {}
    for p in entries():
        key = p[0].upper() if p[0].isalpha() else "#"
        docs.setdefault(key, []).append(p)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "devil.txt")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n\n".join("\n".join(ps) for _, ps in sorted(docs.items())) + "\n")
    n_par = sum(len(v) for v in docs.values())
    n_words = sum(len(p.split()) for v in docs.values() for p in v)
    print(f"wrote {os.path.relpath(path, ROOT)}: {len(docs)} documents, {n_par} entries, "
          f"{n_words} words, {os.path.getsize(path)} bytes")
    check_or_update({"data/ood/devil.txt": path}, CHECKSUMS, args.update_checksums, False,
                    "the out-of-domain text", "tools/prepare_ood.py")


if __name__ == "__main__":
    main()
