"""Accuracy with strided audio/vision encoders vs full frame rate (run by hand, not in CI).

`--av_stride=auto` is what makes MOSI-unaligned training fast on a CPU (docs/design.md §4.1); this
checks it costs no accuracy. Same data, seeds and budget, two runs of each model:
full frame rate (`--av_stride=1`) and a forced stride (default 4, MOSI's vision stride).

    python benchmarks/stride_accuracy.py [--source=synthetic/domain_a] [--stride=4]

Writes benchmarks/results/stride_accuracy.md (the two results tables) and prints them.
"""

import argparse
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results", "stride_accuracy.md")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="synthetic/domain_a")
    parser.add_argument("--stride", default="4")
    parser.add_argument("--seeds", default="1111,1112,1113")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--hidden_dim", type=int, default=64)
    args = parser.parse_args()
    sys.path.insert(0, REPO)
    import datasets
    from midg_keras.config import Config
    from midg_keras.training import experiment

    datasets.register()

    sections = [f"# Strided vs full-frame-rate encoders ({time.strftime('%Y-%m-%d %H:%M')})\n"]
    for stride in ("1", args.stride):
        with tempfile.TemporaryDirectory() as workdir:
            config = Config(
                source=args.source,
                baselines="erm",
                av_stride=stride,
                seeds=args.seeds,
                epochs=args.epochs,
                hidden_dim=args.hidden_dim,
                verbose=0,
                workdir=workdir,
            ).validate()
            start = time.perf_counter()
            experiment.run(config, log=lambda _: None)
            seconds = time.perf_counter() - start
            table = open(os.path.join(workdir, "results.md")).read().split("\nAll MMSA")[0]
        sections.append(
            f"## --av_stride={stride} ({seconds:.0f} s for all runs)\n\n"
            f"Command: `python benchmarks/stride_accuracy.py --source={args.source} "
            f"--stride={args.stride} --seeds={args.seeds} --epochs={args.epochs} "
            f"--hidden_dim={args.hidden_dim}`\n\n{table}"
        )
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        f.write("\n".join(sections))
    print("\n".join(sections))


if __name__ == "__main__":
    main()
