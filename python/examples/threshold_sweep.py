#!/usr/bin/env python3
"""Threshold sweep: agreement with the full model vs share of tokens decided at
the edge, for every exit and confidence measure, on the shipped model.

One teacher-forced pass (tandem.calibrate) gives each exit's standalone curve
under all three measures (a token leaves at that exit when its confidence >=
the threshold; agreement = that token equals the full model's greedy token).
The cascade (tokens leave at the first confident exit, the rest are the full
model's) is calibrated for each agreement target and plotted as points.

    PYTHONPATH=build/python /usr/bin/python3 python/examples/threshold_sweep.py \\
        [--data data/corpus/valid.bin] [--out sweep.png]

Writes the PNG (matplotlib, Debian's python3-matplotlib) and prints the numbers.
"""
import argparse
import os
import sys
import time

import tandem

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def default_data():
    valid = os.path.join(ROOT, "data", "corpus", "valid.bin")
    if os.path.exists(valid):
        return valid
    return os.path.join(ROOT, "tests", "data", "corpus", "test_slice.txt")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=os.path.join(ROOT, "models", "tandem-tiny"))
    p.add_argument("--data", default=default_data(),
                   help=".bin token file or text file (default: data/corpus/valid.bin if "
                        "tools/tokenize_corpus.py made it, else the committed test slice)")
    p.add_argument("--max-tokens", type=int, default=0, help="0 = all of --data")
    p.add_argument("--targets", default="0.95,0.97,0.98,0.99,0.995",
                   help="agreement targets for the cascade points")
    p.add_argument("--points", type=int, default=41, help="points per standalone curve")
    p.add_argument("--threads", type=int, default=0, help="compute threads (0 = all cores)")
    p.add_argument("--out", default="threshold_sweep.png")
    args = p.parse_args()

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    print(f"compute threads: {tandem.set_threads(args.threads)}")
    tokens = tandem.load_tokens(args.data, args.model)
    targets = [float(t) for t in args.targets.split(",")]

    def progress(p):
        print(f"\r  {p.done}/{p.total} tokens, {p.elapsed_seconds:.1f} s", end="", file=sys.stderr)

    runs = []
    for target in targets:
        start = time.monotonic()
        r = tandem.calibrate(args.model, tokens, target_agreement=target,
                             max_tokens=args.max_tokens, curve_points=args.points,
                             on_progress=progress)
        seconds = time.monotonic() - start
        print(f"\rtarget {target}: {r.tokens} tokens in {seconds:.1f} s "
              f"({r.tokens / seconds:,.0f} tokens/s)", file=sys.stderr)
        runs.append((target, r))
    first = runs[0][1]

    measures = [m.measure for m in first.measures]
    fig, axes = plt.subplots(1, len(measures), figsize=(5 * len(measures), 4.4), sharey=True)
    for ax, m in zip(axes, measures):
        cal = next(c for c in first.measures if c.measure == m)
        for layer, curve in sorted(cal.curves.items()):
            ax.plot([100 * q.coverage for q in curve], [100 * q.agreement for q in curve],
                    marker=".", label=f"exit {layer} alone")
        xs, ys = [], []
        for target, r in runs:
            c = next(c for c in r.measures if c.measure == m)
            xs.append(100 * c.coverage)
            ys.append(100 * c.agreement)
        ax.plot(xs, ys, "k^--", label="cascade, calibrated per target")
        ax.set_title(f"measure: {m}")
        ax.set_xlabel("tokens decided at the edge (%)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("agreement with the full model (%)")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"{os.path.basename(os.path.normpath(args.model))}: {first.tokens:,} "
                 f"teacher-forced tokens of {os.path.basename(args.data)}")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")

    print("\nstandalone top-1 agreement: " +
          ", ".join(f"exit {l} {100 * a:.2f}%" for l, a in sorted(first.top1_agreement.items())))
    print("\ncascade (best thresholds per measure):")
    print(f"{'target':>7} {'measure':>12} {'edge share':>10} {'agreement':>9}  per exit")
    for target, r in runs:
        for c in r.measures:
            per_exit = " ".join(f"{l}:{100 * s:.1f}%" for l, s in sorted(c.exit_share.items()))
            star = " *" if c.measure == r.chosen.measure else ""
            print(f"{target:>7} {c.measure:>12} {100 * c.coverage:>9.2f}% "
                  f"{100 * c.agreement:>8.2f}%  {per_exit}{star}")


if __name__ == "__main__":
    main()
