"""The TF Serving contract end to end: client-built REST bodies and gRPC `PredictRequest`s
answered by the LOCAL STAND-INS (the real `tensorflow_model_server` cannot be installed
here), equal to the Keras model's ŷ2, and TF Serving-like errors for bad requests.
"""

import json
import os
import urllib.error
import urllib.request

import keras
import numpy as np
import pytest

from midg_keras.config import Config
from midg_keras.export import export_workdir
from midg_keras.models import MIDG
from midg_keras.serving import client
from midg_keras.serving.grpc_standin import start_grpc_standin
from midg_keras.serving.rest_standin import RestStandin
from midg_keras.serving.servable import Servable
from tests.fake_mmsa import make_fake_mmsa, write_pickle

SCALE = 3.0  # MOSI family


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A MIDG export of a MOSI-layout run, served by both stand-ins."""
    root = tmp_path_factory.mktemp("serving")
    pickle_path = write_pickle(
        make_fake_mmsa("mosi_unaligned", sizes=(4, 4, 5), seed=1), str(root / "mosi.pkl")
    )
    source = f"pickle:{pickle_path}@mosi"
    workdir = str(root / "run")
    os.makedirs(workdir)
    keras.utils.set_random_seed(5)
    model = MIDG(
        input_dims={"text": 16, "audio": 5, "vision": 20},
        strides={"text": 1, "audio": 2, "vision": 2},
        hidden_dim=16,
        num_heads=2,
        num_experts=2,
        name="midg",
    )
    model.build_weights()
    model.save(os.path.join(workdir, "model.keras"))
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(Config(source=source).to_json())
    export_dir = str(root / "exports")
    export_workdir(Config(workdir=workdir, export_dir=export_dir), log=lambda _: None)

    servable = Servable(export_dir, name="midg")
    rest = RestStandin(servable).start()
    grpc_server, grpc_port = start_grpc_standin(servable)
    yield {
        "model": model,
        "source": source,
        "servable": servable,
        "rest": rest,
        "grpc_target": f"127.0.0.1:{grpc_port}",
    }
    rest.stop()
    grpc_server.stop(grace=None)


def keras_sentiment(model, inputs):
    """ŷ2 of the Keras model on named serving inputs, on the MOSI label scale."""
    feed = {"source_index": np.zeros(len(inputs["text_length"]), np.int32)}
    for key in model.modalities:
        time = inputs[key].shape[1]
        feed[key] = inputs[key]
        feed[f"{key}_mask"] = np.arange(time)[None, :] < inputs[f"{key}_length"][:, None]
    return SCALE * np.asarray(model(feed, training=False)["y_out"])


def assert_matches_keras(outputs, model, inputs):
    expected = keras_sentiment(model, inputs)
    np.testing.assert_allclose(outputs["sentiment"] / SCALE, expected / SCALE, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(outputs["polarity"], (outputs["sentiment"] > 0).astype(int))
    assert np.asarray(outputs["polarity"]).dtype.kind == "i"


def test_rest_row_request_from_a_pickle_matches_keras(served):
    ids, labels, inputs = client.load_examples(served["source"], "test", num_examples=5)
    assert len(ids) == 5 and labels.shape == (5,)
    assert len(set(inputs["text_length"].tolist())) > 1  # ragged batch, zero-padded
    body = client.rest_body(inputs)
    assert body["signature_name"] == "serving_default" and len(body["instances"]) == 5
    assert sorted(body["instances"][0]) == sorted(client.INPUT_NAMES)
    outputs = client.rest_predict(served["rest"].predict_url, body)
    assert_matches_keras(outputs, served["model"], inputs)


def test_rest_columnar_request_equals_row_request(served):
    _, _, inputs = client.load_examples(served["source"], "validation", num_examples=3)
    url = served["rest"].url + "/v1/models/midg/versions/1:predict"
    columns = client.rest_predict(url, client.rest_body(inputs, columnar=True))
    rows = client.rest_predict(url, client.rest_body(inputs))
    np.testing.assert_array_equal(columns["sentiment"], rows["sentiment"])
    assert_matches_keras(columns, served["model"], inputs)


def test_grpc_predict_request_matches_keras(served):
    _, _, inputs = client.load_examples(served["source"], "test", num_examples=4)
    request = client.predict_request(inputs, model_name="midg")
    assert request.model_spec.signature_name == "serving_default"
    assert request.inputs["text"].tensor_shape.dim[0].size == 4
    outputs = client.grpc_predict(served["grpc_target"], request)
    assert outputs["sentiment"].dtype == np.float32 and outputs["polarity"].dtype == np.int32
    assert_matches_keras(outputs, served["model"], inputs)


def test_client_command_line(served, tmp_path, capsys):
    source, url = served["source"], served["rest"].predict_url
    assert client.main(["--source", source, "--num_examples", "3", "--rest_url", url]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    ids, _, inputs = client.load_examples(source, "test", num_examples=3)
    assert lines[0] == "id\tlabel\tsentiment\tpolarity" and len(lines) == 4
    assert [line.split("\t")[0] for line in lines[1:]] == ids
    sentiment = [float(line.split("\t")[2]) for line in lines[1:]]
    np.testing.assert_allclose(sentiment, keras_sentiment(served["model"], inputs), atol=1e-3)

    body, npz = str(tmp_path / "body.json"), str(tmp_path / "inputs.npz")
    args = ["--source", source, "--num_examples", "3", "--write_body", body, "--write_npz", npz]
    assert client.main(args) == 0
    with open(body) as f:
        assert json.load(f) == client.rest_body(inputs)
    saved = client.load_npz(npz)
    for name in client.INPUT_NAMES:
        np.testing.assert_array_equal(saved[name], inputs[name])
    assert client.main(["--npz", npz, "--grpc_target", served["grpc_target"]]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 4


def test_model_status_and_unknown_models(served):
    with urllib.request.urlopen(served["rest"].url + "/v1/models/midg", timeout=30) as response:
        status = json.load(response)["model_version_status"][0]
    assert status["version"] == "1" and status["state"] == "AVAILABLE"
    _, _, inputs = client.load_examples(served["source"], "test", num_examples=1)
    with pytest.raises(client.PredictError) as raised:
        client.rest_predict(
            served["rest"].url + "/v1/models/other:predict", client.rest_body(inputs)
        )
    assert raised.value.status == 404 and "Servable not found" in raised.value.message
    request = client.predict_request(inputs, model_name="midg", version=7)
    with pytest.raises(client.PredictError) as raised:
        client.grpc_predict(served["grpc_target"], request)
    assert raised.value.status == "NOT_FOUND" and "Specific(midg, 7)" in raised.value.message


def _wrong_dim(inputs):
    inputs["audio"] = np.zeros(inputs["audio"].shape[:2] + (6,), np.float32)


def _missing_input(inputs):
    del inputs["vision_length"]


def _wrong_dtype(inputs):
    inputs["text_length"] = inputs["text_length"].astype(np.float32) + 0.5


def _length_over_time(inputs):
    inputs["text_length"][0] = inputs["text"].shape[1] + 1


BAD_REQUESTS = {
    "wrong_dim": (_wrong_dim, "audio: feature dim is 6 but the model takes 5", None),
    "missing_input": (
        _missing_input,
        "keys must be equal to: audio,audio_length,text,text_length,vision,vision_length",
        "Missing but required: {vision_length}",
    ),
    "wrong_dtype": (
        _wrong_dtype,
        "key: text_length of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: ",
        "(text_length) to be int32 but float32 is provided",
    ),
    "length_over_time": (_length_over_time, "text_length: lengths must be in [1, time]", None),
}


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_tf_serving_like_errors(served, protocol, case):
    mutate, rest_message, grpc_message = BAD_REQUESTS[case]
    _, _, inputs = client.load_examples(served["source"], "test", num_examples=2)
    mutate(inputs)
    with pytest.raises(client.PredictError) as raised:
        if protocol == "rest":
            client.rest_predict(served["rest"].predict_url, client.rest_body(inputs))
        else:
            request = client.predict_request(inputs)
            client.grpc_predict(served["grpc_target"], request)
    error = raised.value
    assert error.status == (400 if protocol == "rest" else "INVALID_ARGUMENT")
    expected = rest_message if protocol == "rest" else grpc_message or rest_message
    assert expected in error.message, error.message


def _post(url, data):
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_unparseable_and_oversized_bodies_are_refused(served):
    status, payload = _post(served["rest"].predict_url, b"{not json")
    assert status == 400 and payload["error"].startswith("JSON Parse error")
    status, payload = _post(served["rest"].predict_url, b'{"instances": []}')
    assert status == 400 and payload["error"].endswith(" No values in 'instances' array")
    with RestStandin(served["servable"], max_body_bytes=1024) as small:
        status, payload = _post(small.predict_url, b" " * 2048)
    assert status == 413 and "exceeds the stand-in's limit of 1024 bytes" in payload["error"]


def test_stand_ins_listen_on_loopback_only(served):
    assert served["rest"].server_address[0] == "127.0.0.1"
    assert served["grpc_target"].startswith("127.0.0.1:")
