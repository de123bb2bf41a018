"""The serving contract under load and bad input (docs/design.md §10).

1. The exported `serving_default` signature itself, loaded with `tf.saved_model.load`:
   lengths outside [1, time], an empty batch, and NaN, ±inf or |x| > 1e6 feature values
   (padding included) each fail with one InvalidArgument naming the input; nothing is
   clamped, and no score is returned for them.
2. A burst of 300 requests from 8 threads, valid ones mixed with malformed ones, against
   the REST and gRPC STAND-INS (the real `tensorflow_model_server` cannot be installed
   here): every malformed request gets TF Serving's status (REST: HTTP 4xx and
   `{"error": ...}`; gRPC: INVALID_ARGUMENT, RESOURCE_EXHAUSTED for a message over the
   limit) and a message; every valid one gets exactly the score the signature gives alone
   (equal to the Keras model's within 1e-5); the servers answer normally afterwards.

The model is tiny (hidden_dim 8) and exported once for the module.
"""

import concurrent.futures
import json
import time
import urllib.error
import urllib.request

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_shape_pb2

from midg_keras.export.saved_model import MAX_ABS_FEATURE, export_model
from midg_keras.models import MIDG
from midg_keras.serving import client
from midg_keras.serving.grpc_standin import start_grpc_standin
from midg_keras.serving.rest_standin import RestStandin
from midg_keras.serving.servable import Servable, ServingError
from tests.test_serving import keras_sentiment

DIMS = {"text": 4, "audio": 3, "vision": 5}
SCALE = 3.0
LIMIT_BYTES = 64 << 10  # both stand-ins' request size limit in this test
BURST_REQUESTS = 300
BURST_THREADS = 8


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("burst")
    keras.utils.set_random_seed(11)
    model = MIDG(
        input_dims=DIMS,
        strides={"text": 1, "audio": 2, "vision": 2},
        hidden_dim=8,
        num_heads=2,
        num_experts=2,
        name="midg",
    )
    model.build_weights()
    path = export_model(model, str(root / "exports"), label_scale=SCALE)
    servable = Servable(str(root / "exports"), name="midg")
    rest = RestStandin(servable, max_body_bytes=LIMIT_BYTES).start()
    grpc_server, grpc_port = start_grpc_standin(servable, max_message_bytes=LIMIT_BYTES)
    yield {
        "model": model,
        "signature": tf.saved_model.load(path).signatures["serving_default"],
        "servable": servable,
        "rest": rest,
        "grpc_target": f"127.0.0.1:{grpc_port}",
    }
    rest.stop()
    grpc_server.stop(grace=None)


def make_inputs(seed, batch=2, time=6):
    """Named serving inputs: ragged lengths in [1, time], zero padding."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for key, dim in DIMS.items():
        lengths = rng.integers(1, time + 1, size=batch).astype(np.int32)
        features = rng.normal(size=(batch, time, dim)).astype(np.float32)
        features[np.arange(time)[None, :] >= lengths[:, None]] = 0.0
        inputs[key] = features
        inputs[f"{key}_length"] = lengths
    return inputs


def call_signature(signature, inputs):
    outputs = signature(**{name: tf.constant(value) for name, value in inputs.items()})
    return {name: value.numpy() for name, value in outputs.items()}


# --- 1. the signature itself -------------------------------------------------------------


def _set(name, index, value):
    def mutate(inputs):
        inputs[name][index] = value

    return mutate


def _empty_batch(inputs):
    for name in inputs:
        inputs[name] = inputs[name][:0]


def _no_frames(inputs):
    inputs["audio"] = inputs["audio"][:, :0]


FINITE = "feature values must be finite and within +-1e6"
SIGNATURE_CASES = {
    "nan_in_a_real_frame": (_set("text", (0, 0, 1), np.nan), "text: " + FINITE),
    "nan_in_padding": (_set("audio", (1, -1, 0), np.nan), "audio: " + FINITE),
    "plus_inf": (_set("vision", (0, 0, 0), np.inf), "vision: " + FINITE),
    "minus_inf": (_set("vision", (1, 0, 4), -np.inf), "vision: " + FINITE),
    "huge_value": (_set("text", (0, 0, 0), 1e7), "text: " + FINITE),
    "length_zero": (_set("text_length", 0, 0), "text_length: lengths must be in [1, time]"),
    "length_negative": (_set("audio_length", 1, -3), "audio_length: lengths must be in [1, time]"),
    "length_past_time": (
        _set("vision_length", 0, 7),
        "vision_length: lengths must be in [1, time]",
    ),
    "empty_batch": (_empty_batch, "text: the batch is empty (0 examples)"),
    "no_frames": (_no_frames, "audio_length: lengths must be in [1, time] = [1, 0]"),
}


@pytest.mark.parametrize("case", sorted(SIGNATURE_CASES))
def test_signature_refuses_bad_values_with_invalid_argument(served, case):
    mutate, expected = SIGNATURE_CASES[case]
    inputs = make_inputs(seed=1)
    mutate(inputs)
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        call_signature(served["signature"], inputs)
    assert expected in raised.value.message, raised.value.message


def test_signature_scores_valid_and_boundary_inputs(served):
    inputs = make_inputs(seed=2, batch=3, time=5)
    first = call_signature(served["signature"], inputs)
    np.testing.assert_allclose(
        first["sentiment"] / SCALE, keras_sentiment(served["model"], inputs) / SCALE, atol=1e-5
    )
    np.testing.assert_array_equal(first["polarity"], (first["sentiment"] > 0).astype(np.int32))
    np.testing.assert_array_equal(
        call_signature(served["signature"], inputs)["sentiment"], first["sentiment"]
    )
    # The limits themselves are accepted: |x| = 1e6, lengths 1 and time.
    inputs["text"][0, 0, 0] = MAX_ABS_FEATURE
    inputs["audio"][1, 0, 0] = -MAX_ABS_FEATURE
    inputs["text_length"][:] = [1, 5, 5]
    outputs = call_signature(served["signature"], inputs)
    assert np.all(np.isfinite(outputs["sentiment"]))
    np.testing.assert_allclose(
        outputs["sentiment"] / SCALE, keras_sentiment(served["model"], inputs) / SCALE, atol=1e-5
    )


# --- 2. the burst against both stand-ins -----------------------------------------------------

VALID_INPUTS = [make_inputs(seed, batch=1 + seed % 3, time=1 + seed % 7) for seed in range(12)]


def _rest(served, body, path=None):
    """POSTs a body (dict or raw bytes) -> (HTTP status, parsed JSON answer)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    url = path or served["rest"].predict_url
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _grpc(served, request):
    try:
        return "OK", client.grpc_predict(served["grpc_target"], request)
    except client.PredictError as error:
        return error.status, error.message


def _rest_valid(served, index, columnar):
    status, answer = _rest(served, client.rest_body(VALID_INPUTS[index], columnar=columnar))
    if status != 200:
        return status, answer
    return status, client.outputs_from_rest(answer)


def _rest_mutated(mutate, columnar=False):
    def send(served, index):
        inputs = {name: value.copy() for name, value in VALID_INPUTS[index].items()}
        body = client.rest_body(inputs, columnar=columnar)
        return _rest(served, mutate(body, inputs) or body)

    return send


def _grpc_mutated(mutate):
    def send(served, index):
        inputs = {name: value.copy() for name, value in VALID_INPUTS[index].items()}
        request = client.predict_request(inputs, model_name="midg")
        return _grpc(served, mutate(request, inputs) or request)

    return send


def _row_text_length_float(body, inputs):
    body["instances"][0]["text_length"] = 1.5


def _row_text_flat(body, inputs):
    for row in body["instances"]:
        row["text"] = [value for frame in row["text"] for value in frame]


def _row_missing(body, inputs):
    for row in body["instances"]:
        del row["vision_length"]


def _row_empty(body, inputs):
    body["instances"] = []


def _row_length_past(body, inputs):
    body["instances"][0]["audio_length"] = len(body["instances"][0]["audio"]) + 1


def _row_nan(body, inputs):  # serialized as the NaN literal, which TF Serving's parser accepts
    body["instances"][-1]["vision"][0][0] = float("nan")


def _row_infinity(body, inputs):
    body["instances"][0]["text"][0][-1] = float("-inf")


def _row_lossy(body, inputs):
    return json.dumps(body).replace("[[", "[[1e39, ", 1).encode()


def _row_oversize(body, inputs):
    body["padding"] = "x" * (LIMIT_BYTES + 1000)


def _non_json(body, inputs):
    return b'{"instances": [{"text": [[0.1, 0.2'


def _deeply_nested(body, inputs):
    return b'{"instances": ' + b"[" * 20000 + b"]" * 20000 + b"}"


def _columnar_empty(body, inputs):
    for name in body["inputs"]:
        body["inputs"][name] = []


def _grpc_text_length_float(request, inputs):
    lengths = inputs["text_length"].astype(np.float32) + 0.5
    request.inputs["text_length"].CopyFrom(tf.make_tensor_proto(lengths))


def _grpc_text_rank_2(request, inputs):
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(inputs["text"][:, :, 0]))


def _grpc_missing(request, inputs):
    del request.inputs["audio"]


def _grpc_empty(request, inputs):
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value[:0]))


def _grpc_length_past(request, inputs):
    lengths = inputs["vision_length"].copy()
    lengths[-1] = inputs["vision"].shape[1] + 2
    request.inputs["vision_length"].CopyFrom(tf.make_tensor_proto(lengths))


def _grpc_nan(request, inputs):
    audio = inputs["audio"].copy()
    audio[0, 0, 0] = np.nan
    request.inputs["audio"].CopyFrom(tf.make_tensor_proto(audio))


def _grpc_oversize(request, inputs):
    big = np.zeros((1, LIMIT_BYTES // 4 // DIMS["text"] + 10, DIMS["text"]), np.float32)
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(big))


def _grpc_bad_content(request, inputs):
    request.inputs["vision"].tensor_content = b"abc"


def _grpc_declared_huge(request, inputs):
    proto = request.inputs["text"]
    proto.ClearField("tensor_content")
    proto.tensor_shape.CopyFrom(
        tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in (1 << 20, 1 << 20, 4)]
        )
    )


REST_400 = 400
MALFORMED = {
    # name: (send, expected status, expected message fragment)
    "rest_wrong_dtype": (
        _rest_mutated(_row_text_length_float),
        REST_400,
        "JSON Value: 1.5 Type: Number is not of expected type: int32",
    ),
    "rest_wrong_rank": (_rest_mutated(_row_text_flat), REST_400, "text: expects rank 3"),
    "rest_missing_input": (
        _rest_mutated(_row_missing),
        REST_400,
        "keys must be equal to: audio,audio_length,text,text_length,vision,vision_length",
    ),
    "rest_empty_batch": (_rest_mutated(_row_empty), REST_400, "No values in 'instances' array"),
    "rest_empty_columns": (
        _rest_mutated(_columnar_empty, columnar=True),
        REST_400,
        "expects rank 3",
    ),
    "rest_length_past_sequence": (
        _rest_mutated(_row_length_past),
        REST_400,
        "audio_length: lengths must be in [1, time]",
    ),
    "rest_nan": (_rest_mutated(_row_nan), REST_400, "vision: " + FINITE),
    "rest_infinity": (_rest_mutated(_row_infinity), REST_400, "text: " + FINITE),
    "rest_lossy_float": (
        _rest_mutated(_row_lossy),
        REST_400,
        "Cannot convert JSON value: 1e+39 to float without loss of precision.",
    ),
    "rest_oversize": (_rest_mutated(_row_oversize), 413, "exceeds the stand-in's limit of 65536"),
    "rest_non_json": (_rest_mutated(_non_json), REST_400, "JSON Parse error"),
    "rest_deeply_nested": (_rest_mutated(_deeply_nested), REST_400, "nested too deeply"),
    "grpc_wrong_dtype": (
        _grpc_mutated(_grpc_text_length_float),
        "INVALID_ARGUMENT",
        "(text_length) to be int32 but float32 is provided",
    ),
    "grpc_wrong_rank": (
        _grpc_mutated(_grpc_text_rank_2),
        "INVALID_ARGUMENT",
        "text: expects rank 3",
    ),
    "grpc_missing_input": (
        _grpc_mutated(_grpc_missing),
        "INVALID_ARGUMENT",
        "Missing but required: {audio}",
    ),
    "grpc_empty_batch": (
        _grpc_mutated(_grpc_empty),
        "INVALID_ARGUMENT",
        "text: the batch is empty (0 examples)",
    ),
    "grpc_length_past_sequence": (
        _grpc_mutated(_grpc_length_past),
        "INVALID_ARGUMENT",
        "vision_length: lengths must be in [1, time]",
    ),
    "grpc_nan": (_grpc_mutated(_grpc_nan), "INVALID_ARGUMENT", "audio: " + FINITE),
    "grpc_oversize": (
        _grpc_mutated(_grpc_oversize),
        "RESOURCE_EXHAUSTED",
        "Received message larger than max",
    ),
    "grpc_malformed_tensor": (
        _grpc_mutated(_grpc_bad_content),
        "INVALID_ARGUMENT",
        "vision: malformed TensorProto",
    ),
    "grpc_declared_huge_tensor": (
        _grpc_mutated(_grpc_declared_huge),
        "RESOURCE_EXHAUSTED",
        "over the stand-in's limit",
    ),
}
VALID = {
    "rest_rows": lambda served, index: _rest_valid(served, index, columnar=False),
    "rest_columns": lambda served, index: _rest_valid(served, index, columnar=True),
    "grpc": lambda served, index: _grpc(
        served, client.predict_request(VALID_INPUTS[index], model_name="midg")
    ),
}


def burst_plan(count, seed=0):
    """`count` shuffled (kind, input index) jobs: each malformed kind 5 times (the gRPC
    oversize one twice: gRPC takes ~0.2 s to refuse it), the rest valid."""
    rng = np.random.default_rng(seed)
    kinds = [kind for kind in sorted(MALFORMED) for _ in range(2 if kind == "grpc_oversize" else 5)]
    kinds += [sorted(VALID)[i % len(VALID)] for i in range(count - len(kinds))]
    return [(kinds[i], int(rng.integers(len(VALID_INPUTS)))) for i in rng.permutation(count)]


# Keras warns on a softmax over one key; single-frame inputs (time 1) are meant: weight 1.
@pytest.mark.filterwarnings("ignore:You are using a softmax over axis -1")
def test_burst_of_valid_and_malformed_requests(served):
    expected = [call_signature(served["signature"], inputs) for inputs in VALID_INPUTS]
    for inputs, outputs in zip(VALID_INPUTS, expected):
        np.testing.assert_allclose(
            outputs["sentiment"] / SCALE,
            keras_sentiment(served["model"], inputs) / SCALE,
            atol=1e-5,
        )
    plan = burst_plan(BURST_REQUESTS)
    assert len(plan) == BURST_REQUESTS
    assert {kind for kind, _ in plan} == set(MALFORMED) | set(VALID)

    def send(job):
        kind, index = job
        started = time.monotonic()
        sender = VALID[kind] if kind in VALID else MALFORMED[kind][0]
        return sender(served, index), time.monotonic() - started

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=BURST_THREADS) as pool:
        results = list(pool.map(send, plan))
    wall = time.monotonic() - started

    failures = []
    for (kind, index), ((status, answer), _) in zip(plan, results):
        if kind in VALID:
            if status not in (200, "OK"):
                failures.append(f"{kind}[{index}]: {status} {answer}")
                continue
            for name in ("sentiment", "polarity"):
                got = np.asarray(answer[name])
                if got.dtype.kind == "f":
                    got = got.astype(np.float32)
                if not np.array_equal(got, expected[index][name]):
                    failures.append(f"{kind}[{index}] {name}: {got} != {expected[index][name]}")
        else:
            _, want_status, fragment = MALFORMED[kind]
            message = answer["error"] if isinstance(answer, dict) else answer
            if status != want_status or not isinstance(message, str) or fragment not in message:
                failures.append(
                    f"{kind}: {status} {answer!r:.300} (want {want_status}, {fragment!r})"
                )
    assert not failures, f"{len(failures)} of {len(plan)} wrong:\n" + "\n".join(failures[:20])
    slowest = max(seconds for _, seconds in results)
    assert slowest < 30, f"a request took {slowest:.1f} s (burst {wall:.1f} s)"

    # The servers answer normally afterwards.
    assert served["rest"]._thread.is_alive()
    status, answer = _rest_valid(served, 3, columnar=False)
    assert status == 200
    np.testing.assert_array_equal(
        np.asarray(answer["sentiment"], np.float32), expected[3]["sentiment"]
    )
    status, answer = VALID["grpc"](served, 4)
    assert status == "OK"
    np.testing.assert_array_equal(answer["sentiment"], expected[4]["sentiment"])


def test_stand_in_failures_still_get_a_status(served, monkeypatch):
    """An unexpected exception inside the stand-in is answered (500 / INTERNAL), not dropped."""

    def broken(inputs, signature_name=""):
        raise RuntimeError("boom")

    monkeypatch.setattr(served["servable"], "predict", broken)
    status, answer = _rest(served, client.rest_body(VALID_INPUTS[0]))
    assert status == 500 and answer["error"] == "stand-in failure: RuntimeError: boom"
    status, message = VALID["grpc"](served, 0)
    assert status == "INTERNAL" and message == "stand-in failure: RuntimeError: boom"
    monkeypatch.undo()
    assert _rest_valid(served, 0, columnar=False)[0] == 200


def test_serving_errors_use_tf_servings_http_statuses():
    assert ServingError("INVALID_ARGUMENT", "").http_status == 400
    assert ServingError("FAILED_PRECONDITION", "").http_status == 400
    assert ServingError("NOT_FOUND", "").http_status == 404
    assert ServingError("RESOURCE_EXHAUSTED", "").http_status == 429
    assert ServingError("RESOURCE_EXHAUSTED", "", http_status=413).http_status == 413
    assert ServingError("UNAVAILABLE", "").http_status == 503
    assert ServingError("INTERNAL", "").http_status == 500
