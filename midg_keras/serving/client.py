"""TF Serving client for the exported MIDG model: REST bodies and gRPC `PredictRequest`s.

Builds the `serving_default` inputs (`text`, `audio`, `vision` float32 [batch, time, dim],
`*_length` int32 [batch]; docs/design.md §10) from a data source (an MMSA pickle or a TFDS
builder, in `train.py`'s `--source` syntax), from an `.npz` of those six arrays, or from numpy
arrays, and sends them to TF Serving (or the local stand-ins):

    python -m midg_keras.serving.client --source=pickle:/data/mosi.pkl@mosi --num_examples=4 \
        --rest_url=http://127.0.0.1:8501/v1/models/midg:predict
    python -m midg_keras.serving.client --npz=inputs.npz --grpc_target=127.0.0.1:8500
    python -m midg_keras.serving.client --source=synthetic/domain_b --write_body=body.json \
        --write_npz=inputs.npz      # for curl and `saved_model_cli run --inputs`

Sequences in one request are zero-padded to the longest of the batch; the lengths tell
the model which frames are real. A model trained on a modality subset still takes all
three modalities (the unused ones are ignored), so clients never change.
"""

import argparse
import importlib
import json
import sys
import urllib.error
import urllib.request

import numpy as np

from midg_keras.constants import MODALITY_KEYS

SIGNATURE_NAME = "serving_default"
INPUT_NAMES = MODALITY_KEYS + tuple(f"{key}_length" for key in MODALITY_KEYS)


class PredictError(RuntimeError):
    """The server refused a request; `message` is its error text, `status` HTTP or gRPC."""

    def __init__(self, status, message):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def inputs_from_arrays(text, audio, vision, text_length, audio_length, vision_length):
    """Six arrays -> the signature's named inputs, as float32 / int32 numpy arrays."""
    features = {"text": text, "audio": audio, "vision": vision}
    lengths = {"text": text_length, "audio": audio_length, "vision": vision_length}
    inputs = {key: np.asarray(value, np.float32) for key, value in features.items()}
    inputs.update(
        {f"{key}_length": np.asarray(value, np.int32).reshape(-1) for key, value in lengths.items()}
    )
    return inputs


def batch_examples(examples):
    """Contract examples (each modality `(L, D)`, trimmed or padded) -> padded named inputs.

    Each modality is zero-padded to the longest sequence in the batch; `<key>_length` is
    taken from the example when present, else the sequence's own length.
    """
    inputs = {}
    for key in MODALITY_KEYS:
        lengths = [int(ex.get(f"{key}_length", len(ex[key]))) for ex in examples]
        time = max(lengths)
        dim = np.shape(examples[0][key])[-1]
        batch = np.zeros((len(examples), time, dim), np.float32)
        for row, (example, length) in enumerate(zip(examples, lengths)):
            batch[row, :length] = np.asarray(example[key], np.float32)[:length]
        inputs[key] = batch
        inputs[f"{key}_length"] = np.asarray(lengths, np.int32)
    return inputs


def load_examples(source, split="test", num_examples=4, data_dir="", manual_dir=""):
    """The first `num_examples` of a source split -> (ids, native labels, named inputs)."""
    from midg_keras.data.sources import load_source

    opened = load_source(source, data_dir=data_dir, manual_dir=manual_dir)
    examples = list(opened.splits[split].take(num_examples).as_numpy_iterator())
    if not examples:
        raise ValueError(f"split {split!r} of {source} has no examples.")
    ids = [example["id"].decode() for example in examples]
    labels = np.asarray([example["label"] for example in examples], np.float32)
    return ids, labels, batch_examples(examples)


def load_npz(path):
    """An `.npz` holding the six named arrays (as `--write_npz` writes) -> named inputs."""
    with np.load(path) as arrays:
        missing = [name for name in INPUT_NAMES if name not in arrays]
        if missing:
            raise ValueError(
                f"{path} lacks {', '.join(missing)}; it needs {', '.join(INPUT_NAMES)}."
            )
        return inputs_from_arrays(*(arrays[name] for name in INPUT_NAMES))


def rest_body(inputs, signature_name=SIGNATURE_NAME, columnar=False):
    """TF Serving's REST predict body: row format (`instances`) or columnar (`inputs`)."""
    if columnar:
        return {
            "signature_name": signature_name,
            "inputs": {name: value.tolist() for name, value in inputs.items()},
        }
    batch = len(inputs["text_length"])
    return {
        "signature_name": signature_name,
        "instances": [
            {name: value[row].tolist() for name, value in inputs.items()} for row in range(batch)
        ],
    }


def predict_request(inputs, model_name="midg", signature_name=SIGNATURE_NAME, version=None):
    """A `tensorflow_serving.apis.predict_pb2.PredictRequest` for `PredictionService.Predict`."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def outputs_from_rest(response):
    """A REST predict response (row or columnar) -> named numpy outputs."""
    if "outputs" in response:
        return {name: np.asarray(value) for name, value in response["outputs"].items()}
    rows = response["predictions"]
    return {name: np.asarray([row[name] for row in rows]) for name in rows[0]}


def rest_predict(url, body, timeout=60):
    """POSTs a body to `.../v1/models/<name>:predict`; returns named numpy outputs."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return outputs_from_rest(json.load(response))
    except urllib.error.HTTPError as error:
        text = error.read().decode(errors="replace")
        try:
            message = json.loads(text)["error"]
        except (ValueError, KeyError, TypeError):
            message = text
        raise PredictError(error.code, message) from None
    except urllib.error.URLError as error:
        raise PredictError("UNAVAILABLE", f"cannot reach {url}: {error.reason}") from None


def grpc_predict(target, request, timeout=60):
    """Sends a `PredictRequest` to `host:port`; returns named numpy outputs."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout=timeout)
        except grpc.RpcError as error:
            raise PredictError(error.code().name, error.details()) from None
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def _parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m midg_keras.serving.client", description=__doc__.split("\n\n")[0]
    )
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--source", help="`<builder>/<config>` or `pickle:PATH[@family]`.")
    data.add_argument("--npz", help="an .npz holding text, audio, vision and *_length arrays.")
    parser.add_argument("--split", default="test", help="train, validation or test.")
    parser.add_argument("--num_examples", type=int, default=4, help="examples in the request.")
    parser.add_argument("--data_dir", default="", help="TFDS data_dir for --source.")
    parser.add_argument("--manual_dir", default="", help="MMSA pickle folder for --source.")
    parser.add_argument(
        "--builders_module",
        default="datasets",
        help="module whose register() makes the TFDS builders openable by --source (like "
        "`tfds build --imports`); the repository's `datasets`, importable from its root.",
    )
    parser.add_argument("--rest_url", help="e.g. http://127.0.0.1:8501/v1/models/midg:predict")
    parser.add_argument("--grpc_target", help="e.g. 127.0.0.1:8500")
    parser.add_argument("--model_name", default="midg", help="model name for gRPC requests.")
    parser.add_argument("--signature_name", default=SIGNATURE_NAME)
    parser.add_argument(
        "--columnar", action="store_true", help="REST `inputs` instead of `instances`."
    )
    parser.add_argument("--write_body", help="write the REST JSON body here (for curl).")
    parser.add_argument("--write_npz", help="write the inputs here (for saved_model_cli run).")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request.")
    return parser.parse_args(argv)


def main(argv=None):
    args = _parse_args(argv)
    try:
        if args.source:
            from midg_keras.data.sources import SourceSpec

            if not SourceSpec.parse(args.source).is_pickle:
                importlib.import_module(args.builders_module).register()
            ids, labels, inputs = load_examples(
                args.source, args.split, args.num_examples, args.data_dir, args.manual_dir
            )
        else:
            inputs = load_npz(args.npz)
            ids, labels = [str(i) for i in range(len(inputs["text_length"]))], None
    except (ValueError, OSError) as error:  # DataError is a ValueError
        print(f"error: {error}", file=sys.stderr)
        return 2
    body = rest_body(inputs, args.signature_name, columnar=args.columnar)
    if args.write_body:
        with open(args.write_body, "w") as f:
            json.dump(body, f)
    if args.write_npz:
        np.savez(args.write_npz, **inputs)
    if not (args.rest_url or args.grpc_target):
        if not (args.write_body or args.write_npz):
            json.dump(body, sys.stdout)
            print()
        return 0
    try:
        if args.rest_url:
            outputs = rest_predict(args.rest_url, body, args.timeout)
        else:
            request = predict_request(inputs, args.model_name, args.signature_name)
            outputs = grpc_predict(args.grpc_target, request, args.timeout)
    except PredictError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("id\tlabel\tsentiment\tpolarity")
    for row, example_id in enumerate(ids):
        label = "-" if labels is None else f"{labels[row]:.3f}"
        print(f"{example_id}\t{label}\t{outputs['sentiment'][row]:.4f}\t{outputs['polarity'][row]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
