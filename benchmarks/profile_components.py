"""Where a MIDG training step spends its time: per-component forward+backward timings.

Builds the configured model on MOSI-unaligned shapes (text 50x768, audio 375x5, vision
500x20) through the real path (`pickle:` source -> tf.data), takes one training batch and
times, each in its own `tf.function`, the forward+backward pass of every component on the
inputs it sees in a step, then the whole Keras train step (`train_on_batch`). With
`--trace_dir` it also writes a TensorFlow profiler trace of a few train steps (open it with
TensorBoard's profile plugin) and prints the op types that took the most time in it.

    python benchmarks/profile_components.py                       # MIDG, stride auto, batch 32
    python benchmarks/profile_components.py --av_stride=1 --model=erm
    python benchmarks/profile_components.py --trace_dir=/tmp/midg_trace

Results go to benchmarks/results/profile_<model>_stride<av_stride>_b<batch>.md.
"""

import argparse
import collections
import glob
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def timed(function, repeats):
    """Median (wall, process CPU) milliseconds of `function()` after a traced warm-up call.

    CPU time is the figure to compare on a machine shared with other jobs: wall time
    there includes waiting for a core.
    """
    function()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        wall.append(1000 * (time.perf_counter() - start))
        cpu.append(1000 * (time.process_time() - start_cpu))
    return statistics.median(wall), statistics.median(cpu)


def forward_backward(tf, layer_call, variables, inputs):
    """A `tf.function` running `layer_call(*inputs)` and its gradient wrt weights and inputs."""

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = layer_call(*inputs)
            flat = tf.nest.flatten(outputs)
            total = tf.add_n(
                [tf.reduce_sum(tf.cast(x, "float32")) for x in flat if x.dtype.is_floating]
            )
        return tape.gradient(total, [*variables, *inputs])

    return step


def component_steps(tf, model, x):
    """name -> (forward+backward `tf.function`) for each component MIDG runs in a step."""
    steps = {}
    encoded = model.encode(x, training=True)
    for key in model.modalities:
        encoder = model.encoders[key]
        steps[f"encoder {key} (T={x[key].shape[1]}, stride {model.strides[key]})"] = (
            forward_backward(
                tf,
                lambda s, m, e=encoder: e(s, mask=m, training=True),
                encoder.trainable_variables,
                [x[key], x[f"{key}_mask"]],
            )
        )
    if getattr(model, "simulate_shift", False):
        steps["simulated shift (all modalities)"] = tf.function(lambda: model.simulated_inputs(x))
    if getattr(model, "injects", False):
        for key in model.modalities:
            others = [k for k in model.modalities if k != key]
            context = tf.concat([encoded[k][0] for k in others], axis=1)
            context_mask = tf.concat([encoded[k][1] for k in others], axis=1)
            adapter = model.adapters[key]
            name = f"cm_adapter {key} (q={encoded[key][0].shape[1]}, k={context.shape[1]})"
            steps[name] = forward_backward(
                tf,
                lambda q, c, qm, cm, a=adapter: a(q, c, qm, cm, training=True),
                adapter.trainable_variables,
                [encoded[key][0], context, encoded[key][1], context_mask],
            )
    steps["whole model forward (training=True)"] = tf.function(lambda: model(x, training=True))
    return steps


def top_ops_from_trace(trace_dir, count=15):
    """(op type, total ms) of the TensorFlow ops in the newest profiler trace under `trace_dir`.

    Reads the trace's XSpace protobuf: the executor's compute thread records one event per
    op, named `<op name>:<op type>`.
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    files = sorted(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True))
    if not files:
        return []
    space = xplane_pb2.XSpace()
    with open(files[-1], "rb") as f:
        space.ParseFromString(f.read())
    totals = collections.Counter()
    for plane in space.planes:
        names = {key: value.name for key, value in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = names[event.metadata_id]
                if ":" in name:
                    totals[name.rsplit(":", 1)[1]] += event.duration_ps / 1e9
    return totals.most_common(count)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="midg")
    parser.add_argument("--av_stride", default="auto")
    parser.add_argument("--max_frames", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--hidden_dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--mixed_precision", default="float32")
    parser.add_argument("--inter_op_threads", type=int, default=0, help="0: train.py's auto")
    parser.add_argument("--trace_dir", default="")
    args = parser.parse_args()

    import tensorflow as tf

    from benchmarks import common
    from midg_keras.training import trainer

    with tempfile.TemporaryDirectory() as tmp:
        config, data = common.mosi_unaligned_data(
            tmp,
            4 * args.batch_size,
            args.batch_size,
            model=args.model,
            av_stride=args.av_stride,
            max_frames=args.max_frames,
            hidden_dim=args.hidden_dim,
            mixed_precision=args.mixed_precision,
            inter_op_threads=args.inter_op_threads,
        )
        model = trainer.compiled_model(config, data)
        x, y = next(iter(data.train))

    rows = []
    for name, step in component_steps(tf, model, x).items():
        rows.append((name, timed(step, args.repeats)))
    train_step, train_step_cpu = timed(lambda: model.train_on_batch(x, y), args.repeats)
    rows.append(("whole Keras train step (train_on_batch)", (train_step, train_step_cpu)))

    trace_rows = []
    if args.trace_dir:
        tf.profiler.experimental.start(args.trace_dir)
        for _ in range(5):
            model.train_on_batch(x, y)
        tf.profiler.experimental.stop()
        trace_rows = top_ops_from_trace(args.trace_dir)

    name = f"profile_{args.model}_stride{args.av_stride}_b{args.batch_size}.md"
    lines = [
        f"# Forward+backward cost per component: `{args.model}`, av_stride {args.av_stride} "
        f"(strides {data.strides}), batch {args.batch_size}, hidden {args.hidden_dim}",
        "",
        f"`python benchmarks/profile_components.py --model={args.model} "
        f"--av_stride={args.av_stride} --batch_size={args.batch_size}` "
        f"({time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.2f}, "
        f"{os.cpu_count()} CPUs); median of {args.repeats} calls.",
        "",
        "| component | wall ms | CPU ms | share of the train step (CPU) |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {n} | {ms:.1f} | {cpu:.1f} | {100 * cpu / train_step_cpu:.0f} % |"
        for n, (ms, cpu) in rows
    ]
    lines.append("")
    lines.append(
        f"Train step: {1000 * args.batch_size / train_step:.1f} samples/s (wall), "
        f"{1000 * args.batch_size / train_step_cpu:.1f} per CPU-second."
    )
    if trace_rows:
        lines += ["", "Profiler trace, 5 train steps, host op types by total time:", ""]
        lines += ["| op | ms |", "|---|---:|"]
        lines += [f"| {op} | {ms:.1f} |" for op, ms in trace_rows]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(REPO, "benchmarks", "results", name), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
