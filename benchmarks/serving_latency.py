"""Serving latency of the exported SavedModel on MOSI-unaligned shapes (run by hand, not in CI).

Builds MIDG the way `train.py` does for MOSI-unaligned data (text 50x768, audio 375x5, vision
500x20, `--av_stride=auto`, default flags; weights do not change the latency, so by default it
is not trained: `--train_steps=N` fits N steps first), exports it through
`midg_keras.export.export_model` (the `--mode=export` path), loads the SavedModel with
`tf.saved_model.load` and times its `serving_default` signature, with TensorFlow's default
threads as a fresh serving process has them (`--inter_op_threads` to change):

- batch-1 latency (median, p90 over `--calls` calls after `--warmup` calls), for a request
  padded to the stock lengths (what a client sending MMSA-padded features does) and for one
  cut to typical true lengths (text 20, audio 150, vision 200 frames);
- batch-64 throughput (samples/s) at the stock lengths;
- where the time goes: the same model exported without the graph's feature-value check
  (`_check_values`: finite and within +-1e6) and without any request check, and the model's
  own `tf.function(model(x, training=False))` (no signature wrapper at all); and a suggested
  fix, the same checks with their messages built only when a check fails (`_lazy_check`;
  checked here to still refuse a NaN feature and a bad length with the shipped message).
  These variants exist only inside this script (the export code is patched in memory,
  never edited);
- batch-1 through the REST stand-in (`midg_keras.serving.rest_standin`, JSON over HTTP on
  127.0.0.1), which adds JSON encoding/decoding of ~50k floats per request.

Variants are timed in interleaved rounds, so a change in machine load hits them alike.

    python benchmarks/serving_latency.py                 # ~2 min on 2 idle cores
    python benchmarks/serving_latency.py --calls=50 --rest_calls=10   # a quick check

Writes benchmarks/results/serving_latency.md (the last run) and appends a row to
benchmarks/results/serving_latency.jsonl. Target: batch-1 median <= 5 ms.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(REPO, "benchmarks", "results")
TYPICAL_LENGTHS = {"text": 20, "audio": 150, "vision": 200}
TARGET_MS = 5.0


def build_model(tmp, train_steps):
    """MIDG for MOSI-unaligned shapes via the training path (fake data, stock shapes)."""
    import keras

    from benchmarks import common
    from midg_keras.config import Config
    from midg_keras.data.pipeline import prepare_data
    from midg_keras.training import trainer

    path = common.write_mosi_unaligned_pickle(tmp, 64, 16)
    config = Config(source=f"pickle:{path}", model="midg", verbose=0).validate()
    data = prepare_data(config)
    keras.utils.set_random_seed(0)
    model = trainer.compiled_model(config, data)
    if train_steps:
        model.fit(data.train.repeat(), epochs=1, steps_per_epoch=train_steps, verbose=0)
    return model, data, config


def export_variants(model, root):
    """{variant: SavedModel path}: as shipped, without the value check, without any check."""
    import tensorflow as tf

    from midg_keras.export import saved_model

    def export(folder):
        return saved_model.export_model(model, os.path.join(root, folder), label_scale=3.0)

    paths = {"export (as shipped)": export("shipped")}
    original_values, original_check = saved_model._check_values, saved_model._check
    try:
        saved_model._check_values = lambda key, features: tf.no_op()
        paths["export without value check"] = export("no_value_check")
        saved_model._check = lambda condition, template, values: tf.no_op()
        paths["export without any check"] = export("no_check")
        saved_model._check_values, saved_model._check = _lazy_check_values, _lazy_check
        paths["export, checks format messages only on failure"] = export("lazy_check")
    finally:
        saved_model._check_values, saved_model._check = original_values, original_check
    return paths


def _lazy_check(condition, template, values, make_values=None):
    """A suggested `_check`: the message (and its values) is only built when the check fails.

    `tf.debugging.Assert` with a string tensor runs `tf.strings.format` (and whatever computes
    its values) on every request, failing or not; inside `tf.cond`'s false branch it runs only
    for a bad request, with the same InvalidArgument and message.
    """
    import tensorflow as tf

    def fail():
        found = make_values() if make_values else values
        message = tf.strings.format(template, found, summarize=8)
        with tf.control_dependencies([tf.debugging.Assert(False, [message], name="check_request")]):
            return tf.constant(False)

    return tf.cond(condition, lambda: tf.constant(True), fail)


def _lazy_check_values(key, features):
    """`_check_values` with the offending-value search moved into the failure branch."""
    import tensorflow as tf

    from midg_keras.export.saved_model import MAX_ABS_FEATURE

    within = tf.abs(features) <= MAX_ABS_FEATURE

    def found():
        bad = tf.where(tf.logical_not(within))
        first = bad[:1]
        return [
            tf.shape(bad)[0],
            tf.reshape(tf.gather_nd(features, first), [-1]),
            tf.reshape(first, [-1]),
        ]

    return _lazy_check(
        tf.reduce_all(within),
        key + ": feature values must be finite and within +-1e6; {} are not, the first {} at "
        "[example, frame, feature] = {}",
        None,
        make_values=found,
    )


def check_refusals(signature):
    """The lazy-message variant still refuses bad requests with the shipped messages."""
    import tensorflow as tf

    from tests.fake_mmsa import STOCK_DIMS

    found = {}
    base = make_request(1, {"text": 5, "audio": 7, "vision": 9}, STOCK_DIMS["mosi_unaligned"])
    bad_value = dict(base, audio=base["audio"].copy())
    bad_value["audio"][0, 2, 1] = float("nan")
    bad_length = dict(base, vision_length=base["vision_length"] + 100)
    expected = {
        "nan feature": (bad_value, "audio: feature values must be finite"),
        "length > time": (bad_length, "vision_length: lengths must be in [1, time]"),
    }
    for name, (request, message) in expected.items():
        try:
            signature(**{k: tf.constant(v) for k, v in request.items()})
            found[name] = "accepted (WRONG)"
        except tf.errors.InvalidArgumentError as error:
            found[name] = "refused" if message in error.message else f"other message: {error}"
    return found


def make_request(batch, lengths, dims, seed=0):
    """Named numpy serving inputs: features padded to `lengths`, true lengths in [len/2, len]."""
    import numpy as np

    rng = np.random.default_rng(seed)
    inputs = {}
    for key, time_steps in lengths.items():
        inputs[key] = np.zeros([batch, time_steps, dims[key]], np.float32)
        true = rng.integers(max(1, time_steps // 2), time_steps + 1, size=batch).astype(np.int32)
        true[0] = time_steps  # at least one full-length example
        for row, n in enumerate(true):
            inputs[key][row, :n] = rng.standard_normal([n, dims[key]]).astype(np.float32)
        inputs[f"{key}_length"] = true
    return inputs


def profile_components(signature, request, calls, trace_dir):
    """Op time per call of `signature`, by model component, from a TF profiler trace.

    Ops are grouped by the first two name scopes inside the signature (e.g.
    `midg/encoder_vision`); ops outside the model (the request checks, masks, output
    checks) form `signature (checks, masks, outputs)`. Returns [(component, ms per call,
    events per call)], largest first, plus the per-call totals. (The number of op events
    the profiler keeps varies between runs; the times are what to read.)
    """
    import collections
    import glob

    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    tensors = {name: tf.constant(value) for name, value in request.items()}
    for _ in range(5):
        signature(**tensors)
    tf.profiler.experimental.start(trace_dir)
    for _ in range(calls):
        signature(**tensors)["sentiment"].numpy()
    tf.profiler.experimental.stop()
    path = sorted(glob.glob(os.path.join(trace_dir, "plugins", "profile", "*", "*.xplane.pb")))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    milliseconds, counts = collections.Counter(), collections.Counter()
    host_call = 0.0
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if line.name == "python" and name == "signature_wrapper_serve":
                    host_call += event.duration_ps / 1e9
                if not name.startswith("StatefulPartitionedCall/") or ":" not in name:
                    continue
                scopes = name.split(":")[0].split("/")[1:-1]
                if scopes and scopes[0].startswith(("midg", "erm")):
                    component = "/".join(
                        s.rsplit("_", 1)[0] if s[-1].isdigit() else s for s in scopes[:2]
                    )
                else:
                    component = "signature (checks, masks, outputs)"
                milliseconds[component] += event.duration_ps / 1e9
                counts[component] += 1
    rows = [
        (component, ms / calls, counts[component] / calls)
        for component, ms in milliseconds.most_common()
    ]
    totals = {
        "op_ms_per_call": sum(milliseconds.values()) / calls,
        "ops_per_call": sum(counts.values()) / calls,
        "signature_call_ms": host_call / calls,
    }
    return rows, totals


def percentile(values, q):
    import numpy as np

    return float(np.percentile(np.asarray(values) * 1000.0, q))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="timed batch-1 calls per case")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--batch", type=int, default=64, help="throughput batch size")
    parser.add_argument("--batch_calls", type=int, default=10)
    parser.add_argument("--rest_calls", type=int, default=30)
    parser.add_argument("--train_steps", type=int, default=0)
    parser.add_argument(
        "--inter_op_threads",
        type=int,
        default=0,
        help="TF inter-op threads; 0 leaves TensorFlow's default (#cores), as in a fresh "
        "serving process (the stand-ins) and TF Serving; train.py uses 1 on CPU",
    )
    parser.add_argument("--profile_calls", type=int, default=50, help="0: no profile")
    parser.add_argument("--results", default=RESULTS_DIR)
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, REPO)
    import keras
    import tensorflow as tf

    from midg_keras.serving.rest_standin import RestStandin
    from midg_keras.serving.servable import Servable
    from tests.fake_mmsa import STOCK_DIMS, STOCK_LENGTHS

    if args.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
    load_before = os.getloadavg()[0]
    dims = STOCK_DIMS["mosi_unaligned"]
    stock = STOCK_LENGTHS["mosi_unaligned"]
    with tempfile.TemporaryDirectory(prefix="midg_serving_") as tmp:
        start = time.perf_counter()
        model, data, config = build_model(tmp, args.train_steps)
        root = os.path.join(tmp, "exports")
        paths = export_variants(model, root)
        export_seconds = time.perf_counter() - start
        signatures = {
            name: tf.saved_model.load(path).signatures["serving_default"]
            for name, path in paths.items()
        }

        @tf.function(reduce_retracing=True)
        def plain(inputs):
            return model(inputs, training=False)["prediction"]

        def plain_inputs(request):
            inputs = {}
            for key in model.modalities:
                inputs[key] = tf.constant(request[key])
                inputs[f"{key}_mask"] = tf.sequence_mask(
                    request[f"{key}_length"], maxlen=request[key].shape[1]
                )
            inputs["source_index"] = tf.zeros([request["text"].shape[0]], tf.int32)
            return inputs

        def callers(request):
            tensors = {name: tf.constant(value) for name, value in request.items()}
            calls = {
                name: (lambda f=f: f(**tensors)["sentiment"].numpy())
                for name, f in signatures.items()
            }
            model_inputs = plain_inputs(request)
            calls["model tf.function (no signature)"] = lambda: plain(model_inputs).numpy()
            return calls

        cases = {
            "batch 1, stock padding (50/375/500)": make_request(1, stock, dims),
            "batch 1, typical lengths (20/150/200)": make_request(1, TYPICAL_LENGTHS, dims),
        }
        timings = {case: {} for case in cases}
        cpu = {case: {} for case in cases}
        case_calls = {case: callers(request) for case, request in cases.items()}
        for case, calls in case_calls.items():
            for name, call in calls.items():
                for _ in range(args.warmup):
                    call()
                timings[case][name], cpu[case][name] = [], []
        per_round = max(1, args.calls // args.rounds)
        for _ in range(args.rounds):
            for case, calls in case_calls.items():
                for name, call in calls.items():
                    for _ in range(per_round):
                        c0, t0 = time.process_time(), time.perf_counter()
                        call()
                        timings[case][name].append(time.perf_counter() - t0)
                        cpu[case][name].append(time.process_time() - c0)

        profile, profile_totals = [], {}
        if args.profile_calls:
            profile, profile_totals = profile_components(
                signatures["export (as shipped)"],
                cases["batch 1, stock padding (50/375/500)"],
                args.profile_calls,
                os.path.join(tmp, "trace"),
            )
        lazy_refusals = check_refusals(signatures["export, checks format messages only on failure"])

        # Batch-64 throughput at the stock padding, as shipped and without checks.
        big = callers(make_request(args.batch, stock, dims, seed=1))
        names = ("export (as shipped)", "export without any check")
        spent = dict.fromkeys(names, 0.0)
        for name in names:
            big[name]()  # first call of this shape
        for _ in range(args.batch_calls):  # interleaved, like the batch-1 rounds
            for name in names:
                t0 = time.perf_counter()
                big[name]()
                spent[name] += time.perf_counter() - t0
        throughput = {name: args.batch * args.batch_calls / spent[name] for name in names}

        # The REST stand-in, batch 1 at stock padding.
        rest = {}
        if args.rest_calls:
            request = cases["batch 1, stock padding (50/375/500)"]
            body = json.dumps(
                {"inputs": {name: value.tolist() for name, value in request.items()}}
            ).encode()
            servable = Servable(os.path.dirname(paths["export (as shipped)"]), name="midg")
            with RestStandin(servable) as server:
                url = server.predict_url

                def post():
                    post_request = urllib.request.Request(
                        url, data=body, headers={"Content-Type": "application/json"}
                    )
                    with urllib.request.urlopen(post_request) as response:
                        return json.loads(response.read())

                for _ in range(3):
                    post()
                times = []
                for _ in range(args.rest_calls):
                    t0 = time.perf_counter()
                    post()
                    times.append(time.perf_counter() - t0)
            rest = {
                "body_bytes": len(body),
                "median_ms": round(percentile(times, 50), 2),
                "p90_ms": round(percentile(times, 90), 2),
            }

    rows = []
    for case, by_name in timings.items():
        for name, values in by_name.items():
            rows.append(
                {
                    "case": case,
                    "variant": name,
                    "calls": len(values),
                    "median_ms": round(percentile(values, 50), 2),
                    "p90_ms": round(percentile(values, 90), 2),
                    "cpu_median_ms": round(percentile(cpu[case][name], 50), 2),
                }
            )
    shipped = next(r for r in rows if r["variant"] == "export (as shipped)")
    meta = {
        "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "strides": dict(data.strides),
        "hidden_dim": config.hidden_dim,
        "trained_steps": args.train_steps,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "build_and_export_seconds": round(export_seconds, 1),
        "batch_throughput": {k: round(v, 1) for k, v in throughput.items()},
        "batch": args.batch,
        "rest": rest,
        "lazy_check_refusals": lazy_refusals,
        "profile": [list(row) for row in profile],
        "profile_totals": profile_totals,
        "batch1_median_ms": shipped["median_ms"],
        "meets_5ms_target": shipped["median_ms"] <= TARGET_MS,
        "rows": rows,
    }
    lines = [
        f"# Serving latency of the exported SavedModel ({meta['time']})",
        "",
        f"MIDG, default flags (hidden {meta['hidden_dim']}), MOSI-unaligned dims, strides "
        f"{meta['strides']}, {'trained ' + str(args.train_steps) + ' steps' if args.train_steps else 'untrained weights'}; "
        f"`tf.saved_model.load` + `signatures['serving_default']`, TF {tf.__version__}, "
        f"intra-op {meta['intra_op_threads'] or 'auto'} / inter-op {meta['inter_op_threads'] or 'auto'} "
        f"threads, {meta['cpus']}-core {meta['machine']}. 1-min load average {meta['load_before']} "
        f"before, {meta['load_after']} after.",
        "",
        "| request | variant | median ms | p90 ms | CPU ms (median) | calls |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['variant']} | {r['median_ms']} | {r['p90_ms']} | "
            f"{r['cpu_median_ms']} | {r['calls']} |"
        )
    lines += [
        "",
        "CPU ms: process CPU time per call (all threads), less sensitive to other processes' "
        "load than wall time. The variants without checks or with lazily formatted messages "
        "exist only in this script (the export code is patched in memory) to show what the "
        "graph's request checks cost.",
        "",
        f"Batch {args.batch} at stock padding: "
        + ", ".join(f"{k} {v:.1f} samples/s" for k, v in meta["batch_throughput"].items())
        + ".",
    ]
    if rest:
        lines.append(
            f"REST stand-in, batch 1 at stock padding (JSON body {rest['body_bytes'] / 1e6:.2f} MB): "
            f"median {rest['median_ms']} ms, p90 {rest['p90_ms']} ms (HTTP + JSON in Python; "
            "TF Serving's C++ JSON parser is faster)."
        )
    if profile:
        lines += [
            "",
            f"Where a batch-1 call (stock padding, as shipped) spends its op time, from a TF "
            f"profiler trace of {args.profile_calls} calls: "
            f"{profile_totals['op_ms_per_call']:.2f} ms of op time per call of "
            f"{profile_totals['signature_call_ms']:.2f} ms (wall, slowed by the profiler; op "
            "times of the two intra-op threads add up).",
            "",
            "| component | op ms per call | share |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {c} | {ms:.3f} | {100 * ms / profile_totals['op_ms_per_call']:.0f} % |"
            for c, ms, _ in profile
        ]
        lines.append("")
    lines.append(
        "Lazy-message variant on bad requests: "
        + ", ".join(f"{k}: {v}" for k, v in lazy_refusals.items())
        + "."
    )
    verdict = "meets" if meta["meets_5ms_target"] else "misses"
    lines.append(
        f"\nBatch-1 median as shipped (stock padding): {shipped['median_ms']} ms: {verdict} "
        f"the {TARGET_MS:g} ms target."
    )
    table = "\n".join(lines) + "\n"
    print(table)
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, "serving_latency.md"), "w") as f:
        f.write(table)
    with open(os.path.join(args.results, "serving_latency.jsonl"), "a") as f:
        f.write(json.dumps(meta) + "\n")


if __name__ == "__main__":
    main()
