#!/usr/bin/python3
"""Trains Tandem's byte-level BPE tokenizer and writes a standard Hugging Face
tokenizer.json.

    tools/train_tokenizer.py [--input data/corpus/train.txt]
                             [--out models/tandem-tiny/tokenizer.json] [--vocab-size 8192]

Pre-tokenization is exactly Llama 3's: a Split with LLAMA3_PATTERN (behaviour
Isolated) followed by ByteLevel (add_prefix_space false, use_regex false). The
pattern is run here with Python's `re` after translating \\p{L}, \\p{N} and \\s into
explicit code point classes built from unicodedata (the same Unicode version as
the C++ tokenizer's tables, tools/gen_unicode_tables.py) and White_Space; `re`
backtracks leftmost-first like Oniguruma, so the words counted here are the
pre-tokens the C++ (and HF) tokenizer produces.

Training: the input is split into documents at empty lines (the format of
tools/prepare_corpus.py) and each document is pre-tokenized on its own, as
tools/tokenize_corpus.py encodes them. From the word-frequency table, BPE merges
the most frequent adjacent pair (ties: the lexicographically smallest pair of byte
strings) until the vocabulary has vocab_size - 3 tokens, with incremental pair-count
updates. A merge whose result already exists as a token (reached by another path)
is kept, as HF's trainer does, so merges >= vocab - 256. Ids: 0-255 the single
bytes (id = byte value), then merged tokens in order of creation, then the special
tokens <|begin_of_text|>, <|end_of_text|>, <|pad|>. The post-processor prepends
<|begin_of_text|>.
"""
import argparse
import collections
import heapq
import json
import os
import re
import sys
import time
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIAL_TOKENS = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"]
BOS, EOS, PAD = SPECIAL_TOKENS

# Unicode White_Space (what Oniguruma's and the C++ engine's \s mean; Python's \s
# also has U+001C..U+001F).
WHITE_SPACE = [(0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0),
               (0x1680, 0x1680), (0x2000, 0x200A), (0x2028, 0x2029),
               (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000)]


def _class_body(ranges):
    def esc(cp):
        return "\\U%08x" % cp
    return "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges)


def _category_ranges(major):
    ranges, start = [], None
    for cp in range(0x110000):
        inside = unicodedata.category(chr(cp))[0] == major
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            ranges.append((start, cp - 1))
            start = None
    if start is not None:
        ranges.append((start, 0x10FFFF))
    return ranges


_COMPILED = None


def pretokenizer_regex():
    """LLAMA3_PATTERN as a Python `re` pattern with the same semantics."""
    global _COMPILED
    if _COMPILED is None:
        letters = _class_body(_category_ranges("L"))
        numbers = _class_body(_category_ranges("N"))
        space = _class_body(WHITE_SPACE)
        p = LLAMA3_PATTERN
        p = p.replace(r"[^\r\n\p{L}\p{N}]", f"[^\\r\\n{letters}{numbers}]")
        p = p.replace(r"[^\s\p{L}\p{N}]", f"[^{space}{letters}{numbers}]")
        p = p.replace(r"\p{L}", f"[{letters}]").replace(r"\p{N}", f"[{numbers}]")
        p = p.replace(r"(?!\S)", f"(?![^{space}])").replace(r"\s", f"[{space}]")
        assert "\\p" not in p and "\\s" not in p and "\\S" not in p
        _COMPILED = re.compile(p)
    return _COMPILED


def pretokenize(text):
    """The pre-tokens (str) of `text`, as the tokenizer.json's Split produces them."""
    return pretokenizer_regex().findall(text)


def bytes_to_unicode():
    """GPT-2's byte -> printable character table (HF ByteLevel)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def read_documents(path):
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    return [d.strip("\n") for d in text.split("\n\n") if d.strip("\n")]


def count_words(docs):
    counts = collections.Counter()
    for d in docs:
        counts.update(pretokenize(d))
    return counts


def train_bpe(word_counts, n_tokens, log_every=1000):
    """Returns (tokens: list[bytes] with ids as indices, merges: list[(id_a, id_b)])."""
    tokens = [bytes([b]) for b in range(256)]
    token_id = {t: i for i, t in enumerate(tokens)}
    words = []   # list of lists of ids
    freqs = []
    for w, c in word_counts.items():
        words.append(list(w.encode("utf-8")))
        freqs.append(c)

    pair_count = collections.defaultdict(int)
    pair_where = collections.defaultdict(set)
    for wi, (ids, c) in enumerate(zip(words, freqs)):
        for a, b in zip(ids, ids[1:]):
            pair_count[(a, b)] += c
            pair_where[(a, b)].add(wi)

    def key(pair):
        return (-pair_count[pair], tokens[pair[0]], tokens[pair[1]], pair)

    heap = [key(p) for p in pair_count]
    heapq.heapify(heap)
    merges = []
    t0 = time.time()
    while len(tokens) < n_tokens and heap:
        negc, _, _, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -negc or negc == 0:
            continue  # stale entry
        a, b = pair
        merged = tokens[a] + tokens[b]
        new_id = token_id.get(merged)
        if new_id is None:
            new_id = len(tokens)
            tokens.append(merged)
            token_id[merged] = new_id
        merges.append(pair)
        touched = set()
        for wi in sorted(pair_where.pop(pair)):
            ids, c = words[wi], freqs[wi]
            # Remove this word's pairs, merge left to right, add the new pairs.
            for p in zip(ids, ids[1:]):
                pair_count[p] -= c
                touched.add(p)
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            words[wi] = out
            for p in zip(out, out[1:]):
                pair_count[p] += c
                pair_where[p].add(wi)
                touched.add(p)
        pair_count.pop(pair, None)
        for p in touched:
            if p == pair:
                continue
            cnt = pair_count.get(p, 0)
            if cnt > 0:
                heapq.heappush(heap, key(p))
            else:
                pair_count.pop(p, None)
                pair_where.pop(p, None)
        if log_every and len(merges) % log_every == 0:
            print(f"  {len(merges)} merges, vocab {len(tokens)}, last {merged!r} "
                  f"(count {-negc}), {time.time() - t0:.1f}s", file=sys.stderr)
    return tokens, merges


def build_tokenizer_json(tokens, merges):
    b2u = bytes_to_unicode()

    def s(t):
        return "".join(b2u[x] for x in t)

    vocab = {s(t): i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens)
    n = len(tokens)
    special_ids = {tok: n + i for i, tok in enumerate(SPECIAL_TOKENS)}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": special_ids[t], "content": t, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True}
            for t in SPECIAL_TOKENS
        ],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN},
                 "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                 "use_regex": False},
            ],
        },
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": BOS, "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": BOS, "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": BOS, "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {BOS: {"id": BOS, "ids": [special_ids[BOS]], "tokens": [BOS]}},
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            # "a b" strings (byte-level tokens never contain a space): readable by
            # every tokenizers version, old and new.
            "merges": [f"{s(tokens[a])} {s(tokens[b])}" for a, b in merges],
        },
    }


class ReferenceEncoder:
    """A slow pure-Python encoder for a tokenizer.json written by this script
    (pre-tokenize, then apply the merges lowest rank first). Used by the tests to
    check that the C++ tokenizer pre-tokenizes the way training did."""

    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            tj = json.load(f)
        self.vocab = tj["model"]["vocab"]
        self.ranks = {tuple(m.split(" ")): i for i, m in enumerate(tj["model"]["merges"])}
        self.b2u = bytes_to_unicode()
        self.bos = next(t["id"] for t in tj["added_tokens"] if t["content"] == BOS)

    def _bpe(self, word):
        syms = [self.b2u[b] for b in word.encode("utf-8")]
        none = len(self.ranks)
        while len(syms) > 1:
            rank, i = min((self.ranks.get(p, none), i) for i, p in enumerate(zip(syms, syms[1:])))
            if rank == none:
                break
            syms[i:i + 2] = [syms[i] + syms[i + 1]]
        return [self.vocab[s] for s in syms]

    def encode(self, text, add_special_tokens=True):
        ids = [self.bos] if add_special_tokens else []
        for w in pretokenize(text):
            ids.extend(self._bpe(w))
        return ids


def main():
    ap = argparse.ArgumentParser(description="Train Tandem's byte-level BPE tokenizer.")
    ap.add_argument("--input", default=os.path.join(ROOT, "data", "corpus", "train.txt"))
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "tandem-tiny", "tokenizer.json"))
    ap.add_argument("--vocab-size", type=int, default=8192,
                    help="total, including the 3 special tokens (default 8192)")
    args = ap.parse_args()

    t0 = time.time()
    docs = read_documents(args.input)
    counts = count_words(docs)
    t1 = time.time()
    print(f"{len(docs)} documents, {sum(counts.values())} pre-tokens, {len(counts)} distinct; "
          f"pre-tokenized in {t1 - t0:.1f}s", file=sys.stderr)
    tokens, merges = train_bpe(counts, args.vocab_size - len(SPECIAL_TOKENS))
    t2 = time.time()
    if len(tokens) != args.vocab_size - len(SPECIAL_TOKENS):
        sys.exit(f"train_tokenizer: ran out of pairs at {len(tokens)} tokens")
    tj = build_tokenizer_json(tokens, merges)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, indent=2)
        f.write("\n")
    # tokenizer_config.json beside it names BOS/EOS/PAD for HF transformers and for
    # Tandem's loader.
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
    }
    config_path = os.path.join(os.path.dirname(os.path.abspath(args.out)), "tokenizer_config.json")
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}: vocab {len(tokens) + len(SPECIAL_TOKENS)} "
          f"(256 bytes + {len(tokens) - 256} merged + {len(SPECIAL_TOKENS)} special), "
          f"{len(merges)} merges; BPE {t2 - t1:.1f}s, total {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
