"""What the local TF Serving stand-ins share: one loaded SavedModel version and its checks.

STAND-IN, NOT TF SERVING. The `tensorflow_model_server` binary cannot be installed here, so
the REST and gRPC stand-ins load the exported SavedModel with `tf.saved_model.load` and
answer in TF Serving's request/response shapes, with its error codes and message forms
for the request checks TF Serving does itself (input names, dtypes); everything else
(empty batches, feature dims, batch agreement, lengths, non-finite or huge feature values)
is checked by the exported graph, as it is under the real server. One `Servable` answers
concurrent requests. Production serving is `docker run tensorflow/serving` (BUILD.md).
"""

import json
import os
import threading

import numpy as np
import tensorflow as tf

DEFAULT_SIGNATURE = "serving_default"

# gRPC status names -> the HTTP status TF Serving's REST API answers with
# (`ToHTTPStatusCode` in tensorflow_serving/model_servers/http_server.cc).
HTTP_STATUS = {
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}
# TensorFlow's error codes (the same numbers as gRPC's) -> status names.
_STATUS_NAMES = {getattr(tf.errors, name): name for name in HTTP_STATUS}


class ServingError(Exception):
    """A failed request: `code` is the gRPC status name, `message` TF Serving's text.

    `http_status` overrides the REST status TF Serving derives from `code` (the REST
    stand-in's body-size limit answers 413, as libevent does for `evhttp_set_max_body_size`).
    """

    def __init__(self, code, message, http_status=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self._http_status = http_status

    @property
    def http_status(self):
        return self._http_status or HTTP_STATUS.get(self.code, 500)


def latest_version(base_path: str) -> int:
    """The highest numeric version directory holding a SavedModel (TF Serving's default)."""
    versions = [
        int(entry)
        for entry in (os.listdir(base_path) if os.path.isdir(base_path) else [])
        if entry.isdigit() and os.path.exists(os.path.join(base_path, entry, "saved_model.pb"))
    ]
    if not versions:
        raise FileNotFoundError(
            f"no SavedModel version under {base_path} (expected {base_path}/<n>/saved_model.pb): "
            "export one with `python train.py --mode=export --workdir=W --export_dir=...`."
        )
    return max(versions)


class Servable:
    """The latest version of a model under `base_path`, loaded as TF Serving would.

    Args:
        base_path: the export root (`--export_dir`), holding numeric version directories.
        name: the model name requests must address (`MODEL_NAME` of TF Serving).
    """

    def __init__(self, base_path: str, name: str = "midg"):
        self.name = name
        self.version = latest_version(base_path)
        self.path = os.path.join(base_path, str(self.version))
        self._loaded = tf.saved_model.load(self.path)
        self.signatures = dict(self._loaded.signatures)
        # TensorFlow instantiates (and optimizes) a loaded function on its first call, and
        # concurrent first calls each do it: 8 at once took 10x one. The first call of each
        # signature runs alone; later ones run concurrently (loaded functions are thread-safe).
        self._first_call = threading.Lock()
        self._called = set()
        self._warm_up()

    def _warm_up(self):
        """One request of zeros (TF Serving's model warm-up), when the export records dims."""
        path = os.path.join(self.path, "assets.extra", "midg_export.json")
        if not os.path.exists(path):
            return
        with open(path) as f:
            dims = json.load(f).get("input_dims", {})
        inputs = {}
        for name, spec in self.input_specs().items():
            key = name.removesuffix("_length")
            if name == key:
                inputs[name] = np.zeros([1, 1, dims.get(key, 1)], np.float32)
            else:
                inputs[name] = np.ones([1], spec.dtype.as_numpy_dtype)
        self.predict(inputs)

    def input_specs(self, signature_name=""):
        """Input name -> `tf.TensorSpec` of a signature; unknown names fail like TF Serving."""
        return self._signature(signature_name).structured_input_signature[1]

    def _signature(self, signature_name):
        key = signature_name or DEFAULT_SIGNATURE
        if key not in self.signatures:
            raise ServingError("FAILED_PRECONDITION", f'Serving signature key "{key}" not found.')
        return self.signatures[key]

    def check_model(self, name, version=None):
        """Requests for another model or version fail as TF Serving's do."""
        if name != self.name or (version is not None and int(version) != self.version):
            which = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise ServingError("NOT_FOUND", f"Servable not found for request: {which}")

    def predict(self, inputs, signature_name=""):
        """Runs a signature on named numpy inputs; returns named numpy outputs.

        Raises:
            ServingError: INVALID_ARGUMENT for missing or extra inputs, a wrong dtype or
                rank, and for every check the exported graph makes.
        """
        function = self._signature(signature_name)
        specs = function.structured_input_signature[1]
        sent, expected = set(inputs), set(specs)
        if sent != expected:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                f"Missing but required: {{{','.join(sorted(expected - sent))}}}.",
            )
        tensors = {}
        for index, name in enumerate(sorted(specs)):
            spec, value = specs[name], np.asarray(inputs[name])
            if value.dtype != spec.dtype.as_numpy_dtype:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"Expects arg[{index}] ({name}) to be {spec.dtype.name} but "
                    f"{tf.as_dtype(value.dtype).name} is provided",
                )
            if value.ndim != spec.shape.rank:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"{name}: expects rank {spec.shape.rank} ({_shape_text(spec.shape)}) but got "
                    f"shape [{','.join(str(d) for d in value.shape)}]",
                )
            tensors[name] = tf.constant(value)
        try:
            outputs = self._call(signature_name or DEFAULT_SIGNATURE, function, tensors)
        except tf.errors.OpError as error:
            code = _STATUS_NAMES.get(error.error_code, "INTERNAL")
            raise ServingError(code, _graph_message(error)) from None
        return {name: value.numpy() for name, value in outputs.items()}

    def _call(self, key, function, tensors):
        if key in self._called:
            return function(**tensors)
        with self._first_call:
            try:
                return function(**tensors)
            finally:
                self._called.add(key)


def _shape_text(shape):
    return "[" + ",".join("-1" if d is None else str(d) for d in shape.as_list()) + "]"


def _graph_message(error):
    """TF Serving reports the op's message and node, without eager's preamble."""
    message = error.message
    marker = "<stack traces unavailable>\n"
    return message.split(marker, 1)[1] if marker in message else message
