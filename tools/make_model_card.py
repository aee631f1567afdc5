#!/usr/bin/python3
"""Writes models/<name>/MODEL_CARD.md and card.json from measurements.

Every number in the card is produced here by running the `tandem` CLI on the
model and the corpus splits (tools/prepare_corpus.py, tools/tokenize_corpus.py);
nothing is typed in. card.json keeps the figures that tests check (e.g. the
perplexity of tests/data/corpus/test_slice.txt).

usage: tools/make_model_card.py [--model models/tandem-tiny] [--tandem build/examples/tandem]
                                [--corpus data/corpus] [--train-log data/runs/train.log]
                                [--exits-log data/runs/train_exits.log] [--split 4]
                                [--ood data/ood/devil.bin]

The out-of-domain text (--ood) comes from tools/prepare_ood.py and
tools/tokenize_corpus.py --corpus data/ood --splits devil; the card reports
the model on it beside the in-domain test split.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLICE = os.path.join("tests", "data", "corpus", "test_slice.txt")
SEQ_LEN = 256
PROMPTS = ["And it came to pass", "The committee said that", "In the beginning"]


def run(cmd):
    print("+", " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout


def last_json(text):
    return json.loads(text.strip().splitlines()[-1])


def file_mb(path):
    return os.path.getsize(os.path.join(ROOT, path)) / 1e6


def training_summary(log_path):
    """Final line of `tandem train` and the validation history."""
    if not log_path or not os.path.exists(os.path.join(ROOT, log_path)):
        return None, []
    lines = open(os.path.join(ROOT, log_path)).read().splitlines()
    final = next((l for l in reversed(lines) if l.startswith("trained ")), None)
    valid = [l.strip() for l in lines if l.strip().startswith("valid loss")]
    return final, valid


def compute_path(log_path):
    """The `compute: ...` line `tandem train` / `train-exits` print (bf16 or fp32, and why)."""
    if not log_path or not os.path.exists(os.path.join(ROOT, log_path)):
        return "n/a"
    for line in open(os.path.join(ROOT, log_path)).read().splitlines():
        if line.startswith("compute: "):
            return line[len("compute: "):]
    return "fp32 (the log predates the compute line)"


def best_edge_share(calibration_text):
    """Highest 'edge share X%' over the measures of a `tandem calibrate` table."""
    shares = [float(x) for x in re.findall(r"edge share ([0-9.]+)%", calibration_text)]
    return max(shares) if shares else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/tandem-tiny")
    ap.add_argument("--tandem", default="build/examples/tandem")
    ap.add_argument("--corpus", default="data/corpus")
    ap.add_argument("--train-log", default="data/runs/train.log")
    ap.add_argument("--exits-log", default="data/runs/train_exits.log")
    ap.add_argument("--split", type=int, default=4)
    ap.add_argument("--train-compute", default=None,
                    help="compute path of the base model's run, for logs written before "
                         "`tandem train` printed its `compute:` line")
    ap.add_argument("--exits-compute", default=None,
                    help="the same for the exit heads' run (`tandem train-exits`)")
    ap.add_argument("--ood", default="data/ood/devil.bin",
                    help="out-of-domain held-out tokens (never trained on); '' to skip")
    ap.add_argument("--calibration-log", default="data/runs/calibrate.log",
                    help="output of the `tandem calibrate` run that chose the thresholds; "
                         "re-measured (slow) when absent")
    args = ap.parse_args()
    t, m, c = args.tandem, args.model, args.corpus

    cfg = json.load(open(os.path.join(ROOT, m, "config.json")))
    exits = json.load(open(os.path.join(ROOT, m, "exits.json")))
    test_ppl = last_json(run([t, "evaluate", "--model", m, "--data", f"{c}/test.bin",
                              "--unigram-from", f"{c}/train.bin", "--seq-len", str(SEQ_LEN),
                              "--json"]))
    slice_ppl = last_json(run([t, "evaluate", "--model", m, "--data", SLICE,
                               "--seq-len", str(SEQ_LEN), "--json"]))
    test_exits = last_json(run([t, "calibrate", "--model", m, "--data", f"{c}/test.bin",
                                "--seq-len", str(SEQ_LEN), "--apply", "--json"]))
    log = os.path.join(ROOT, args.calibration_log) if args.calibration_log else ""
    valid_table = open(log).read() if os.path.exists(log) else run([t, "calibrate", "--model", m, "--data", f"{c}/valid.bin",
                       "--seq-len", str(SEQ_LEN), "--split", str(args.split),
                       "--target-agreement", str(exits["thresholds"]["target_agreement"]),
                       "--dry-run"])
    valid_table = "\n".join(l for l in valid_table.splitlines() if not l.startswith("wrote "))
    ood = None
    if args.ood and os.path.exists(os.path.join(ROOT, args.ood)):
        ood = {"path": args.ood,
               "perplexity": last_json(run([t, "evaluate", "--model", m, "--data", args.ood,
                                            "--seq-len", str(SEQ_LEN), "--json"])),
               "exits": last_json(run([t, "calibrate", "--model", m, "--data", args.ood,
                                       "--seq-len", str(SEQ_LEN), "--apply", "--json"]))}
    # Edge share at 99% agreement for each split the exits allow (validation).
    split_rows = []
    for s_ in sorted(x for x in exits["layers"] if x <= args.split):
        table = valid_table if s_ == args.split else run(
            [t, "calibrate", "--model", m, "--data", f"{c}/valid.bin",
             "--seq-len", str(SEQ_LEN), "--split", str(s_),
             "--target-agreement", str(exits["thresholds"]["target_agreement"]), "--dry-run"])
        split_rows.append((s_, best_edge_share(table)))
    samples = [(p, run([t, "generate", "--model", m, "--prompt", p, "--max-new-tokens", "40"])
                .strip()) for p in PROMPTS]
    train_final, valid_history = training_summary(args.train_log)
    # Without the training logs (a re-calibration or re-measurement of a model
    # trained earlier), the card keeps its previous Training section verbatim:
    # that section was generated from the logs of the run that made the weights.
    previous_training = None
    card_path = os.path.join(ROOT, m, "MODEL_CARD.md")
    if train_final is None and os.path.exists(card_path):
        old_card = open(card_path).read()
        if "\n## Training\n" in old_card:
            rest = old_card.split("\n## Training\n", 1)[1]
            previous_training = rest.split("\n## ", 1)[0].strip("\n")
    exits_final, _ = training_summary(args.exits_log)
    if args.exits_log and os.path.exists(os.path.join(ROOT, args.exits_log)):
        exits_final = open(os.path.join(ROOT, args.exits_log)).read().strip().splitlines()[-1]

    d, L, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or d // heads
    ff = cfg["intermediate_size"]
    per_layer = d * heads * hd * 2 + d * kv * hd * 2 + 3 * d * ff + 2 * d
    params = V * d + L * per_layer + d + (0 if cfg.get("tie_word_embeddings") else V * d)

    card = {
        "parameters": params,
        "seq_len": SEQ_LEN,
        "test": test_ppl,
        "test_slice": {"path": SLICE, **slice_ppl},
        "test_exits_at_calibrated_thresholds": test_exits,
        "thresholds": exits["thresholds"],
        "out_of_domain": ood,
        "compute": {"base_model": args.train_compute or compute_path(args.train_log),
                    "exit_heads": args.exits_compute or compute_path(args.exits_log)},
    }
    json.dump(card, open(os.path.join(ROOT, m, "card.json"), "w"), indent=2)

    th = exits["thresholds"]
    exit_rows = "\n".join(
        f"| exit at layer {k.split('_')[1]} | {v:.2f} |"
        for k, v in test_ppl.items() if k.startswith("exit_"))
    share_rows = "\n".join(
        f"| layer {k.split('_')[1]} | {100 * v:.1f}% | {th['by_layer'][k.split('_')[1]]:.4f} |"
        for k, v in test_exits.items() if k.startswith("exit_"))
    sample_text = "\n\n".join(f"**{p}** → {s[len(p):].strip() if s.startswith(p) else s}"
                              for p, s in samples)
    history = "\n".join(f"    {l}" for l in valid_history[-6:])
    if previous_training and "compute path:" not in previous_training:
        previous_training += (f"\n- compute path: base model {card['compute']['base_model']}; "
                              f"exit heads {card['compute']['exit_heads']}")
    training_text = previous_training or f"""Commands and recipe: `docs/training.md`.

- base model: `{train_final or 'n/a'}`
- last validation passes:
{history or '    n/a'}
- exit heads: `{exits_final or 'n/a'}`
- compute path: base model {card['compute']['base_model']}; exit heads {card['compute']['exit_heads']}"""
    L_ = cfg["num_hidden_layers"]
    split_text = "\n".join(f"| {s_} of {L_} | {share:.1f}% | {100 * s_ / L_:.0f}% |"
                           for s_, share in split_rows)
    if ood:
        op, oe = ood["perplexity"], ood["exits"]
        ood_exit_ppl = " / ".join(f"{v:.1f}" for k, v in sorted(op.items())
                                  if k.startswith("exit_") and k.endswith("_ppl"))
        tp_exit_ppl = " / ".join(f"{v:.1f}" for k, v in sorted(test_ppl.items())
                                 if k.startswith("exit_") and k.endswith("_ppl"))
        ood_text = f"""## Out-of-domain held-out text

`{ood['path']}`: Ambrose Bierce, *The Devil's Dictionary* (1911, public domain;
Debian's `dict-devil`, `tools/prepare_ood.py`): satirical definitions, never
seen in training. Same thresholds as above.

| text | tokens | full-model perplexity | exit perplexities | edge share | overall agreement |
| --- | --- | --- | --- | --- | --- |
| in-domain test split | {test_exits['tokens']:,} | {test_ppl['full_ppl']:.1f} | {tp_exit_ppl} | {100 * test_exits['edge_share']:.1f}% | {test_exits['agreement']:.4f} |
| out-of-domain (Devil's Dictionary) | {oe['tokens']:,} | {op['full_ppl']:.1f} | {ood_exit_ppl} | {100 * oe['edge_share']:.1f}% | {oe['agreement']:.4f} |
"""
    else:
        ood_text = "## Out-of-domain held-out text\n\nNot measured (run tools/prepare_ood.py).\n"
    text = f"""# tandem-tiny — model card

*Generated by `tools/make_model_card.py`; every figure below was measured by that
script with the `tandem` CLI. Do not edit by hand.*

A small Llama-architecture model trained from scratch by this repository's own
tools on public-domain / redistributable English (King James Bible + Brown
corpus), shipped so that every example, test and benchmark runs with no download.
It is a toy for systems work — fluent-looking archaic English, no knowledge.

## Architecture and files

| | |
| --- | --- |
| architecture | Llama (RMSNorm, RoPE θ={cfg['rope_theta']:g}, GQA, SwiGLU), tied embeddings |
| layers × hidden | {L} × {d} ({heads} query heads, {kv} key/value heads, head dim {hd}) |
| MLP | {ff} |
| vocabulary | {V} (byte-level BPE, `tokenizer.json`) |
| context | {cfg['max_position_embeddings']} positions (trained on windows of {SEQ_LEN}) |
| parameters | {params:,} |
| weights | `model.safetensors`, {cfg.get('torch_dtype', '?')}, {file_mb(os.path.join(m, 'model.safetensors')):.1f} MB |
| exit heads | layers {exits['layers']}, adapter rank {exits.get('adapter_rank', 0)} (`tandem_exits.safetensors`, {file_mb(os.path.join(m, 'tandem_exits.safetensors')):.2f} MB) |

## Data

Corpus: `tools/prepare_corpus.py` (deterministic 90/5/5 split by document); see
`docs/training.md`. Tokens: train {os.path.getsize(os.path.join(ROOT, c, 'train.bin')) // 2:,},
validation {os.path.getsize(os.path.join(ROOT, c, 'valid.bin')) // 2:,},
test {os.path.getsize(os.path.join(ROOT, c, 'test.bin')) // 2:,}.

## Training

{training_text}

## Perplexity on the test split ({test_ppl['tokens']:,} tokens, windows of {SEQ_LEN})

| model | perplexity |
| --- | --- |
| full model (layer {L}) | {test_ppl['full_ppl']:.2f} |
{exit_rows}
| add-one unigram (fitted on train) | {test_ppl['unigram_ppl']:.2f} |

Committed slice `{SLICE}` ({slice_ppl['tokens']:,} tokens): full model perplexity
{slice_ppl['full_ppl']:.3f} (checked by `tests/common/shipped_model_test.cc`).

## Early exit at the calibrated thresholds (test split)

Thresholds were calibrated on the validation split with
`tandem calibrate --target-agreement {th['target_agreement']} --split {args.split}`
(measure `{th['measure']}`). On the test split, a token leaves at the first exit
whose confidence passes; every other token is the full model's own, as in
collaborative mode:

| exit | share of tokens | threshold |
| --- | --- | --- |
{share_rows}
| **at or before the split (layer {args.split})** | **{100 * test_exits['edge_share']:.1f}%** | |

Overall agreement with the full model's greedy token: **{test_exits['agreement']:.4f}**
(target {th['target_agreement']}).

Thresholds come from a joint search over the exits (exact for two exits; see
`common/src/exits/threshold_search.h`).

Which split: the edge share at the target agreement (validation split) for each
split the exits allow, against the share of the model's layers the edge runs:

| split S | edge share | edge compute per token |
| --- | --- | --- |
{split_text}

Calibration on the validation split (agreement-vs-coverage curves per exit and
measure, and the chosen thresholds):

```
{valid_table.strip()}
```

{ood_text}
## Greedy samples (`tandem generate --max-new-tokens 40`)

{sample_text}
"""
    open(os.path.join(ROOT, m, "MODEL_CARD.md"), "w").write(text)
    print(f"wrote {m}/MODEL_CARD.md and {m}/card.json", file=sys.stderr)


if __name__ == "__main__":
    main()
