"""2-worker vs 1-worker training throughput of `--distribute=multiworker` on this machine.

Run by hand, not in CI. Each configuration is the real CLI (`train.py`, through
`tests/multiworker_entry.py`, which records when each step ends) on one MMSA-layout pickle
with MOSI-unaligned shapes:

- `none`: one process, no strategy;
- `multiworker_1`: one process, `--distribute=multiworker` without `TF_CONFIG` (a single
  worker: the strategy's own cost);
- `multiworker_2`: two processes on localhost ports, `TF_CONFIG` as in BUILD.md; the global
  batch is split between them.

Samples/s counts global samples over the steps after `--warmup` (tracing excluded);
samples per CPU-second divides them by the CPU time all the run's processes spent in those
steps, which depends less on what else the machine is running. On one
machine the two workers share its cores and talk through localhost gRPC, so two workers
are expected to be slower than one here; the test of correctness is
tests/test_multiworker.py. Results go to benchmarks/results/multiworker.md (appended).

    python benchmarks/multiworker_throughput.py            # ~3 min on 2 idle cores
"""

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY = os.path.join(REPO, "tests", "multiworker_entry.py")
RESULTS = os.path.join(REPO, "benchmarks", "results", "multiworker.md")


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run(name, workers, flags, root, timeout):
    """Starts `workers` processes (0 = one without a strategy); returns their records."""
    ports = free_ports(max(workers, 1))
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    processes = []
    for index in range(max(workers, 1)):
        env = dict(os.environ, PYTHONPATH=REPO)
        env.pop("TF_CONFIG", None)
        if workers > 1:
            env["TF_CONFIG"] = json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}
            )
        record = os.path.join(root, f"{name}_{index}.json")
        command = [
            sys.executable,
            ENTRY,
            record,
            *flags,
            f"--distribute={'none' if workers == 0 else 'multiworker'}",
            f"--workdir={os.path.join(root, name)}",
        ]
        log = open(os.path.join(root, f"{name}_{index}.log"), "w")
        processes.append((subprocess.Popen(command, env=env, stdout=log, stderr=log), record))
    deadline = time.monotonic() + timeout
    try:
        for process, _ in processes:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for process, _ in processes:
            if process.poll() is None:
                process.kill()
    records = []
    for (process, record), index in zip(processes, range(len(processes))):
        if process.returncode != 0:
            with open(os.path.join(root, f"{name}_{index}.log")) as f:
                raise RuntimeError(f"{name} worker {index} failed:\n{f.read()[-3000:]}")
        with open(record) as f:
            records.append(json.load(f))
    return records


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--hidden_dim", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--timeout", type=int, default=900)
    args = parser.parse_args()
    sys.path.insert(0, REPO)
    from benchmarks.common import write_mosi_unaligned_pickle

    with tempfile.TemporaryDirectory() as root:
        pickle_path = write_mosi_unaligned_pickle(
            root, args.batch_size * args.steps, args.batch_size
        )
        flags = [
            f"--source=pickle:{pickle_path}",
            f"--hidden_dim={args.hidden_dim}",
            f"--batch_size={args.batch_size}",
            "--epochs=1",
            f"--steps_per_epoch={args.steps}",
            "--patience=0",
            "--verbose=0",
        ]
        rows = []
        for name, workers in (("none", 0), ("multiworker_1", 1), ("multiworker_2", 2)):
            load_before = os.getloadavg()[0]
            records = run(name, workers, flags, root, args.timeout)
            ends = records[0]["step_ends"]
            timed = len(ends) - args.warmup
            seconds = ends[-1] - ends[args.warmup - 1]
            cpu = sum(r["step_cpu"][-1] - r["step_cpu"][args.warmup - 1] for r in records)
            losses = {tuple(r["step_losses"]) for r in records}
            rows.append(
                {
                    "config": name,
                    "processes": len(records),
                    "replicas": records[0]["replicas"],
                    "samples_per_second": round(args.batch_size * timed / seconds, 1),
                    "seconds_per_step": round(seconds / timed, 3),
                    "samples_per_cpu_second": round(args.batch_size * timed / cpu, 1),
                    "workers_in_step": len(losses) == 1,
                    "load_average_1min": f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}",
                }
            )
            print(rows[-1], flush=True)
    header = (
        f"\n## {time.strftime('%Y-%m-%d %H:%M:%S')} — {os.cpu_count()} CPUs "
        f"({platform.machine()}), MIDG hidden_dim {args.hidden_dim}, t,a,v, MOSI-unaligned "
        f"shapes, global batch {args.batch_size}, {args.steps - args.warmup} timed steps after "
        f"{args.warmup}\n\n"
        "| config | processes | replicas | samples/s | s/step | samples per CPU-s | "
        "workers in step | load avg (1 min) |\n|---|---:|---:|---:|---:|---:|---|---|\n"
    )
    table = "".join(
        f"| {r['config']} | {r['processes']} | {r['replicas']} | {r['samples_per_second']} | "
        f"{r['seconds_per_step']} | {r['samples_per_cpu_second']} | {r['workers_in_step']} | "
        f"{r['load_average_1min']} |\n"
        for r in rows
    )
    new_file = not os.path.exists(RESULTS)
    with open(RESULTS, "a") as f:
        if new_file:
            f.write(
                "# `--distribute=multiworker` throughput on one machine\n\n"
                "Written by `benchmarks/multiworker_throughput.py`. Two workers on one machine "
                "share its cores and all-reduce through localhost gRPC: slower than one is "
                "expected. The point of the two-worker run is correctness "
                "(tests/test_multiworker.py).\n"
            )
        f.write(header + table)
    print(header + table)


if __name__ == "__main__":
    main()
