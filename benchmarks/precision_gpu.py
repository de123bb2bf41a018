"""MIDG training throughput per `--mixed_precision` policy on MOSI-unaligned shapes.

Meant for a GPU (mixed_float16 is the GPU default; on a CPU 16-bit math is emulated and
slower). Each policy runs in its own process through the real path: an MMSA-layout pickle
with stock MOSI-unaligned shapes (text 50x768, audio 375x5, vision 500x20) -> `pickle:`
source -> tf.data -> `trainer.compiled_model` (policy, LossScaleOptimizer) -> `model.fit`.

    python benchmarks/precision_gpu.py          # float32, mixed_float16, mixed_bfloat16
    python benchmarks/precision_gpu.py --policies=float32,mixed_float16 --steps=200

Appends one JSON line per policy to benchmarks/results/precision_gpu.jsonl and prints a
Markdown table (samples/s, speed-up over float32, final loss) for
benchmarks/results/precision_gpu.md.
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results", "precision_gpu.jsonl")
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def measure(policy, samples, batch_size, steps, hidden_dim):
    """Runs in a child process; returns the measurements of one policy."""
    sys.path.insert(0, REPO)
    import keras
    import tensorflow as tf

    from benchmarks import common
    from midg_keras.config import Config
    from midg_keras.data.pipeline import prepare_data
    from midg_keras.training import precision, runtime, trainer

    class LastLoss(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.last_loss = float(logs["loss"])

    with tempfile.TemporaryDirectory() as tmp:
        path = common.write_mosi_unaligned_pickle(tmp, samples, batch_size)
        config = Config(
            source=f"pickle:{path}",
            mixed_precision=policy,
            batch_size=batch_size,
            hidden_dim=hidden_dim,
            verbose=0,
        ).validate()
        data = prepare_data(config)
        runtime.seed_everything(config)
        model = trainer.compiled_model(config, data)
        train = data.train.repeat()
        last_loss = LastLoss()
        warmup, seconds, _ = common.timed_fit(
            model, train, steps, warmup_steps=5, callbacks=[last_loss]
        )
        gpus = tf.config.list_physical_devices("GPU")
        details = tf.config.experimental.get_device_details(gpus[0]) if gpus else {}
    return {
        "policy": policy,
        "resolved_policy": precision.precision_policy_name(config),
        "loss_scaled": isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer),
        "jit_compile": bool(model.jit_compile),
        "strides": data.strides,
        "batch_size": batch_size,
        "hidden_dim": hidden_dim,
        "steps": steps,
        "samples_per_second": round(steps * batch_size / seconds, 1),
        "first_fit_seconds_incl_compile": round(warmup, 1),
        "final_loss": last_loss.last_loss,
        "device": details.get("device_name", "") or f"CPU ({os.cpu_count()} cores)",
        "machine": platform.machine(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--hidden_dim", type=int, default=128)
    parser.add_argument("--results", default=RESULTS)
    parser.add_argument("--child", default="")
    args = parser.parse_args()
    if args.child:
        result = measure(args.child, args.samples, args.batch_size, args.steps, args.hidden_dim)
        print(json.dumps(result))
        return
    rows = []
    for policy in args.policies.split(","):
        command = [sys.executable, __file__, f"--child={policy}"] + [
            f"--{k}={getattr(args, k)}" for k in ("samples", "batch_size", "steps", "hidden_dim")
        ]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        output = subprocess.run(command, capture_output=True, text=True, env=env)
        if output.returncode:
            sys.exit(f"{policy} failed:\n{output.stderr[-3000:]}")
        rows.append(json.loads(output.stdout.strip().splitlines()[-1]))
        os.makedirs(os.path.dirname(args.results), exist_ok=True)
        with open(args.results, "a") as f:
            f.write(json.dumps(rows[-1]) + "\n")
    baseline = next((r["samples_per_second"] for r in rows if r["policy"] == "float32"), None)
    print(f"Device: {rows[0]['device']}; batch {args.batch_size}, hidden {args.hidden_dim}, "
          f"{args.steps} timed steps after 5 warm-up steps.\n")  # fmt: skip
    print(
        "| policy | loss scaling | XLA | samples/s | vs float32 | first fit s (compile) "
        "| final loss |"
    )
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        speedup = f"{r['samples_per_second'] / baseline:.2f}x" if baseline else "-"
        loss = f"{r['final_loss']:.4f}" if math.isfinite(r["final_loss"]) else str(r["final_loss"])
        print(
            f"| {r['policy']} | {'yes' if r['loss_scaled'] else 'no'} | "
            f"{'on' if r['jit_compile'] else 'off'} | {r['samples_per_second']} | {speedup} | "
            f"{r['first_fit_seconds_incl_compile']} | {loss} |"
        )


if __name__ == "__main__":
    main()
