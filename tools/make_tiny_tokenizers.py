#!/usr/bin/env python3
"""Writes the two tiny self-made tokenizer.json files committed under
tests/data/tokenizer/ so the tokenizer tests always have data, offline:

  tiny_bytelevel/tokenizer.json  GPT-2 style byte-level BPE: ByteLevel
      pre-tokenizer (add_prefix_space, use_regex), "a b" string merges, added
      tokens with lstrip/rstrip/single_word, Sequence[ByteLevel,
      TemplateProcessing] post-processor (BOS ... EOS).
  tiny_sp/tokenizer.json  SentencePiece-style BPE (Mistral-like): Metaspace
      pre-tokenizer (prepend_scheme "first"), byte_fallback, unk + fuse_unk,
      ["a", "b"] array merges, decoder Sequence[Replace, ByteFallback, Fuse,
      Strip], BOS template.

  tiny_metaspace/tokenizer.json  older SentencePiece-style conversion: Metaspace
      pre-tokenizer (prepend_scheme "always", split), Metaspace decoder, no
      byte_fallback (unknown characters become <unk>, not fused), no
      post-processor.

The merges are learned by a naive BPE on a small built-in corpus; only their
consistency matters. Golden ids come from tools/tokenizer_golden.js.
"""
import collections
import json
import os
import re

CORPUS = """The quick brown fox jumps over the lazy dog. The dog sleeps in the sun.
Hello world! Hello there, how are you? I'm fine, thanks. We'll see them there.
Tokenizers split text into tokens; tokens become ids and ids become text again.
In 2024 there were 12345 tests and 678 of them passed the first time.
the the the and and and of of to to in in is is it it that that this this"""


def learn_merges(words, n_merges):
    """words: list of symbol tuples. Returns merges as (a, b) in rank order."""
    counts = collections.Counter(words)
    merges = []
    for _ in range(n_merges):
        pairs = collections.Counter()
        for w, c in counts.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        new_counts = collections.Counter()
        for w, c in counts.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_counts[tuple(out)] += c
        counts = new_counts
    return merges


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def added(id_, content, special, lstrip=False, rstrip=False, single_word=False,
          normalized=False):
    return {"id": id_, "content": content, "single_word": single_word, "lstrip": lstrip,
            "rstrip": rstrip, "normalized": normalized, "special": special}


def byte_level():
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    words = []
    for w in re.findall(r" ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+", " " + CORPUS):
        words.append(tuple(b2u[b] for b in w.encode("utf-8")))
    merges = learn_merges(words, 60)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    n = len(vocab)
    added_tokens = [
        added(n, "<|bos|>", True), added(n + 1, "<|eos|>", True),
        added(n + 2, "<tool>", False, single_word=True),
        added(n + 3, "<mark>", False, lstrip=True, rstrip=True),
        added(n + 4, "</mark>", True),
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_tokens,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
             "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|bos|>", "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}},
                        {"SpecialToken": {"id": "<|eos|>", "type_id": 0}}],
             "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                      {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {
                 "<|bos|>": {"id": "<|bos|>", "ids": [n], "tokens": ["<|bos|>"]},
                 "<|eos|>": {"id": "<|eos|>", "ids": [n + 1], "tokens": ["<|eos|>"]}}}]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": ["%s %s" % m for m in merges]},
    }


def sentencepiece_style():
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    text = CORPUS.replace("\n", " ")
    for ch in sorted(set(text.replace(" ", "▁")) | {"▁"}):
        vocab.setdefault(ch, len(vocab))
    words = [tuple("▁" + w) for w in text.split(" ") if w]
    merges = learn_merges(words, 60)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added(0, "<unk>", True), added(1, "<s>", True), added(2, "</s>", True)],
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first",
                          "split": False},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": [list(m) for m in merges]},
    }


def metaspace_variant():
    tok = sentencepiece_style()
    tok["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always",
                            "split": True}
    tok["decoder"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always",
                      "split": True}
    tok["post_processor"] = None
    tok["model"]["byte_fallback"] = False
    tok["model"]["fuse_unk"] = False
    tok["model"]["merges"] = ["%s %s" % tuple(m) for m in tok["model"]["merges"]]
    return tok


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = os.path.join(root, "tests", "data", "tokenizer")
    for name, tok in (("tiny_bytelevel", byte_level()), ("tiny_sp", sentencepiece_style()),
                      ("tiny_metaspace", metaspace_variant())):
        os.makedirs(os.path.join(out, name), exist_ok=True)
        with open(os.path.join(out, name, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tok, f, ensure_ascii=False, indent=1)
        print("wrote", name, len(tok["model"]["vocab"]), "tokens",
              len(tok["model"]["merges"]), "merges")


if __name__ == "__main__":
    main()
