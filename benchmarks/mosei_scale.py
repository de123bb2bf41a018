"""MOSEI-scale training: epoch time and RSS of `train.py` on MOSEI-unaligned shapes (by hand).

MMSA's MOSEI `unaligned_50.pkl` holds 16 326 / 1 871 / 4 659 clips of text 50x768,
audio 500x74 and vision 500x35 (float32: 8.6 GB of features). This writes a file of that
layout and size (random features, built in chunks so that writing needs little more than
the file's size; reused when `--pickle` exists), then runs the real CLI on it,

    python train.py --source=pickle:FILE@mosei --seeds=... --epochs=1 --verbose=2

and samples the child's resident memory twice a second. The arrays are read once for all
seeds (`pipeline.open_sources`) and streamed through `tf.data` from where they lie, so the
RSS after loading should stay flat across seeds instead of growing by a copy per seed.

    python benchmarks/mosei_scale.py                         # full size, 2 seeds (~15 min)
    python benchmarks/mosei_scale.py --train=2000 --seeds=1111,1112,1113   # a quick check

Writes benchmarks/results/mosei_scale.md and appends a row to mosei_scale.jsonl.
"""

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
RESULTS = os.path.join(REPO, "benchmarks", "results")
MOSEI_SIZES = (16326, 1871, 4659)
CHUNK = 1000


def mosei_split(n, seed, first_clip):
    """One split of a MOSEI-unaligned-shaped MMSA dict, built `CHUNK` clips at a time.

    Each chunk is copied into preallocated arrays and dropped, so building needs the
    split's size plus one chunk.
    """
    from tests.fake_mmsa import STOCK_DIMS, STOCK_LENGTHS, make_fake_mmsa

    split = {}
    for index, start in enumerate(range(0, n, CHUNK)):
        size = min(CHUNK, n - start)
        chunk = make_fake_mmsa(
            "mosei_unaligned",
            sizes=(size, 1, 1),
            seed=seed * 1000 + index,
            dims=STOCK_DIMS["mosei_unaligned"],
            lengths=STOCK_LENGTHS["mosei_unaligned"],
        )["train"]
        for key, value in chunk.items():
            if isinstance(value, list):
                split.setdefault(key, []).extend(value)
                continue
            if key not in split:
                split[key] = np.empty((n,) + value.shape[1:], value.dtype)
            split[key][start : start + size] = value
        del chunk
    # Chunks restart their video numbering: give every clip its own video.
    split["id"] = np.array([f"v{first_clip + i:07d}$_$1" for i in range(n)], dtype=object)
    return split


def write_mosei_pickle(path, sizes):
    import pickle

    raw, first = {}, 0
    for split_index, (split, n) in enumerate(zip(("train", "valid", "test"), sizes)):
        raw[split] = mosei_split(n, split_index, first)
        first += n
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(raw, f, protocol=pickle.HIGHEST_PROTOCOL)


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        return 0.0
    return 0.0


def run_train(pickle_path, seeds, epochs, batch_size, workdir):
    """Runs train.py, returning its log events with times and RSS, and the peak RSS."""
    command = [
        sys.executable,
        os.path.join(REPO, "train.py"),
        f"--source=pickle:{pickle_path}@mosei",
        f"--seeds={seeds}",
        f"--epochs={epochs}",
        f"--batch_size={batch_size}",
        "--verbose=2",
        f"--workdir={workdir}",
    ]
    start = time.perf_counter()
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    samples = []

    def sample():
        while child.poll() is None:
            samples.append((time.perf_counter() - start, rss_mib(child.pid)))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    events = []
    for line in child.stdout:
        line = line.rstrip()
        seconds = time.perf_counter() - start
        if line.startswith("[") or "/step" in line:
            events.append(
                {"t": round(seconds, 1), "rss_mib": round(rss_mib(child.pid)), "log": line}
            )
            print(f"{seconds:7.1f} s {events[-1]['rss_mib']:6d} MiB  {line}", flush=True)
    child.wait()
    sampler.join()
    if child.returncode:
        raise SystemExit(f"train.py exited with {child.returncode}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return events, samples, peak, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pickle", default="/tmp/midg_mosei_scale/unaligned_50.pkl")
    parser.add_argument("--train", type=int, default=MOSEI_SIZES[0])
    parser.add_argument("--seeds", default="1111,1112")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--workdir", default="/tmp/midg_mosei_scale/run")
    args = parser.parse_args()

    sizes = (args.train,) + tuple(
        max(1, round(n * args.train / MOSEI_SIZES[0])) for n in MOSEI_SIZES[1:]
    )
    if not os.path.exists(args.pickle):
        start = time.perf_counter()
        write_mosei_pickle(args.pickle, sizes)
        print(f"wrote {args.pickle} ({time.perf_counter() - start:.0f} s)")
    file_gib = os.path.getsize(args.pickle) / 2**30
    import shutil

    shutil.rmtree(args.workdir, ignore_errors=True)
    events, samples, peak, seconds = run_train(
        args.pickle, args.seeds, args.epochs, args.batch_size, args.workdir
    )
    epochs = [e for e in events if "/step" in e["log"]]
    seed_starts = [e for e in events if re.match(r"\[\w+\] seed \d+ ->", e["log"])]
    rows = [
        f"# MOSEI-scale training ({time.strftime('%Y-%m-%d %H:%M')}, load "
        f"{os.getloadavg()[0]:.1f} at the end, {os.cpu_count()} CPUs)",
        "",
        f"`python benchmarks/mosei_scale.py --train={args.train} --seeds={args.seeds} "
        f"--epochs={args.epochs} --batch_size={args.batch_size}`: a {file_gib:.1f} GiB "
        f"MMSA pickle of {sizes[0]} / {sizes[1]} / {sizes[2]} clips (MOSEI-unaligned shapes), "
        "trained by `train.py` (MIDG defaults, `--av_stride=auto`).",
        "",
        f"- whole run: {seconds:.0f} s; peak RSS {peak / 1024:.2f} GiB",
        "- RSS when each seed starts (the arrays are loaded before the first): "
        + ", ".join(
            f"{e['log'].split(' ->')[0]} {e['rss_mib'] / 1024:.2f} GiB" for e in seed_starts
        ),
        "- Keras' epoch lines (`--verbose=2`): "
        + "; ".join(f"`{' - '.join(e['log'].split(' - ')[:3])}`" for e in epochs),
    ]
    text = "\n".join(rows) + "\n"
    print(text)
    with open(os.path.join(RESULTS, "mosei_scale.md"), "w") as f:
        f.write(text)
    with open(os.path.join(RESULTS, "mosei_scale.jsonl"), "a") as f:
        record = {
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "sizes": sizes,
            "file_gib": round(file_gib, 2),
            "seconds": round(seconds),
            "peak_rss_mib": round(peak),
            "events": events,
            "rss_samples": samples[:: max(1, len(samples) // 200)],
        }
        f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
