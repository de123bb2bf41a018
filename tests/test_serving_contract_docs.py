"""The serving stand-ins against TF Serving's own documentation and source, not their own strings.

`tests/test_serving.py` checks the stand-ins' answers; this file checks them against what TF
Serving documents and does (the real `tensorflow_model_server` cannot be installed here):

* REST API doc (`tensorflow_serving/g3doc/api_rest.md`, tensorflow/serving@00e459f1,
  https://www.tensorflow.org/tfx/serving/api_rest): on error every API answers a JSON object
  `{"error": <message string>}`; a row request (`instances`, a list of objects for several
  named inputs) gets `{"predictions": ...}`, a list of objects when the model has several
  named outputs; a columnar request (`inputs`, an object) gets `{"outputs": ...}`, an object
  keyed by output name; `signature_name` is optional; an unknown model is HTTP 404
  `{"error": "Servable not found for request: Latest(<name>)"}` (the doc's example).
* REST request parsing (`tensorflow_serving/util/json_tensor.cc`, tensorflow/serving@00f8ba53):
  the messages in `TF_SERVING_MESSAGES` below, all `errors::InvalidArgument`, which the HTTP
  server maps to status 400 (and gRPC answers as INVALID_ARGUMENT). `FormatError(doc, ...)`
  prefixes `JSON Value: <the request> `.

Requests here are raw HTTP bodies and raw gRPC calls, not the project's client.
"""

import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from midg_keras.serving import client
from tests.test_serving import served  # noqa: F401  (the module's export and stand-ins)

OUTPUT_NAMES = {"sentiment", "polarity"}

# json_tensor.cc (tensorflow/serving@00f8ba53), message -> what the stand-in's text must be.
TF_SERVING_MESSAGES = {
    "empty": "JSON Parse error: The document is empty",
    "no_key": "Missing 'inputs' or 'instances' key",
    "both_keys": "Not formatted correctly expecting only one of 'inputs' or 'instances' keys "
    "to exist",
    "empty_instances": "No values in 'instances' array",
    "instances_not_list": "Excepting 'instances' to be an list/array",  # sic
    "plain_list": "instances is a plain list, but expecting list of objects as multiple input "
    "tensors required as per tensorinfo_map",
    "inputs_not_object": "inputs is a plain value/list, but expecting an object as multiple "
    "input tensors required as per tensorinfo_map",
    "missing_column": "Missing named input: vision_length in 'inputs' object.",
    "missing_key": "Failed to process element: 0 of 'instances' list. JSON object: ",
}
# Messages built by FormatError(doc, ...): "JSON Value: <the request> <message>".
FORMAT_ERRORS = {"both_keys", "empty_instances", "instances_not_list"}
MISSING_KEY_END = " keys must be equal to: audio,audio_length,text,text_length,vision,vision_length"


def _post(url, body):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def inputs(served):  # noqa: F811
    _, _, arrays = client.load_examples(served["source"], "test", num_examples=3)
    return arrays


def _rows(arrays):
    return [
        {name: np.asarray(arrays[name][index]).tolist() for name in client.INPUT_NAMES}
        for index in range(len(arrays["text_length"]))
    ]


def _columns(arrays):
    return {name: np.asarray(arrays[name]).tolist() for name in client.INPUT_NAMES}


def test_row_request_gets_predictions_as_a_list_of_objects(served, inputs):  # noqa: F811
    status, payload = _post(served["rest"].predict_url, {"instances": _rows(inputs)})
    assert status == 200 and set(payload) == {"predictions"}  # no signature_name: default
    predictions = payload["predictions"]
    assert isinstance(predictions, list) and len(predictions) == 3
    for prediction in predictions:
        assert set(prediction) == OUTPUT_NAMES
        assert isinstance(prediction["sentiment"], float)
        assert isinstance(prediction["polarity"], int)


def test_columnar_request_gets_outputs_as_an_object_of_columns(served, inputs):  # noqa: F811
    body = {"signature_name": "serving_default", "inputs": _columns(inputs)}
    status, payload = _post(served["rest"].predict_url, body)
    assert status == 200 and set(payload) == {"outputs"}
    outputs = payload["outputs"]
    assert isinstance(outputs, dict) and set(outputs) == OUTPUT_NAMES
    assert all(isinstance(column, list) and len(column) == 3 for column in outputs.values())
    _, rows = _post(served["rest"].predict_url, {"instances": _rows(inputs)})
    assert outputs["sentiment"] == [row["sentiment"] for row in rows["predictions"]]


def _bad_bodies(arrays):
    rows, columns = _rows(arrays), _columns(arrays)
    missing_row = [dict(row) for row in rows]
    del missing_row[0]["vision_length"]
    missing_column = dict(columns)
    del missing_column["vision_length"]
    return {
        "empty": b"",
        "no_key": {"signature_name": "serving_default"},
        "both_keys": {"instances": rows, "inputs": columns},
        "empty_instances": {"instances": []},
        "instances_not_list": {"instances": {"text": 1}},
        "plain_list": {"instances": [[1.0], [2.0]]},
        "inputs_not_object": {"inputs": [[1.0]]},
        "missing_column": {"inputs": missing_column},
        "missing_key": {"instances": missing_row},
    }


@pytest.mark.parametrize("case", sorted(TF_SERVING_MESSAGES))
def test_rest_errors_are_tf_servings_400_json_error_with_its_message(served, inputs, case):  # noqa: F811
    body = _bad_bodies(inputs)[case]
    status, payload = _post(served["rest"].predict_url, body)
    assert status == 400
    assert isinstance(payload, dict) and set(payload) == {"error"}
    assert isinstance(payload["error"], str)
    message = TF_SERVING_MESSAGES[case]
    if case in FORMAT_ERRORS:
        assert payload["error"].startswith("JSON Value: {"), payload["error"]
        assert payload["error"].endswith(" " + message), payload["error"]
    elif case == "missing_key":
        assert payload["error"].startswith(message), payload["error"]
        assert payload["error"].endswith(MISSING_KEY_END), payload["error"]
    else:
        assert payload["error"] == message


def test_unknown_model_is_the_documented_404(served, inputs):  # noqa: F811
    url = served["rest"].url + "/v1/models/half:predict"
    status, payload = _post(url, {"instances": _rows(inputs)})
    assert (status, payload) == (404, {"error": "Servable not found for request: Latest(half)"})


def test_grpc_status_codes_are_tf_servings(served, inputs):  # noqa: F811
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    def call(request):
        with grpc.insecure_channel(served["grpc_target"]) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as raised:
                stub.Predict(request, timeout=60)
        return raised.value.code()

    bad = dict(inputs)
    bad["text_length"] = bad["text_length"].astype(np.float32)  # signature wants int32
    assert call(client.predict_request(bad)) == grpc.StatusCode.INVALID_ARGUMENT
    unknown = client.predict_request(inputs, model_name="half")
    assert call(unknown) == grpc.StatusCode.NOT_FOUND
