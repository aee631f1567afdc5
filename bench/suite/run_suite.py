#!/usr/bin/python3
"""Tandem's benchmark suite: one command, one result file, one report.

  bench/suite/run_suite.py [--build build] [--out-dir bench/results]   (make bench-suite)
  bench/suite/run_suite.py --smoke --out-dir /tmp/x                     (the CTest smoke run)

Stages (progress and an ETA on stderr):
  1. machine description (lscpu, memory, load average, git commit);
  2. micro-benchmarks (tandem_bench, Google Benchmark JSON): memory bandwidth,
     edge/full decode steps, deferred rows, codecs, cloud rounds at 1-64
     sessions, context ingest, the link emulator's precision;
  3. the end-to-end matrix (tandem-bench-suite): every mode x network profile
     on the shipped model, the compute-ratio emulation, the codec sweep,
     teacher-forced agreement, the threshold sweep;
  4. the PyTorch eager baseline (tools/pytorch_eager_decode.py) on the same
     weights, prompt and thread count;
  5. the scale run: a `tandem random-model` checkpoint larger than the
     last-level cache (timings and bytes only) and its PyTorch baseline.

Writes <out-dir>/<date>-<machine>.json (everything, raw and summarised) and
<out-dir>/<date>-<machine>/report.md with PNG plots (bench/suite/report.py;
bench/README.md explains how to read it).
"""
import argparse
import datetime
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import report  # noqa: E402  (bench/suite/report.py)

SHIPPED = os.path.join(ROOT, "models", "tandem-tiny")
TEXT = os.path.join(ROOT, "tests", "data", "corpus", "test_slice.txt")
# The scale model: ~600 MB of fp32 weights, more than this machine's 508 MiB of
# reported L3, with the shipped tokenizer (vocabulary 8192).
SCALE_ARGS = ["--layers", "12", "--hidden", "1024", "--heads", "16", "--kv-heads", "8",
              "--intermediate", "2816"]

# BM_DecodeStep: the libtorch step (decode_step_bench.cc) and the edge decode
# path in every weight format on the shipped model; not fast_decode_bench's
# 250m/700m random models (minutes to build, `make bench` runs them).
SMOKE_TOKENS = 12

MICRO_FILTER = ("BM_MemoryReadBandwidth|BM_DecodeStep/([01]/|tiny/)|BM_EdgeStep|BM_FullStep|"
                "BM_DeferredRows|"
                "BM_Codec(Encode|Decode)/.*/16x256|BM_CloudContinueRound|BM_ContextIngest|"
                "BM_LinkRoundTrip|BM_LinkThroughput")


class Stages:
    """Overall progress: each stage has an expected cost in seconds."""

    def __init__(self, stages):
        self.stages = stages  # [(name, expected_seconds)]
        self.start = time.time()
        self.done = 0.0
        self.index = 0

    def begin(self, name):
        total = sum(s for _, s in self.stages)
        elapsed = time.time() - self.start
        rate = elapsed / self.done if self.done > 0 else 1.0
        eta = rate * (total - self.done)
        self.index += 1
        log(f"== stage {self.index}/{len(self.stages)}: {name} "
            f"(elapsed {clock(elapsed)}, ETA {clock(eta)})")

    def end(self, name):
        self.done += dict(self.stages)[name]


def clock(seconds):
    s = int(seconds + 0.5)
    return f"{s // 60}:{s % 60:02d}"


def log(message):
    print(message, file=sys.stderr, flush=True)


def run(cmd, env=None, capture=True, prefix=""):
    """Runs cmd; streams its stderr with `prefix`; returns stdout."""
    log("$ " + " ".join(cmd))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE if capture else None,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    # stdout is read after stderr: these programs write only a small JSON to it.
    for line in proc.stderr:
        log(prefix + line.rstrip())
    out = proc.stdout.read() if capture else ""
    rc = proc.wait()
    if rc != 0:
        raise RuntimeError(f"{cmd[0]} exited with {rc}")
    return out


def machine_description():
    info = {"hostname": socket.gethostname(), "kernel": platform.release(),
            "python": platform.python_version(), "nproc": os.cpu_count(),
            "load_average_start": os.getloadavg()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        info["cpu"] = fields.get("Model name", "")
        info["cpus"] = fields.get("CPU(s)", "")
        flags = fields.get("Flags", "").split()
        info["simd"] = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni",
                                    "amx_bf16", "amx_int8") if f in flags]
    except OSError:
        pass
    try:
        l3 = subprocess.run(["getconf", "LEVEL3_CACHE_SIZE"], capture_output=True, text=True)
        info["l3_bytes"] = int(l3.stdout.strip() or 0)
    except (OSError, ValueError):
        info["l3_bytes"] = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                info["memory_bytes"] = int(line.split()[1]) * 1024
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=ROOT).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=ROOT).stdout.strip()
        info["git_commit"] = commit + ("-dirty" if dirty else "")
    except OSError:
        info["git_commit"] = ""
    return info


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def suite_driver(build, out_path, args, threads):
    cmd = [os.path.join(build, "bench", "tandem-bench-suite"), "--threads", str(threads),
           "--out", out_path] + args
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    run(cmd, env=env, capture=False, prefix="   ")
    return read_jsonl(out_path)


def torch_baseline(model, prompt, tokens, threads, repeats):
    """tools/pytorch_eager_decode.py (PyTorch eager, op by op from Python) on
    `prompt`: median decode tokens/s over `repeats` runs, and its greedy ids."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    out = run(["/usr/bin/python3", os.path.join(ROOT, "tools", "pytorch_eager_decode.py"),
               "--model", model, "--new-tokens", str(tokens), "--threads", str(threads),
               "--repeats", str(repeats), "--prompt-ids", ",".join(str(i) for i in prompt)], env=env)
    result = json.loads(out)
    result["prompt"] = prompt
    return result


def prompts_of(records, count):
    """The prompts the driver used, rebuilt from its generation records."""
    by_index = {}
    for r in records:
        if r.get("type") == "generation" and r.get("prompt") is not None:
            by_index[r["prompt_index"]] = r["prompt"]
    return [by_index[i] for i in sorted(by_index)][:count]


def main():
    ap = argparse.ArgumentParser(description="Tandem benchmark suite (bench/README.md)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smoke", action="store_true",
                    help="one profile, four modes, few tokens; no micro/torch/scale (CTest)")
    ap.add_argument("--skip-micro", action="store_true")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--name", help="result name (default <date>-<hostname>)")
    ap.add_argument("--command", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    build = os.path.abspath(args.build)
    os.makedirs(args.out_dir, exist_ok=True)
    name = args.name or f"{datetime.date.today().isoformat()}-{socket.gethostname()}"
    result = {"name": name, "command": args.command or " ".join(sys.argv),
              "started": datetime.datetime.now().isoformat(timespec="seconds"),
              "threads": args.threads, "smoke": args.smoke, "machine": machine_description()}
    micro = not (args.smoke or args.skip_micro)
    torch_run = not (args.smoke or args.skip_torch)
    scale = not (args.smoke or args.skip_scale)
    stages = [("main", 40 if args.smoke else 420)]
    if micro:
        stages.insert(0, ("micro", 200))
    if torch_run:
        stages.append(("torch", 60))
    if scale:
        stages.append(("scale", 240))
    progress = Stages(stages)

    with tempfile.TemporaryDirectory(prefix="tandem-bench-") as tmp:
        if micro:
            progress.begin("micro-benchmarks")
            out = os.path.join(tmp, "micro.json")
            env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads))
            run([os.path.join(build, "bench", "tandem_bench"), f"--benchmark_filter={MICRO_FILTER}",
                 "--benchmark_min_time=0.2", "--benchmark_format=console",
                 f"--benchmark_out={out}", "--benchmark_out_format=json"], env=env, capture=False)
            with open(out) as f:
                result["micro"] = json.load(f)
            progress.end("micro")

        progress.begin("end-to-end matrix (shipped model)")
        main_args = ["--model", SHIPPED, "--text", TEXT]
        if args.smoke:
            # 12 tokens: on this prompt the exits pass some and the cloud
            # decides (and rejects) others, so every path runs.
            main_args += ["--profiles", "lan", "--modes",
                          "cloud-only,naive-split,collab-blocking,collab-pipelined",
                          "--prompts", "1", "--tokens", str(SMOKE_TOKENS), "--prompt-tokens", "8",
                          "--codecs", "", "--ratio", "1", "--tf-windows", "1",
                          "--tf-length", "16", "--sweep-tokens", "0"]
        records = suite_driver(build, os.path.join(tmp, "main.jsonl"), main_args, args.threads)
        result["records"] = records
        progress.end("main")

        if torch_run:
            progress.begin("PyTorch eager baseline (shipped model)")
            meta = next(r for r in records if r["type"] == "meta")
            result["torch"] = torch_baseline(SHIPPED, prompts_of(records, 1)[0], meta["tokens"],
                                             args.threads, repeats=5)
            progress.end("torch")

        if scale:
            progress.begin("scale run (random checkpoint larger than the LLC)")
            scale_dir = os.path.join(build, "bench-scale-model")
            if not os.path.exists(os.path.join(scale_dir, "config.json")):
                run([os.path.join(build, "examples", "tandem"), "random-model", "--out", scale_dir,
                     "--tokenizer", os.path.join(SHIPPED, "tokenizer.json")] + SCALE_ARGS,
                    capture=False)
            scale_records = suite_driver(
                build, os.path.join(tmp, "scale.jsonl"),
                ["--model", scale_dir, "--text", TEXT, "--fresh-heads", "--split", "6",
                 "--exit-layers", "3", "--fresh-threshold", "0.5", "--profiles", "lan,4g",
                 "--modes", "cloud-only,edge-full,naive-split,standalone,collab-blocking,"
                 "collab-pipelined",
                 "--prompts", "2", "--tokens", "8", "--prompt-tokens", "32", "--codecs", "",
                 "--ratio", "1", "--tf-windows", "0", "--sweep-tokens", "0"], args.threads)
            result["scale"] = {"records": scale_records}
            if torch_run:
                result["scale"]["torch"] = torch_baseline(scale_dir, prompts_of(scale_records, 1)[0],
                                                          8, args.threads, repeats=2)
            progress.end("scale")

    result["machine"]["load_average_end"] = os.getloadavg()
    result["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    result["summary"] = report.summarise(result)
    json_path = os.path.join(args.out_dir, name + ".json")
    with open(json_path, "w") as f:
        json.dump(result, f, indent=1)
    report_dir = os.path.join(args.out_dir, name)
    report.write_report(result, report_dir)
    log(f"wrote {json_path} and {report_dir}/report.md "
        f"(total {clock(time.time() - progress.start)})")


if __name__ == "__main__":
    main()
