"""Training throughput and peak memory on MOSI-unaligned shapes (run by hand, not in CI).

The target (DEVELOPERS.md): MMSA's MulT trains at 1.6 samples/s and peaks at 16 GiB RSS on a
2-core CPU with text 50x768, audio 375x5, vision 500x20, batch 16; we aim for >= 100
samples/s under 2 GiB. Each configuration runs in its own process (peak RSS is per process)
through the real path: an MMSA-layout pickle -> `pickle:` source -> tf.data -> `model.fit`.

    python benchmarks/throughput.py                      # all configurations, ~5 min on 2 cores
    python benchmarks/throughput.py --configs=midg_auto  # one

Results are appended to benchmarks/results/throughput.jsonl and printed as a table.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results", "throughput.jsonl")
CONFIGS = {
    # name: (model, av_stride)
    "midg_auto": ("midg", "auto"),
    "erm_auto": ("erm", "auto"),
    "midg_stride1": ("midg", "1"),
}


def measure(
    name, samples, batch_size, steps, hidden_dim, av_length=0, max_frames=128, inter_op_threads=0
):
    """Runs in a child process: builds data and model, fits, returns the measurements."""
    sys.path.insert(0, REPO)
    import keras
    import tensorflow as tf

    from benchmarks import common
    from midg_keras.training import trainer

    model_name, stride = CONFIGS[name]
    with tempfile.TemporaryDirectory() as tmp:
        config, data = common.mosi_unaligned_data(
            tmp,
            samples,
            batch_size,
            av_length,
            model=model_name,
            av_stride=stride,
            hidden_dim=hidden_dim,
            max_frames=max_frames,
            inter_op_threads=inter_op_threads,
        )
        model = trainer.build_model(config, data)
        model.compile(optimizer=trainer.make_optimizer(config, steps))
        train = data.train.repeat()
        warmup, seconds, teardown = common.timed_fit(model, train, steps)
    return {
        "config": name,
        "model": model_name,
        "av_stride": stride,
        "strides": data.strides,
        "batch_size": batch_size,
        "hidden_dim": hidden_dim,
        "av_length": av_length or "stock (audio 375, vision 500)",
        "max_frames": max_frames,
        "steps": steps,
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "samples_per_second": round(steps * batch_size / seconds, 1),
        "first_fit_seconds_incl_tracing": round(warmup, 1),
        "fit_teardown_seconds": round(teardown, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "keras": keras.__version__,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--hidden_dim", type=int, default=128)
    parser.add_argument("--av_length", type=int, default=0, help="0: MOSI's 375 / 500")
    parser.add_argument("--max_frames", type=int, default=128)
    parser.add_argument("--inter_op_threads", type=int, default=0, help="0: train.py's auto")
    parser.add_argument("--results", default=RESULTS)
    parser.add_argument("--child", default="")
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, REPO)
        from midg_keras.training.allocator import cap_malloc_arenas

        cap_malloc_arenas()  # as train.py does, before TensorFlow starts
        result = measure(
            args.child,
            args.samples,
            args.batch_size,
            args.steps,
            args.hidden_dim,
            args.av_length,
            args.max_frames,
            args.inter_op_threads,
        )
        print(json.dumps(result))
        return
    rows = []
    for name in args.configs.split(","):
        command = [sys.executable, __file__, f"--child={name}"] + [
            f"--{k}={getattr(args, k)}"
            for k in (
                "samples",
                "batch_size",
                "steps",
                "hidden_dim",
                "av_length",
                "max_frames",
                "inter_op_threads",
            )
        ]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        output = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        rows.append(json.loads(output.stdout.strip().splitlines()[-1]))
        os.makedirs(os.path.dirname(args.results), exist_ok=True)
        with open(args.results, "a") as f:
            f.write(json.dumps(rows[-1]) + "\n")
    print("| config | strides | samples/s | peak RSS MiB | first fit s (tracing) | teardown s |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        strides = ", ".join(f"{k} {v}" for k, v in r["strides"].items())
        print(
            f"| {r['config']} | {strides} | {r['samples_per_second']} | {r['peak_rss_mib']} | "
            f"{r['first_fit_seconds_incl_tracing']} | {r['fit_teardown_seconds']} |"
        )


if __name__ == "__main__":
    main()
