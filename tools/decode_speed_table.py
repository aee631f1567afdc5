#!/usr/bin/env python3
"""Side-by-side decode speed: `tandem generate` on libtorch and on the edge
decode path in each weight format, PyTorch eager (tools/pytorch_eager_decode.py)
and, when given a llama.cpp build, llama.cpp's llama-bench on GGUF files made
by tools/export_gguf.py — same checkpoint, greedy, N new tokens, 1 and 2
threads. Runs alternate between engines in every round (the machine is
shared and noisy); the table gives each engine's median decode tokens/s over
the rounds and its ratio to libtorch fp32.

Usage: /usr/bin/python3 tools/decode_speed_table.py --model DIR [--model DIR2]
           [--tandem build/examples/tandem] [--llama-bench PATH --gguf-dir DIR]
           [--rounds 5] [--new-tokens 128] [--threads 1,2] [--eager]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

FORMATS = ["fp32", "fp16", "bf16", "int8", "int4"]
RATE = re.compile(r"decode ([0-9.]+) tokens/s")


def tandem_rate(args, model, threads, weights):
    cmd = [args.tandem, "generate", "--model", model, "--prompt", args.prompt,
           "--max-new-tokens", str(args.new_tokens), "--threads", str(threads)]
    if weights:
        cmd += ["--weights", weights]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(RATE.search(out.stderr).group(1))


def eager_rate(args, model, threads):
    out = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__),
                                                       "pytorch_eager_decode.py"),
                          "--model", model, "--threads", str(threads), "--repeats", "1",
                          "--new-tokens", str(args.new_tokens)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["decode_tokens_per_s_median"]


def llama_rate(args, gguf, threads):
    out = subprocess.run([args.llama_bench, "-m", gguf, "-p", "0", "-n", str(args.new_tokens),
                          "-t", str(threads), "-r", "1", "-o", "json"],
                         capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout)[0]["avg_ts"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--tandem", default="build/examples/tandem")
    ap.add_argument("--llama-bench")
    ap.add_argument("--gguf-dir", help="holds <model name>-{f16,q8_0,q4_0}.gguf")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--prompt", default="In the beginning")
    ap.add_argument("--eager", action="store_true", help="also PyTorch eager")
    ap.add_argument("--formats", default=",".join(FORMATS))
    args = ap.parse_args()
    for model in args.model:
        name = os.path.basename(model.rstrip("/"))
        for threads in [int(t) for t in args.threads.split(",")]:
            engines = [("libtorch fp32", lambda: tandem_rate(args, model, threads, None))]
            for f in args.formats.split(","):
                engines.append((f"tandem {f}", lambda f=f: tandem_rate(args, model, threads, f)))
            if args.eager:
                engines.append(("pytorch eager fp32", lambda: eager_rate(args, model, threads)))
            if args.llama_bench and args.gguf_dir:
                for q in ["f16", "q8_0", "q4_0"]:
                    gguf = os.path.join(args.gguf_dir, f"{name}-{q}.gguf")
                    if os.path.exists(gguf):
                        engines.append((f"llama.cpp {q}",
                                        lambda g=gguf: llama_rate(args, g, threads)))
            rates = {e: [] for e, _ in engines}
            for r in range(args.rounds):
                order = engines if r % 2 == 0 else engines[::-1]
                for e, run in order:
                    rates[e].append(run())
            base = statistics.median(rates["libtorch fp32"])
            print(f"\n{name}, {threads} thread(s), {args.new_tokens} new tokens, "
                  f"median of {args.rounds} alternating rounds")
            print("| engine | decode tokens/s | vs libtorch fp32 | runs |")
            print("|---|---|---|---|")
            for e, _ in engines:
                m = statistics.median(rates[e])
                runs = ", ".join(f"{x:.0f}" for x in rates[e])
                print(f"| {e} | {m:.1f} | {m / base:.2f}x | {runs} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
