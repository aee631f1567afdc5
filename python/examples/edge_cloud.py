#!/usr/bin/env python3
"""Edge + cloud in one script: start an in-process cloud server, run a
collaborative edge session against it, and look at where each token was decided.

    PYTHONPATH=build/python /usr/bin/python3 python/examples/edge_cloud.py
"""
import argparse
import os

import tandem

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=os.path.join(ROOT, "models", "tandem-tiny"))
    p.add_argument("--prompt", default="And it came to pass")
    p.add_argument("--tokens", type=int, default=48)
    p.add_argument("--codec", default="int8")
    args = p.parse_args()

    # %% The cloud: layers [S, L) of the same checkpoint, on a free loopback port.
    with tandem.CloudServer(args.model) as cloud:
        print(f"cloud listening on {cloud.address}")

        # %% The edge: layers [0, S) + exit heads; tokens no exit is sure of go to the cloud.
        options = tandem.CloudOptions(cloud.address, codec=args.codec, request_timeout=2.0)
        with tandem.EdgeSession(args.model, cloud=options) as edge:
            print(f"edge: split {edge.split}, exits {edge.exits}, measure {edge.measure}, "
                  f"thresholds {edge.thresholds}\n")

            # %% Stream: e = an exit was confident, C = the cloud decided, f = edge fallback.
            mark = {"exit": "e", "cloud": "C", "fallback": "f", "text": ""}
            print(args.prompt, end="")
            for tok in edge.stream(args.prompt, max_new_tokens=args.tokens):
                print(f"{tok.text}", end="", flush=True)
            print("\n")
            result = edge.generate(args.prompt, max_new_tokens=args.tokens)
            print("".join(f"[{mark[t.decided_by]}{t.layer if t.layer is not None else ''}]"
                          f"{t.text}" for t in result.tokens))

            # %% Where the tokens came from, and what it cost on the wire.
            s = result.stats
            print(f"\n{s.generated_tokens} tokens: exits {s.exit_tokens}, "
                  f"fallback {s.fallback_tokens}, cloud {s.cloud_tokens}")
            print(f"edge share {100 * s.edge_tokens / max(1, s.generated_tokens):.1f}%, "
                  f"bytes up {s.cloud.bytes_up:,}, down {s.cloud.bytes_down:,}, "
                  f"cloud requests {s.cloud.requests}, mean request "
                  f"{1e3 * s.cloud.request_seconds / max(1, s.cloud.requests):.1f} ms, "
                  f"total {s.total_seconds:.2f} s")
        server = cloud.stats()
        print(f"cloud: {server.streams_opened} streams, {server.tokens_sent} tokens sent, "
              f"{server.context.rows_run} rows run, "
              f"{server.context.compute_seconds:.3f} s of compute")


if __name__ == "__main__":
    main()
