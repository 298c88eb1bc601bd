#!/usr/bin/env python3
"""`lim reduce` over an archive in parts, run as Ray tasks of the unchanged `lim` binary, then
merged: on a workstation, a Slurm allocation or a Kubernetes Ray cluster (README, "Scaling
out"). Needs `pip install ray`.

    ray-reduce.py INPUT OUTPUT --parts N [--address ADDRESS] [--lim PATH] [--retries 3]
                  [--cpus 1] [--scope volume|global] [--link] [-- LIM_REDUCE_OPTIONS...]

Part i runs `lim reduce LIM_REDUCE_OPTIONS --shard i/N INPUT PARTS/i` as a Ray task with
--cpus CPUs, retried up to --retries times when it fails (a part rewrites its own folder and
counts as finished only once it has written shard.json); then `lim reduce --merge` joins
the parts' folders into OUTPUT, as one run on all of INPUT would have written it. PARTS is
--parts-dir, by default OUTPUT.parts. Every node must see INPUT and PARTS at the same paths
(a shared file system) and run the same `lim`. Prints one JSON line: the parts, the
seconds, and where the output and the parts are.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import ray


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--parts", type=int, required=True)
    parser.add_argument("--address", help="the Ray cluster to join; default: start one here")
    parser.add_argument("--lim", default="lim", help="the lim executable on every node")
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument("--cpus", type=float, default=1, help="CPUs a part takes")
    parser.add_argument("--scope", default="volume", choices=["volume", "global"])
    parser.add_argument("--link", action="store_true", help="hard-link kept slices")
    parser.add_argument("--parts-dir")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args, options = parser.parse_args(argv[:split]), argv[split + 1:]
    if args.parts < 1:
        sys.exit("--parts must be at least 1")
    # Tasks run in the workers' own folders: every path absolute.
    lim = os.path.abspath(args.lim) if os.sep in args.lim else args.lim
    source = os.path.abspath(args.input)
    output = os.path.abspath(args.output)
    parts_dir = os.path.abspath(args.parts_dir or output + ".parts")
    link = ["--link"] if args.link else []

    ray.init(address=args.address, log_to_driver=False)

    @ray.remote(num_cpus=args.cpus, max_retries=args.retries, retry_exceptions=True)
    def part(i):
        folder = os.path.join(parts_dir, str(i))
        shard = f"{i}/{args.parts}"
        command = [lim, "reduce", *options, *link, "--shard", shard, source, folder]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"part {shard} failed ({done.returncode}): {done.stderr.strip()}")
        return folder

    start = time.perf_counter()
    try:
        folders = ray.get([part.remote(i) for i in range(args.parts)])
    except ray.exceptions.RayTaskError as e:
        sys.exit(f"a part failed {args.retries + 1} times: {e.cause}")
    merge = [lim, "reduce", "--merge", "--scope", args.scope, *link, *folders, output]
    merged = subprocess.run(merge, capture_output=True, text=True)
    if merged.returncode != 0:
        sys.exit(f"the merge failed: {merged.stderr.strip()}")
    sys.stderr.write(merged.stdout)
    print(json.dumps({"parts": args.parts, "seconds": time.perf_counter() - start,
                      "output": output, "parts_dir": parts_dir}))


if __name__ == "__main__":
    main()
