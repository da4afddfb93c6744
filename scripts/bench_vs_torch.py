#!/usr/bin/env python3
"""coopc against PyTorch on this machine, in one run: the speed targets of the execution issue.

For each configuration below, every round runs PyTorch's ../shared/bench/bench_torch.py and
`coopc bench` once each (one process each, so peak memory is per configuration), alternating
which goes first; the figure of a framework is the median over rounds of its images/s, and the
ratio is coopc / PyTorch of those medians. Runs on a loaded machine are noisy: compare ratios
from one run, and look at the per-round spread printed beside them.

Configurations (batch 64, float32, training step = forward + cross-entropy + backward + SGD
momentum 0.9, weight decay 1e-4):
  lenet-train      LeNet, training, phase 2 (ReLU)
  resnet20-train   ResNet-20, training, phase 2 (ReLU)
  resnet20-mix     ResNet-20, training, phase 1 (the mix of relu/prelu/elu/softplus; torch --act coop)
  resnet56-infer   ResNet-56, inference, phase 2
  resnet56-train   ResNet-56, training, phase 2 (only with --only)

Usage:
  cargo build --release --bin coopc
  python3 scripts/bench_vs_torch.py [--coopc target/release/coopc] [--rounds 3] [--only lenet-train]

Needs PyTorch in a virtual environment (../shared/bench/README.md): --torch-python, or the
TORCH_PYTHON variable, default /tmp/torchvenv/bin/python. Only the standard library is used here.
"""
import argparse
import datetime
import json
import os
import pathlib
import statistics
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
BENCH_DIR = (REPO / ".." / "shared" / "bench").resolve()

# name -> (coopc arguments, bench_torch.py arguments, mode measured)
CONFIGS = {
    "lenet-train": (["models/lenet.coop", "--phase", "2", "--mode", "train"],
                    ["--model", "lenet", "--mode", "train"], "train"),
    "resnet20-train": (["models/resnet20.coop", "--phase", "2", "--mode", "train"],
                       ["--model", "resnet20", "--mode", "train"], "train"),
    "resnet20-mix": (["models/resnet20.coop", "--phase", "1", "--mode", "train"],
                     ["--model", "resnet20", "--mode", "train", "--act", "coop"], "train"),
    "resnet56-infer": (["models/resnet56.coop", "--phase", "2", "--mode", "infer"],
                       ["--model", "resnet56", "--mode", "infer"], "infer"),
    # Not run by default (about 15 s per run); select it with --only.
    "resnet56-train": (["models/resnet56.coop", "--phase", "2", "--mode", "train"],
                       ["--model", "resnet56", "--mode", "train"], "train"),
}
DEFAULT = ["lenet-train", "resnet20-train", "resnet20-mix", "resnet56-infer"]


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coopc", help="the coopc binary (default: $CARGO_TARGET_DIR or target/, release)")
    ap.add_argument("--torch-python", default=os.environ.get("TORCH_PYTHON", "/tmp/torchvenv/bin/python"))
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per configuration")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per run (its median is the run's figure)")
    ap.add_argument("--only", action="append", choices=sorted(CONFIGS), help="run only these (repeatable)")
    ap.add_argument("--raw", help="also write every JSON record, one per line, to this file")
    return ap.parse_args()


def find_coopc(explicit):
    if explicit:
        return pathlib.Path(explicit)
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "release" / "coopc"


def load_average():
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"


def run_json(command, cwd):
    """Runs command; returns its last stdout line that parses as a JSON object."""
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"failed ({done.returncode}): {' '.join(map(str, command))}")
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if not records:
        raise SystemExit(f"no JSON from: {' '.join(map(str, command))}")
    return records[-1]


def run_torch(args, torch_args):
    command = [args.torch_python, "bench_torch.py", *torch_args, "--batch", str(args.batch),
               "--warmup", str(args.warmup), "--steps", str(args.steps), "--repeats", "1"]
    record = run_json(command, BENCH_DIR)
    return {"images_per_s": record["images_per_s"], "peak_rss_mib": record["peak_rss_mib"],
            "raw": record}


def run_coopc(args, coopc, coopc_args, mode):
    command = [str(coopc), "bench", *coopc_args, "--batch", str(args.batch), "--json",
               "--warmup", str(args.warmup), "--steps", str(args.steps), "--repeats", "1"]
    record = run_json(command, REPO)
    return {"images_per_s": record[f"{mode}_images_per_s"],
            "peak_rss_mib": record["peak_rss_bytes"] / 2**20,
            "compile_s": record["compile_seconds"], "raw": record}


def measure(args, coopc, names):
    results = {name: {"torch": [], "coopc": []} for name in names}
    for round_index in range(args.rounds):
        for name in names:
            coopc_args, torch_args, mode = CONFIGS[name]
            order = ["torch", "coopc"] if round_index % 2 == 0 else ["coopc", "torch"]
            for framework in order:
                if framework == "torch":
                    result = run_torch(args, torch_args)
                else:
                    result = run_coopc(args, coopc, coopc_args, mode)
                result["load"] = load_average()
                results[name][framework].append(result)
                print(f"round {round_index + 1}/{args.rounds} {name:15} {framework:6} "
                      f"{result['images_per_s']:9.1f} images/s  load {result['load']}",
                      file=sys.stderr, flush=True)
    return results


def median_of(runs, key):
    return statistics.median(run[key] for run in runs)


def table(results):
    lines = [
        "| configuration | PyTorch images/s | coopc images/s | coopc / PyTorch | per-round ratios "
        "| PyTorch peak MiB | coopc peak MiB | coopc compile s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        torch_runs, coopc_runs = runs["torch"], runs["coopc"]
        torch_speed = median_of(torch_runs, "images_per_s")
        coopc_speed = median_of(coopc_runs, "images_per_s")
        rounds = " ".join(f"{c['images_per_s'] / t['images_per_s']:.2f}"
                          for t, c in zip(torch_runs, coopc_runs))
        lines.append(
            f"| {name} | {torch_speed:.1f} | {coopc_speed:.1f} | {coopc_speed / torch_speed:.2f}x "
            f"| {rounds} | {median_of(torch_runs, 'peak_rss_mib'):.0f} "
            f"| {median_of(coopc_runs, 'peak_rss_mib'):.0f} | {median_of(coopc_runs, 'compile_s'):.2f} |")
    return "\n".join(lines)


def main():
    args = parse_args()
    coopc = find_coopc(args.coopc)
    if not coopc.exists():
        raise SystemExit(f"{coopc} not found: build it with `cargo build --release --bin coopc`")
    if not pathlib.Path(args.torch_python).exists():
        raise SystemExit(f"{args.torch_python} not found: see {BENCH_DIR}/README.md")
    names = args.only or DEFAULT
    started = datetime.datetime.now().isoformat(timespec="seconds")
    load_before = load_average()
    results = measure(args, coopc, names)
    torch_version = next(iter(results.values()))["torch"][0]["raw"].get("version", "?")
    print(f"coopc vs PyTorch {torch_version}, batch {args.batch}, {args.rounds} interleaved rounds "
          f"of {args.warmup} warm-up + {args.steps} timed steps; started {started}, "
          f"load average {load_before} before, {load_average()} after")
    print(table(results))
    if args.raw:
        with open(args.raw, "w") as out:
            for name, runs in results.items():
                for framework, records in runs.items():
                    for index, run in enumerate(records):
                        out.write(json.dumps({"config": name, "framework": framework,
                                              "round": index, **run["raw"]}) + "\n")


if __name__ == "__main__":
    main()
