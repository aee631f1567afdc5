#!/usr/bin/env python3
"""Codec comparison: bytes on the wire vs agreement with the full model.

For teacher-forced windows of held-out text, the hidden state at the split S
goes through each codec (tandem.codec), the cloud's layers [S, L) run on the
decoded rows (tandem.Model), and the cloud's greedy token is compared with the
full model's on the exact rows — what collaborative mode does, without the
network. Bytes per row are for one row per message (a cloud request) and for a
batch of 64 rows (background context upload).

    PYTHONPATH=build/python /usr/bin/python3 python/examples/codec_comparison.py \\
        [--split 4] [--out codecs.png]
"""
import argparse
import os

import numpy as np

import tandem

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CODECS = ["fp32", "fp16", "bf16", "int8", "int8+zstd", "int4-g64", "int4", "int4+zstd"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=os.path.join(ROOT, "models", "tandem-tiny"))
    p.add_argument("--data", default=os.path.join(ROOT, "tests", "data", "corpus",
                                                  "test_slice.txt"))
    p.add_argument("--split", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--windows", type=int, default=8)
    p.add_argument("--out", default="", help="also plot to this PNG (needs matplotlib)")
    args = p.parse_args()

    model = tandem.Model.load(args.model)
    L = model.config["num_hidden_layers"]
    ids = tandem.load_tokens(args.data, args.model)
    n = min(args.windows, len(ids) // args.seq_len)
    windows = ids[:n * args.seq_len].reshape(n, args.seq_len)
    hidden = model.hidden_states(windows, [args.split])[args.split]  # [n, T, D] fp32
    dim = hidden.shape[-1]

    def cloud_tokens(h):
        out = np.stack([model.forward_layers(args.split, L, h[b]) for b in range(n)])
        return model.logits_from_hidden(out).argmax(-1)

    exact = cloud_tokens(hidden)
    rows = hidden.reshape(-1, dim)
    print(f"{n * args.seq_len} positions, split {args.split}, hidden size {dim}")
    print(f"{'codec':>10} {'bytes/row':>9} {'batch64':>8} {'rel L2':>9} {'agreement':>9}")
    results = []
    for spec in CODECS:
        single = np.mean([len(tandem.codec.encode(rows[i], spec)) for i in range(64)])
        batch = np.mean([len(tandem.codec.encode(rows[i:i + 64], spec)) / 64
                         for i in range(0, len(rows) - 63, 64)])
        decoded = np.stack([tandem.codec.decode(tandem.codec.encode(hidden[b], spec),
                                                max_rows=args.seq_len) for b in range(n)])
        err = tandem.codec.relative_error(rows, spec)
        agree = float((cloud_tokens(decoded) == exact).mean())
        results.append((spec, single, batch, err, agree))
        print(f"{spec:>10} {single:>9.1f} {batch:>8.1f} {err:>9.2e} {100 * agree:>8.2f}%")

    if args.out:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        for spec, single, batch, err, agree in results:
            ax.scatter(single, 100 * agree)
            ax.annotate(spec, (single, 100 * agree), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("bytes per cloud request row (log)")
        ax.set_ylabel("cloud token = full model's (%)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.out, dpi=120)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
