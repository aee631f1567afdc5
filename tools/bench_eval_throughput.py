#!/usr/bin/env python3
"""Teacher-forced evaluation throughput of `tandem` CLI builds, compared.

Runs `tandem evaluate`, `tandem calibrate --apply` (the cascade at the stored
thresholds) and `tandem calibrate --dry-run` on the same data with each given
binary, alternating binaries within every round so machine noise hits all of
them alike, and prints per-command medians (tokens/s = predicted tokens / wall
seconds of the whole process, start-up and model load included), tokens per
CPU second (user + system time of the process: what an idle machine would
reach per busy core, less sensitive to other load), and the median of the
paired per-round ratios against the first binary.

    /usr/bin/python3 tools/bench_eval_throughput.py --bin before=/tmp/tandem-old \\
        --bin after=build/examples/tandem --data data/corpus/test.bin --threads 2 --rounds 5

A binary's spec may carry extra flags after a comma, e.g. fp32 against bf16
autocast with one build:
    --bin fp32=build/examples/tandem --bin bf16=build/examples/tandem,--precision,bf16
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COMMANDS = {
    "evaluate": ["evaluate", "--json"],
    "calibrate --apply": ["calibrate", "--apply", "--json"],
    "calibrate": ["calibrate", "--dry-run"],
}


def run(spec, command, model, data, threads, max_tokens):
    binary, *extra = spec.split(",")
    args = [binary] + COMMANDS[command][:1] + ["--model", model, "--data", data,
                                                 "--threads", str(threads)] + extra
    args += COMMANDS[command][1:]
    if max_tokens:
        args += ["--max-tokens", str(max_tokens)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    seconds = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if command == "calibrate":
        tokens = int(out.split(" tokens;")[0])
    else:
        tokens = json.loads(out.strip().splitlines()[-1])["tokens"]
    return tokens, seconds, cpu, out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", action="append", required=True, help="NAME=PATH[,EXTRA,FLAGS], repeatable")
    p.add_argument("--model", default=os.path.join(ROOT, "models", "tandem-tiny"))
    p.add_argument("--data", default=os.path.join(ROOT, "data", "corpus", "test.bin"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--max-tokens", type=int, default=0)
    p.add_argument("--commands", default=",".join(COMMANDS))
    args = p.parse_args()
    bins = [b.split("=", 1) for b in args.bin]
    commands = args.commands.split(",")
    times = {(c, n): [] for c in commands for n, _ in bins}
    cpus = {(c, n): [] for c in commands for n, _ in bins}
    tokens = {}
    outputs = {}
    for r in range(args.rounds):
        order = bins if r % 2 == 0 else list(reversed(bins))
        for c in commands:
            for name, path in order:
                n, s, cpu, out = run(path, c, args.model, args.data, args.threads,
                                     args.max_tokens)
                tokens[c] = n
                times[(c, name)].append(s)
                cpus[(c, name)].append(cpu)
                outputs.setdefault((c, name), out)
                print(f"round {r + 1} {c:>18} {name:>8}: {n} tokens {s:7.2f} s "
                      f"{n / s:9,.0f} tokens/s, {cpu:7.2f} CPU s", flush=True)
    print(f"\n{args.threads} compute thread(s), {args.rounds} rounds, data {args.data}")
    base = bins[0][0]
    for c in commands:
        for name, _ in bins:
            t = times[(c, name)]
            cpu = statistics.median(cpus[(c, name)])
            line = (f"{c:>18} {name:>8}: median {statistics.median(t):7.2f} s = "
                    f"{tokens[c] / statistics.median(t):9,.0f} tokens/s; "
                    f"{tokens[c] / cpu:7,.0f} tokens per CPU s")
            if name != base:
                ratios = [b / a for a, b in zip(times[(c, name)], times[(c, base)])]
                line += f"   speed-up vs {base}: median {statistics.median(ratios):.1f}x " \
                        f"(min {min(ratios):.1f}x, max {max(ratios):.1f}x)"
            print(line)
    for c in commands:
        outs = {outputs[(c, n)] for n, _ in bins}
        print(f"{c}: outputs {'identical' if len(outs) == 1 else 'DIFFER'} across binaries")


if __name__ == "__main__":
    main()
