"""Training samples/s and peak RSS against the audio/vision length (run by hand).

Each point is one `benchmarks/throughput.py` child process (its own peak RSS) on a
MOSI-unaligned-shaped pickle whose audio and vision are padded to the given length
(text stays 50x768). Configurations: MIDG and ERM with `--av_stride=auto` (the frame
budget keeps the encoders' length near `--max_frames` whatever the input) and MIDG at
full frame rate (`--av_stride=1`, the shape of the plain reference model in
../shared/reference/speed_reference.md), which grows quadratically and stops at
`--full_rate_max` frames.

    python benchmarks/length_scaling.py                       # ~15 min on 2 idle cores
    python benchmarks/length_scaling.py --lengths=50,500 --steps=10

Appends to benchmarks/results/length_scaling.jsonl and draws length_scaling.png from the
newest row of each point in it.
"""

import argparse
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results")
CONFIGS = ("midg_auto", "erm_auto", "midg_stride1")


def run_point(config, length, args):
    """One throughput.py child at padded audio/vision length `length`; its result row."""
    command = [
        sys.executable,
        os.path.join(REPO, "benchmarks", "throughput.py"),
        f"--child={config}",
        f"--av_length={length}",
        f"--batch_size={args.batch_size}",
        f"--steps={args.steps}",
        f"--samples={args.samples}",
        f"--max_frames={args.max_frames}",
        "--hidden_dim=128",
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    output = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (speed, memory) = plt.subplots(1, 2, figsize=(10, 4))
    for config in CONFIGS:
        points = sorted((r["av_length"], r) for r in rows if r["config"] == config)
        if not points:
            continue
        lengths = [length for length, _ in points]
        speed.plot(lengths, [r["samples_per_second"] for _, r in points], "o-", label=config)
        memory.plot(lengths, [r["peak_rss_mib"] / 1024 for _, r in points], "o-", label=config)
    for axis, label in ((speed, "training samples/s"), (memory, "peak RSS (GiB)")):
        axis.set_xscale("log")
        axis.set_xlabel("audio/vision length (frames)")
        axis.set_ylabel(label)
        axis.grid(True, alpha=0.3)
    speed.set_yscale("log")
    speed.legend()
    figure.suptitle("MOSI-unaligned shapes (text 50x768), batch 32, 2 CPU cores")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="50,125,250,500,1000,2000")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--full_rate_max", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--max_frames", type=int, default=128)
    args = parser.parse_args()
    rows = []
    for length in [int(x) for x in args.lengths.split(",")]:
        for config in args.configs.split(","):
            if config == "midg_stride1" and length > args.full_rate_max:
                continue
            row = run_point(config, length, args)
            rows.append(row)
            print(
                f"{config:13s} length {length:5d}: {row['samples_per_second']:7.1f} samples/s, "
                f"{row['peak_rss_mib']:7.0f} MiB peak, strides {row['strides']}",
                flush=True,
            )
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "length_scaling.jsonl")
    with open(path, "a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    # The plot shows the newest measurement of every (configuration, length) in the file,
    # so a rerun of some points (e.g. more --steps for short sequences) replaces those only.
    with open(path) as f:
        newest = {(r["config"], r["av_length"]): r for r in map(json.loads, f)}
    plot(list(newest.values()), os.path.join(RESULTS, "length_scaling.png"))
    print(f"wrote {os.path.join(RESULTS, 'length_scaling.png')}")


if __name__ == "__main__":
    main()
