#!/usr/bin/python3
"""Smoke run of the benchmark suite (bench/suite/run_suite.py --smoke): one
profile (LAN), four modes (cloud-only, naive-split, collab-blocking,
collab-pipelined), 12 tokens. Checks that
every stage produced sane records and that the report was written; exits
non-zero otherwise. Registered in CTest as bench.suite_smoke."""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    subprocess.run([sys.executable, os.path.join(ROOT, "bench", "suite", "run_suite.py"), "--smoke",
                    "--build", args.build, "--out-dir", args.work, "--name", "smoke"], check=True)
    with open(os.path.join(args.work, "smoke.json")) as f:
        result = json.load(f)
    gens = [r for r in result["records"] if r["type"] == "generation"]
    modes = {r["mode"] for r in gens}
    assert modes == {"cloud-only", "naive-split", "collab-blocking", "collab-pipelined"}, modes
    tokens = next(r for r in result["records"] if r["type"] == "meta")["tokens"]
    for r in gens:
        assert r["ok"], r["error"]
        assert r["generated_tokens"] == tokens, r
        assert len(r["itl_s"]) == tokens - 1 and r["ttft_s"] > 0, r
        assert r["wire_bytes_up"] > 0, r  # the prompt or the edge's context went up
        decided = r["edge_tokens"] + r["fallback_tokens"] + r["cloud_tokens"]
        assert decided == r["generated_tokens"], r
        if r["cloud_tokens"] > 0:
            assert r["cloud_flops"] > 0 and r["cloud_busy_s"] > 0 and r["round_trips"] > 0, r
            assert r["wire_bytes_down"] > 0, r
        assert math.isfinite(r["nll_sum"]) and r["nll_sum"] > 0, r
        spec = r["speculation"]
        verdicts = spec["accepted"] + spec["rejected"] + spec["unverified"]
        assert verdicts <= spec["drafts"], r
        if r["mode"] == "collab-pipelined":
            # CloudOptions' default window (max_in_flight 32, floor 4); every
            # token the cloud decided was a draft it verified.
            assert spec["final_window"] >= 4, r
            assert spec["drafts"] >= r["cloud_tokens"] > 0, r
        elif r["mode"] in ("collab-blocking", "naive-split"):
            # Pinned to max_in_flight = 0: one draft at a time, nothing built
            # on top of it, so a rejection wastes no step.
            assert spec["final_window"] == 0 and spec["wasted_steps"] == 0, r
            assert spec["mean_in_flight"] <= 1.0, r
        else:
            assert spec["drafts"] == 0, r
    by_mode = {r["mode"]: r for r in gens}
    # No exit may pass in the naive split: every token's hidden state goes up.
    assert by_mode["naive-split"]["edge_tokens"] == 0, by_mode["naive-split"]
    # Confirmed delivery under greedy decoding gives the blocking policy's text
    # (unless a deadline expired and a draft was kept unverified).
    blocking, pipelined = by_mode["collab-blocking"], by_mode["collab-pipelined"]
    if not (blocking["failed_requests"] or pipelined["speculation"]["unverified"]):
        assert pipelined["ids"] == blocking["ids"], (pipelined["ids"], blocking["ids"])
    cloud_only = [r for r in gens if r["mode"] == "cloud-only"]
    assert all(r["cloud_tokens"] == r["generated_tokens"] for r in cloud_only), cloud_only
    # The cloud runs the full model: every token agrees with it.
    assert all(r["agree_along_output"] == r["generated_tokens"] for r in cloud_only), cloud_only
    tf = [r for r in result["records"] if r["type"] == "teacher_forced"]
    assert tf and all(r["ok"] and r["positions"] > 0 for r in tf), tf
    tf_naive = next(r for r in tf if r["mode"] == "naive-split")
    # Every teacher-forced position of the naive split is the cloud's verdict
    # (a kept draft only if a deadline expired).
    assert tf_naive["at_edge"] == 0 and tf_naive["cloud"] > tf_naive["fallback"], tf_naive
    headline = result["summary"]["main"]["matrix"]["lan"]
    assert headline["cloud-only"]["cloud_share"] == 1.0, headline["cloud-only"]
    with open(os.path.join(args.work, "smoke", "report.md")) as f:
        text = f.read()
    assert "## Headline" in text and "cloud-only" in text and "collab-blocking" in text
    assert "collab-pipelined" in text
    pipelined = [r for r in gens if r["mode"] == "collab-pipelined"]
    if any(r["cloud_tokens"] for r in pipelined):
        assert "### Pipelined verification" in text
    try:
        import matplotlib  # noqa: F401
        assert os.path.exists(os.path.join(args.work, "smoke", "itl_vs_rtt.png"))
    except ImportError:
        assert "Plots skipped" in text
    print("suite smoke run OK")


if __name__ == "__main__":
    main()
