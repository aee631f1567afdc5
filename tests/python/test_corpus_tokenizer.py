"""The shipped tokenizer (models/tandem-tiny/tokenizer.json) on the corpus.

* Always (committed data): every line, every sentence and the whole of
  tests/data/corpus/test_slice.txt (King James Bible chapters from the test split)
  round-trip exactly through the C++ tokenizer, and the C++ ids equal those of the
  trainer's own pure-Python encoder, so inference pre-tokenizes as training did.
* With the corpus built (tools/prepare_corpus.py): every line of
  data/corpus/test.txt round-trips exactly; with tools/tokenize_corpus.py run, the
  .bin files hold one BOS ... EOS run per document.
"""
import os
import re
import sys

import numpy as np
import pytest

tandem = pytest.importorskip("tandem", reason="build the module and set PYTHONPATH=build/python")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKENIZER = os.path.join(ROOT, "models", "tandem-tiny", "tokenizer.json")
SLICE = os.path.join(ROOT, "tests", "data", "corpus", "test_slice.txt")
CORPUS = os.environ.get("TANDEM_CORPUS_DIR", os.path.join(ROOT, "data", "corpus"))

sys.path.insert(0, os.path.join(ROOT, "tools"))
import train_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    if not os.path.exists(TOKENIZER):
        pytest.skip(f"{TOKENIZER} missing (tools/train_tokenizer.py writes it)")
    return tandem.Tokenizer.load(TOKENIZER)


def read(path):
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def slice_lines():
    return [line for line in read(SLICE).split("\n") if line]


def slice_samples():
    """Lines plus their sentences and clauses: a few hundred strings."""
    out = []
    for line in slice_lines():
        out.append(line)
        out.extend(s for s in re.split(r"(?<=[.;:?!]) ", line) if s)
    return out


def test_vocabulary_and_specials(tok):
    assert tok.vocab_size == 8192
    assert tok.bos_id == 8189 and tok.eos_id == 8190
    ids = list(tok.encode("In the beginning"))
    assert ids[0] == tok.bos_id
    assert list(tok.encode("In the beginning", add_special_tokens=False)) == ids[1:]
    assert tok.decode(ids[1:]) == "In the beginning"


def test_slice_round_trips(tok):
    samples = slice_samples()
    assert len(samples) >= 200
    for s in samples + [read(SLICE)]:
        ids = list(tok.encode(s, add_special_tokens=False))
        assert max(ids) < 8189
        assert tok.decode(ids) == s


def test_slice_ids_match_trainer_reference(tok):
    ref = train_tokenizer.ReferenceEncoder(TOKENIZER)
    for s in slice_samples():
        assert list(tok.encode(s)) == ref.encode(s), s[:80]


def test_slice_compresses(tok):
    text = read(SLICE)
    n = len(tok.encode(text, add_special_tokens=False))
    assert len(text.encode("utf-8")) / n > 3.5  # ~4.4 bytes/token on the KJV


def test_full_test_split_round_trips(tok):
    path = os.path.join(CORPUS, "test.txt")
    if not os.path.exists(path):
        pytest.skip(f"{path} missing: run tools/prepare_corpus.py")
    lines = read(path).split("\n")
    assert len(lines) > 1000
    bad = [line for line in lines
           if tok.decode(list(tok.encode(line, add_special_tokens=False))) != line]
    assert not bad, f"{len(bad)} lines do not round-trip, e.g. {bad[0][:80]!r}"


@pytest.mark.parametrize("split", ["valid", "test"])
def test_bin_files_hold_one_run_per_document(tok, split):
    txt, binf = os.path.join(CORPUS, f"{split}.txt"), os.path.join(CORPUS, f"{split}.bin")
    if not (os.path.exists(txt) and os.path.exists(binf)):
        pytest.skip(f"{binf} missing: run tools/prepare_corpus.py and tools/tokenize_corpus.py")
    if os.path.getmtime(binf) < os.path.getmtime(txt):
        pytest.skip(f"{binf} is older than {txt}: rerun tools/tokenize_corpus.py")
    docs = [d.strip("\n") for d in read(txt).split("\n\n") if d.strip("\n")]
    ids = np.fromfile(binf, dtype="<u2").astype(np.int64)
    starts = np.flatnonzero(ids == tok.bos_id)
    ends = np.flatnonzero(ids == tok.eos_id)
    assert len(starts) == len(ends) == len(docs)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    for i in (0, len(docs) // 2, len(docs) - 1):
        assert tok.decode(ids[starts[i] + 1:ends[i]].tolist()) == docs[i]
