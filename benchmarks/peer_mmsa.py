"""MIDG next to MMSA's MulT, in one run, on the same MMSA-layout pickle (run by hand, not in CI).

Each side trains in its own process on the same file, with the same training samples and the
same number of CPU threads, and is then scored on the same test split:

- MulT: MMSA 2.2.1 (PyPI `MMSA==2.2.1`) on PyTorch 2.13 (CPU), in a virtual environment this
  script creates (default ~/.cache/midg_peer_venv; `--venv`). Torch is installed first and
  pinned, MMSA with `--no-deps`, then MMSA's other requirements
  (benchmarks/requirements-peer.txt) with torch pinned, so pip never resolves another
  (multi-GB CUDA) torch. MulT runs through MMSA's own pieces
  (`get_config_regression`, `MMDataLoader`, `AMIO`, `ATIO`'s MulT trainer and its `do_test`)
  with MMSA's MOSI defaults (batch 16); `MMSA_run` itself is bypassed (see "MMSA on CPU").
- MIDG: the library path `train.py --mode=train` takes (`prepare_data` -> `compiled_model` ->
  `trainer.fit` with source-validation model selection), `--av_stride=auto`, at batch 32 and
  at batch 16 (MulT's batch), scored with `midg_keras.metrics` (MMSA's arithmetic).

Speed is samples/s over the training batches after the first `--warmup_steps` (each side's
graph tracing / first-call costs), validation excluded; data loading of the timed batches is
included on both sides. Peak RSS is each child process's own maximum (`os.wait4`).

    python benchmarks/peer_mmsa.py                                  # fake MOSI-unaligned, 256 clips
    python benchmarks/peer_mmsa.py --samples=64 --eval_samples=16   # a quick check (~5 min)
    python benchmarks/peer_mmsa.py --pickle=/data/MOSI/Processed/unaligned_50.pkl --samples=1284
    python benchmarks/peer_mmsa.py --sides=midg                     # ours only (no venv needed)

Without `--pickle` the data is `tests/fake_mmsa.py`'s MOSI-unaligned layout (text 50x768,
audio 375x5, vision 500x20, random lengths) with RANDOM labels: its test metrics only show that
both pipelines run end to end, nothing about accuracy. `--pickle` takes any MMSA-layout file
(`--dataset` names its family); `--samples` / `--eval_samples` keep the first N clips of
train / of valid and test (both sides read the same reduced copy). `--modalities` applies to
MIDG; MulT's architecture has no modality subset and always takes all three.

MulT at ~1.6 samples/s on 2 cores needs ~13 min per epoch of MOSI's 1284 clips, so the
defaults (256 clips, 1 epoch) keep a run near 5 min; MMSA alone never stops before its
early-stopping patience (8 epochs), here `--epochs` caps both sides.

MMSA on CPU (worked around here, in the child process; site-packages is never edited):
- `MMSA_run` calls `torch.cuda.set_device`, which fails on CPU-only torch: bypassed (we drive
  AMIO/ATIO directly); `torch.cuda.set_device` is also made a no-op in case MMSA calls it.
- MMSA's MulT trainer passes `ReduceLROnPlateau(verbose=True)`, which torch 2.13 rejects:
  `ReduceLROnPlateau` is replaced by a subclass that drops `verbose`.
- MMSA's trainer loops `while True` until early stopping: its training loader is wrapped so
  the epoch after `--epochs` ends the loop; the best-validation checkpoint MMSA saved is then
  tested, exactly as `MMSA_run` does after training.
- `MMDataLoader` uses `num_workers` worker processes (MMSA_run's default 4): here 0
  (`--mult_workers`), so the peak RSS is one process's and loading runs in-process, as ours.
- MulT's unpadded Conv1d projections (MOSI: kernel 5) refuse a modality shorter than the
  kernel, e.g. the 1-frame audio/vision placeholders of a text-only feature file: such a
  kernel is capped at the sequence length (`shorten_conv_kernels`, recorded in the row).
- torch's OpenMP pool spins while it waits (OMP_WAIT_POLICY=ACTIVE behaviour); on a machine
  shared with other jobs that made MulT 6x slower and burn 7x the CPU per batch. The children
  run with OMP_WAIT_POLICY=PASSIVE (`--omp_wait_policy=default` leaves torch's default).

Writes benchmarks/results/peer_mmsa.md (the table of the last run) and appends one row per run
to benchmarks/results/peer_mmsa.jsonl.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(REPO, "benchmarks", "results")
DEFAULT_VENV = os.path.join(os.path.expanduser("~"), ".cache", "midg_peer_venv")
TORCH = "torch==2.13.0"
MMSA = "MMSA==2.2.1"
# MMSA 2.2.1's Requires-Dist minus torch (installed first, then pinned), at tested versions.
PEER_REQUIREMENTS = os.path.join(REPO, "benchmarks", "requirements-peer.txt")
METRIC_KEYS = ("Non0_acc_2", "Non0_F1_score", "Has0_acc_2", "Mult_acc_7", "MAE", "Corr")


# --------------------------------------------------------------------------------------------
# The virtual environment for MMSA.


def ensure_venv(venv, index_url="", log=print):
    """Creates `venv` with torch 2.13 (CPU) and MMSA 2.2.1 unless it already has them."""
    python = os.path.join(venv, "bin", "python")
    probe = "import torch, MMSA.trains, MMSA.models; print(torch.__version__)"
    if os.path.exists(python):
        done = subprocess.run([python, "-c", probe], capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip().startswith("2.13.0"):
            return python
        log(f"{venv} lacks torch 2.13 or MMSA; (re)installing into it")
    else:
        log(f"creating {venv} (torch 2.13 CPU + MMSA 2.2.1; a few minutes, once)")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    torch_pip = pip + (["--index-url", index_url] if index_url else [])
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(TORCH + "\n")  # whatever MMSA's dependencies ask, torch stays 2.13.0
        constraints = f.name
    try:
        subprocess.run(torch_pip + [TORCH], check=True)
        subprocess.run(pip + ["--no-deps", MMSA], check=True)
        subprocess.run(pip + ["-c", constraints, "-r", PEER_REQUIREMENTS], check=True)
    finally:
        os.unlink(constraints)
    subprocess.run([python, "-c", probe], check=True)
    return python


# --------------------------------------------------------------------------------------------
# The data both sides read.


def write_data(directory, args):
    """The pickle both sides train on: the fake MOSI-unaligned file, or a reduced `--pickle`."""
    import pickle

    import numpy as np

    sys.path.insert(0, REPO)
    path = os.path.join(directory, f"{args.dataset}_peer.pkl")
    if not args.pickle:
        from tests.fake_mmsa import STOCK_DIMS, STOCK_LENGTHS, make_fake_mmsa, write_pickle

        eval_samples = args.eval_samples or 64
        raw = make_fake_mmsa(
            "mosi_unaligned",
            sizes=(args.samples or 256, eval_samples, eval_samples),
            seed=args.seed,
            dims=STOCK_DIMS["mosi_unaligned"],
            lengths=STOCK_LENGTHS["mosi_unaligned"],
        )
        write_pickle(raw, path)
        return path, "fake MOSI-unaligned (random labels)"
    if not args.samples and not args.eval_samples:
        return args.pickle, args.pickle
    # The user's own feature file (trusted input, as for train.py's pickle: sources).
    with open(args.pickle, "rb") as f:
        raw = pickle.load(f)
    limits = {"train": args.samples, "valid": args.eval_samples, "test": args.eval_samples}
    for split, limit in limits.items():
        if not limit or split not in raw:
            continue
        size = len(raw[split]["regression_labels"])
        for key, value in raw[split].items():
            if isinstance(value, (list, np.ndarray)) and len(value) == size:
                raw[split][key] = value[:limit]
    with open(path, "wb") as f:
        pickle.dump(raw, f, protocol=4)
    kept = f"first {args.samples or 'all'} train, {args.eval_samples or 'all'} valid/test clips"
    return path, f"{args.pickle} ({kept})"


# --------------------------------------------------------------------------------------------
# The MulT side (runs in the venv's python: stdlib, torch and MMSA only).


class _EpochLimit(Exception):
    pass


class _TimedLoader:
    """MMSA's train DataLoader, timed per batch; its `epochs + 1`-th pass ends training."""

    def __init__(self, loader, epochs):
        self.loader, self.epochs, self.epoch = loader, epochs, 0
        self.passes = []  # per epoch: (request times incl. the final one, batch sizes)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self.epoch += 1
        if self.epoch > self.epochs:
            raise _EpochLimit()
        times, sizes = [], []
        self.passes.append((times, sizes))
        iterator = iter(self.loader)
        while True:
            times.append((time.perf_counter(), time.process_time()))
            try:
                batch = next(iterator)
            except StopIteration:
                return
            sizes.append(len(batch["labels"]["M"]))
            yield batch


def timed_rate(passes, warmup_steps):
    """(samples, wall s, process CPU s) of every pass's batches, skipping the warm-up.

    `passes`: per epoch, ([(wall, cpu) before the first batch and after each], batch sizes).
    """
    samples = seconds = cpu_seconds = 0.0
    for index, (times, sizes) in enumerate(passes):
        skip = min(warmup_steps, len(sizes) - 1) if index == 0 else 0
        samples += sum(sizes[skip:])
        seconds += times[len(sizes)][0] - times[skip][0]
        cpu_seconds += times[len(sizes)][1] - times[skip][1]
    return samples, seconds, cpu_seconds


def shorten_conv_kernels(config, dataset):
    """Caps MulT's Conv1d kernel of each modality at its sequence length; returns the caps.

    MulT's projections are unpadded Conv1d layers (MOSI: kernel 5), so a modality stored
    with fewer steps (e.g. the 1-frame audio/vision placeholders of a text-only file) makes
    torch refuse the input. Such a modality carries no signal, and a kernel of its length
    keeps every weight in use.
    """
    shortened = {}
    for letter, name in (("l", "text"), ("a", "audio"), ("v", "vision")):
        key = f"conv1d_kernel_size_{letter}"
        features = getattr(dataset, name, None)
        if features is None or key not in config or features.ndim != 3:
            continue
        length = features.shape[1]
        if length < config[key]:
            shortened[name] = f"{config[key]} -> {length}"
            config[key] = length
    return shortened


def mult_child(args):
    os.environ.setdefault("TQDM_DISABLE", "1")
    import logging

    import torch
    import torch.optim.lr_scheduler as lr_scheduler

    torch.set_num_threads(args.threads)
    torch.cuda.set_device = lambda *a, **k: None  # CPU-only torch raises in MMSA_run

    class ReduceLROnPlateau(lr_scheduler.ReduceLROnPlateau):
        """torch 2.13 removed `verbose`; MMSA's MulT trainer still passes it."""

        def __init__(self, *a, verbose=None, **kw):
            super().__init__(*a, **kw)

    lr_scheduler.ReduceLROnPlateau = ReduceLROnPlateau
    import MMSA.trains.singleTask.MULT as mult_trainer
    from MMSA.config import get_config_regression
    from MMSA.data_loader import MMDataLoader
    from MMSA.models import AMIO
    from MMSA.trains import ATIO
    from MMSA.utils import count_parameters, setup_seed

    mult_trainer.ReduceLROnPlateau = ReduceLROnPlateau  # bound at MMSA's import
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    config = get_config_regression("mult", args.dataset)
    config.update(
        featurePath=args.data,
        custom_feature="",
        feature_T="",
        feature_A="",
        feature_V="",
        device=torch.device("cpu"),
        train_mode="regression",
        cur_seed=1,
        model_save_path=os.path.join(args.workdir, f"mult-{args.dataset}.pth"),
    )
    if args.mult_batch_size:
        config["batch_size"] = args.mult_batch_size
    setup_seed(args.seed)
    start = time.perf_counter()
    loaders = MMDataLoader(config, args.mult_workers)
    shortened = shorten_conv_kernels(config, loaders["train"].dataset)
    model = AMIO(config).to(config["device"])
    trainer = ATIO().getTrain(config)
    timed = _TimedLoader(loaders["train"], args.epochs)
    loaders["train"] = timed
    try:
        trainer.do_train(model, loaders)
    except _EpochLimit:
        pass
    model.load_state_dict(torch.load(config["model_save_path"]))  # MMSA_run's _run does this
    test = trainer.do_test(model, loaders["test"], mode="TEST")
    samples, seconds, cpu_seconds = timed_rate(timed.passes, args.warmup_steps)
    return {
        "side": "MulT (MMSA 2.2.1, PyTorch)",
        "batch_size": config["batch_size"],
        "epochs": len(timed.passes),
        "train_samples": len(loaders["train"].loader.dataset),
        "test_samples": len(loaders["test"].dataset),
        "timed_samples": samples,
        "samples_per_second": round(samples / seconds, 2),
        "samples_per_cpu_second": round(samples / cpu_seconds, 2),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "parameters": count_parameters(model),
        "modalities": "t,a,v",
        "conv_kernels_shortened": shortened,
        "test": {key: float(test[key]) for key in METRIC_KEYS},
        "framework": f"torch {torch.__version__}, {torch.get_num_threads()} threads",
    }


# --------------------------------------------------------------------------------------------
# The MIDG side (runs in this python).


def midg_child(args):
    sys.path.insert(0, REPO)
    from midg_keras.training.allocator import cap_malloc_arenas

    cap_malloc_arenas()  # as train.py does, before TensorFlow starts
    import keras
    import numpy as np
    import tensorflow as tf

    from midg_keras import metrics as midg_metrics
    from midg_keras.config import Config
    from midg_keras.constants import SELECTION_METRIC
    from midg_keras.data.pipeline import prepare_data
    from midg_keras.training import runtime, trainer
    from midg_keras.training.prediction import predict

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    config = Config(
        source=f"pickle:{args.data}@{args.dataset}",
        model="midg",
        av_stride=args.av_stride,
        batch_size=args.batch_size,
        epochs=args.epochs,
        patience=0,
        modalities=args.modalities,
        seed=args.seed,
        verbose=0,
    ).validate()
    runtime.configure_threads(config)  # what train.py does first
    runtime.seed_everything(config)
    start = time.perf_counter()
    data = prepare_data(config)
    model = trainer.compiled_model(config, data)

    class BatchTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.passes = []

        def on_epoch_begin(self, epoch, logs=None):
            self.passes.append(([], []))

        def on_train_batch_begin(self, batch, logs=None):
            times, _ = self.passes[-1]
            if not times:
                times.append((time.perf_counter(), time.process_time()))

        def on_train_batch_end(self, batch, logs=None):
            times, sizes = self.passes[-1]
            times.append((time.perf_counter(), time.process_time()))
            sizes.append(min(config.batch_size, examples - batch * config.batch_size))

    examples = data.sources[0].num_examples["train"]
    timer = BatchTimer()
    best_path = os.path.join(args.workdir, "model.keras")
    checkpoint = keras.callbacks.ModelCheckpoint(
        best_path, monitor=SELECTION_METRIC, mode="min", save_best_only=True
    )
    trainer.fit(model, config, data, callbacks=[timer, checkpoint])
    best = keras.saving.load_model(best_path)  # train.py tests the best validation epoch too
    _, labels, predictions = predict(best, data.test)
    scale = data.target.label_scale
    test = midg_metrics.metrics_for_family(data.target.family)(predictions * scale, labels * scale)
    samples, seconds, cpu_seconds = timed_rate(timer.passes, args.warmup_steps)
    return {
        "side": "MIDG (ours, Keras 3 + TF)",
        "batch_size": config.batch_size,
        "epochs": len(timer.passes),
        "train_samples": examples,
        "test_samples": data.target.num_examples["test"],
        "timed_samples": samples,
        "samples_per_second": round(samples / seconds, 2),
        "samples_per_cpu_second": round(samples / cpu_seconds, 2),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "parameters": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
        "modalities": args.modalities,
        "strides": dict(data.strides),
        "test": {key: float(test[key]) for key in METRIC_KEYS},
        "framework": (
            f"keras {keras.__version__}, tf {tf.__version__}, "
            f"{tf.config.threading.get_intra_op_parallelism_threads()} intra-op threads"
        ),
    }


# --------------------------------------------------------------------------------------------
# The parent: data, children, table.


def run_child(python, side, args, data, workdir, batch_size=0):
    """Runs one side in its own process; its result dict plus `peak_rss_mib` (os.wait4)."""
    command = [python, os.path.abspath(__file__), f"--child={side}", f"--data={data}"]
    command += [f"--workdir={workdir}", f"--batch_size={batch_size}"]
    for key in ("dataset", "epochs", "warmup_steps", "threads", "seed", "modalities"):
        command.append(f"--{key}={getattr(args, key)}")
    command += [f"--av_stride={args.av_stride}", f"--mult_batch_size={args.mult_batch_size}"]
    command += [f"--mult_workers={args.mult_workers}"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    env["OMP_NUM_THREADS"] = str(args.threads)
    if args.omp_wait_policy != "default":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    log_path = os.path.join(workdir, f"{side}_{batch_size}.log")
    with open(log_path, "w") as log, open(log_path + ".out", "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=log, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    with open(log_path + ".out") as f:
        lines = f.read().strip().splitlines()
    if os.waitstatus_to_exitcode(status) != 0 or not lines:
        with open(log_path) as f:
            tail = f.read()[-4000:]
        raise RuntimeError(f"{side} (batch {batch_size}) failed:\n{tail}")
    result = json.loads(lines[-1])
    result["peak_rss_mib"] = round(usage.ru_maxrss / 1024, 1)
    return result


def load_average():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def markdown(rows, meta):
    mult = next((r for r in rows if r["side"].startswith("MulT")), None)
    lines = [
        f"# MIDG next to MMSA's MulT ({meta['time']})",
        "",
        f"Data: {meta['data']}; {meta['train_samples']} training clips, {meta['epochs']} "
        f"epoch(s), test split of {meta['test_samples']} clips. {meta['threads']} CPU threads "
        f"per side (OMP_WAIT_POLICY {meta['omp_wait_policy']}) on a {meta['cpus']}-core "
        f"{meta['machine']} machine; 1-min load average "
        f"{meta['load_before']} before, {meta['load_after']} after the run.",
        "",
        "| side | batch | samples/s | samples/CPU-s | peak RSS MiB | ours/MulT samples/s "
        "| ours/MulT samples/CPU-s | MulT/ours peak RSS | " + " | ".join(METRIC_KEYS) + " |",
        "|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(METRIC_KEYS),
    ]
    for r in rows:
        ratio_speed = ratio_cpu = ratio_rss = "-"
        if mult is not None and r is not mult:
            ratio_speed = f"{r['samples_per_second'] / mult['samples_per_second']:.1f}x"
            ratio_cpu = f"{r['samples_per_cpu_second'] / mult['samples_per_cpu_second']:.1f}x"
            ratio_rss = f"{mult['peak_rss_mib'] / r['peak_rss_mib']:.1f}x"
        metrics = " | ".join(f"{r['test'][k]:.4f}" for k in METRIC_KEYS)
        lines.append(
            f"| {r['side']} | {r['batch_size']} | {r['samples_per_second']} | "
            f"{r['samples_per_cpu_second']} | {r['peak_rss_mib']} | {ratio_speed} | "
            f"{ratio_cpu} | {ratio_rss} | {metrics} |"
        )
    lines += [
        "",
        "samples/s: training batches after the first "
        f"{meta['warmup_steps']} (tracing / first calls), validation excluded, data loading "
        "included. samples/CPU-s: the same samples per second of the process's CPU time (all "
        "its threads): on a machine shared with other jobs, the figure to compare, since wall "
        "time there includes waiting for a core. Peak RSS: each side's own process. Test metrics: MMSA's regression keys "
        "(MMSA's `MetricsTop` for MulT, `midg_keras.metrics` for MIDG) of the best-validation "
        "epoch.",
    ]
    if meta["random_labels"]:
        lines.append(
            "The labels are random (tests/fake_mmsa.py): the metrics only show that both "
            "pipelines train and score end to end; they say nothing about accuracy."
        )
    lines.append(f"\nCommand: `{meta['command']}`")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pickle", default="", help="an MMSA-layout pickle (default: fake)")
    parser.add_argument("--dataset", default="mosi", choices=("mosi", "mosei", "sims"))
    parser.add_argument("--samples", type=int, default=0, help="first N train clips (fake: 256)")
    parser.add_argument("--eval_samples", type=int, default=0, help="first N valid/test clips")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--warmup_steps", type=int, default=2)
    parser.add_argument("--batch_sizes", default="32,16", help="MIDG batch sizes")
    parser.add_argument("--mult_batch_size", type=int, default=0, help="0: MMSA's (16)")
    parser.add_argument("--mult_workers", type=int, default=0, help="MMDataLoader num_workers")
    parser.add_argument("--av_stride", default="auto")
    parser.add_argument("--modalities", default="t,a,v", help="MIDG's; MulT takes all three")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--omp_wait_policy",
        default="PASSIVE",
        help="OMP_WAIT_POLICY of the children (torch's OpenMP pool; TF does not use OpenMP); "
        "`default` leaves it unset. ACTIVE (OpenMP's spinning) made MulT 6x slower and burn 7x "
        "the CPU on a machine loaded with other jobs",
    )
    parser.add_argument("--seed", type=int, default=1111)
    parser.add_argument("--sides", default="mult,midg")
    parser.add_argument("--venv", default=DEFAULT_VENV)
    parser.add_argument(
        "--torch_index_url",
        default="",
        help="pip index for torch, e.g. https://download.pytorch.org/whl/cpu off this machine",
    )
    parser.add_argument("--results", default=RESULTS_DIR)
    # Internal: one side in a child process.
    parser.add_argument("--child", default="")
    parser.add_argument("--data", default="")
    parser.add_argument("--workdir", default="")
    parser.add_argument("--batch_size", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        result = (mult_child if args.child == "mult" else midg_child)(args)
        print(json.dumps(result), flush=True)
        return

    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    load_before = load_average()
    if load_before is not None and load_before > 0.5 * (os.cpu_count() or 1):
        print(
            f"note: 1-min load average {load_before:.1f} on {os.cpu_count()} CPUs: other jobs "
            "share the cores, so samples/s is unreliable; compare samples/CPU-s, or rerun on an "
            "idle machine.",
            flush=True,
        )
    with tempfile.TemporaryDirectory(prefix="midg_peer_") as tmp:
        data, description = write_data(tmp, args)
        rows = []
        if "mult" in sides:
            python = ensure_venv(args.venv, args.torch_index_url)
            workdir = os.path.join(tmp, "mult")
            os.makedirs(workdir)
            print("training MulT ...", flush=True)
            rows.append(run_child(python, "mult", args, data, workdir))
            print(json.dumps(rows[-1]), flush=True)
        if "midg" in sides:
            for batch_size in [int(b) for b in args.batch_sizes.split(",") if b.strip()]:
                workdir = os.path.join(tmp, f"midg_{batch_size}")
                os.makedirs(workdir)
                print(f"training MIDG, batch {batch_size} ...", flush=True)
                rows.append(run_child(sys.executable, "midg", args, data, workdir, batch_size))
                print(json.dumps(rows[-1]), flush=True)
        shutil.rmtree(tmp, ignore_errors=True)
    if not rows:
        return
    meta = {
        "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "data": description,
        "random_labels": not args.pickle,
        "train_samples": rows[0]["train_samples"],
        "test_samples": rows[0]["test_samples"],
        "epochs": args.epochs,
        "warmup_steps": args.warmup_steps,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "load_before": None if load_before is None else round(load_before, 2),
        "load_after": None if load_average() is None else round(load_average(), 2),
        "omp_wait_policy": args.omp_wait_policy,
        "command": " ".join(["python", "benchmarks/peer_mmsa.py", *sys.argv[1:]]),
    }
    table = markdown(rows, meta)
    print(table)
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, "peer_mmsa.md"), "w") as f:
        f.write(table)
    with open(os.path.join(args.results, "peer_mmsa.jsonl"), "a") as f:
        f.write(json.dumps({**meta, "rows": rows}) + "\n")
    mult = next((r for r in rows if r["side"].startswith("MulT")), None)
    if mult:
        for r in rows:
            if r is not mult:
                print(
                    f"batch {r['batch_size']}: ours/MulT samples/s "
                    f"{r['samples_per_second'] / mult['samples_per_second']:.1f}x, "
                    f"MulT/ours peak RSS {mult['peak_rss_mib'] / r['peak_rss_mib']:.1f}x"
                )


if __name__ == "__main__":
    main()
