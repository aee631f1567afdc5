#!/usr/bin/env python3
"""How much of the text a hidden state at split S gives away.

For every split S of a checkpoint, takes the hidden states at S that an edge
would send for a text (one sequence per window, positions from 0) and tries two
inversion attacks that need nothing but the cloud's own weights and a little
text:

  nearest   each state's nearest row of the embedding matrix by cosine
            similarity, after subtracting the states' mean (no training and
            no labels: only the weights and the states themselves),
  ridge     a linear map from states to embedding rows, fitted by ridge
            regression on the first part of the text, then the nearest
            embedding row; measured on the rest of the text (held out).

Prints the share of held-out positions whose token each attack recovers
exactly (top-1), per split. A cheap lower bound on what a real attacker gets:
trained non-linear inverters (e.g. vec2text-style, or an MLP) do better.

  PYTHONPATH=build/python /usr/bin/python3 tools/inversion_probe.py \
      --model models/tandem-tiny --text tests/data/corpus/test_slice.txt
"""
import argparse
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--window", type=int, default=128, help="tokens per sequence")
    ap.add_argument("--train-share", type=float, default=0.6)
    ap.add_argument("--ridge", type=float, default=1.0)
    args = ap.parse_args()
    if not 0.1 <= args.train_share <= 0.9:
        sys.exit("--train-share must be in [0.1, 0.9]")

    import tandem  # noqa: E402  (after argument errors, which need no build)

    model = tandem.Model.load(args.model)
    tokenizer = tandem.Tokenizer.load(args.model)
    layers = model.config["num_hidden_layers"]
    with open(args.text, encoding="utf-8") as f:
        ids = tokenizer.encode(f.read())
    windows = [ids[i:i + args.window] for i in range(0, len(ids) - args.window + 1, args.window)]
    tokens = np.array([t for w in windows for t in w])
    split_at = int(len(windows) * args.train_share) * args.window

    embedding = model.embed(np.arange(model.config["vocab_size"], dtype=np.int64))
    unit = embedding / np.linalg.norm(embedding, axis=1, keepdims=True)

    def nearest(states):
        s = states / np.linalg.norm(states, axis=1, keepdims=True)
        return np.argmax(s @ unit.T, axis=1)

    # Hidden states at every layer boundary, window by window.
    states = {s: [] for s in range(layers + 1)}
    for w in windows:
        h = model.embed(np.array(w, dtype=np.int64))
        states[0].append(h)
        for layer in range(layers):
            h = model.forward_layers(layer, layer + 1, h)
            states[layer + 1].append(h)

    print(f"{len(tokens)} positions ({len(windows)} windows of {args.window}); "
          f"ridge fitted on {split_at}, measured on {len(tokens) - split_at}")
    majority = np.bincount(tokens[:split_at]).argmax()
    print(f"baseline (always the most frequent training token): "
          f"{100 * np.mean(tokens[split_at:] == majority):.1f}%")
    print("split S | nearest embedding | ridge + nearest")
    print("--------|-------------------|----------------")
    held = tokens[split_at:]
    for s in range(layers + 1):
        x = np.concatenate(states[s])
        near = np.mean(nearest(x[split_at:] - x.mean(axis=0)) == held)
        xt, yt = x[:split_at], embedding[tokens[:split_at]]
        mean = xt.mean(axis=0)
        a = (xt - mean).T @ (xt - mean) + args.ridge * np.eye(x.shape[1])
        w = np.linalg.solve(a, (xt - mean).T @ yt)
        ridge = np.mean(nearest((x[split_at:] - mean) @ w) == held)
        print(f"{s:7d} | {100 * near:16.1f}% | {100 * ridge:14.1f}%")


if __name__ == "__main__":
    main()
