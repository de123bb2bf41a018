"""A local STAND-IN for TF Serving's REST API; it is not TF Serving.

The real server (`docker run tensorflow/serving`, BUILD.md) cannot run here, so this tiny
HTTP server loads the exported SavedModel and answers the same URLs in the same JSON
shapes, for tests and local demos:

    POST /v1/models/<name>[/versions/<n>]:predict
         {"signature_name": ..., "instances": [{...}, ...]}  ->  {"predictions": [{...}, ...]}
         {"signature_name": ..., "inputs": {...}}            ->  {"outputs": {...}}
    GET  /v1/models/<name>[/versions/<n>]                   ->  model version status
    errors                                                   ->  HTTP 4xx {"error": "..."}

Request parsing follows TF Serving's JSON rules (row and columnar formats, named inputs,
JSON number types checked against the signature dtypes) and its error texts. It listens on
127.0.0.1 only, serves each connection in its own thread, reads at most `max_body_bytes` per
request (a larger body is answered 413; TF Serving itself sets no REST body limit) and
times idle connections out.
"""

import http.server
import json
import re
import threading

import numpy as np

from midg_keras.serving.servable import ServingError

HOST = "127.0.0.1"
MAX_BODY_BYTES = 64 << 20
REQUEST_TIMEOUT_S = 30
_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<rest>:predict|/metadata)?$"
)
_C_TYPES = {"float16": "half", "bfloat16": "bfloat16", "float32": "float", "float64": "double"}
_JSON_TYPES = {bool: "True", str: "String", dict: "Object", list: "Array", type(None): "Null"}


def _json_text(value, limit=200):
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit] + "..."


def _json_type(value):
    if value is True or value is False:
        return "True" if value else "False"
    return _JSON_TYPES.get(type(value), "Number")


def _flatten(value):
    if isinstance(value, list):
        for item in value:
            yield from _flatten(item)
    else:
        yield value


def _shape(array):
    return "[" + ",".join(str(d) for d in array.shape) + "]"


def _dense_shape(value):
    """TF Serving takes a tensor's shape from the first element at every level."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _lossless(item, dtype):
    """TF Serving's `IsLosslessDecimal`: integers up to 2**digits - 1, floats within range."""
    info = np.finfo(dtype.as_numpy_dtype)
    if isinstance(item, int):
        return abs(item) <= (1 << (info.nmant + 1)) - 1
    return not np.isfinite(item) or float(info.min) <= item <= float(info.max)


def json_to_array(value, dtype):
    """One JSON value (number or nested lists) -> numpy array of the signature dtype."""
    shape = _dense_shape(value)
    for item in _flatten(value):
        if dtype.is_floating:
            ok = _json_type(item) == "Number"
            if ok and not _lossless(item, dtype):
                raise ValueError(
                    f"Cannot convert JSON value: {_json_text(item)} to {_C_TYPES[dtype.name]} "
                    "without loss of precision."
                )
        else:
            ok = (
                isinstance(item, int)
                and not isinstance(item, bool)
                and (dtype.min <= item <= dtype.max)
            )
        if not ok:
            raise ValueError(
                f"JSON Value: {_json_text(item)} Type: {_json_type(item)} is not of expected "
                f"type: {dtype.name}"
            )
    try:
        array = np.array(value, dtype=dtype.as_numpy_dtype)
    except ValueError:
        array = None
    if array is None or list(array.shape) != shape:
        raise ValueError(
            f"Encountered list at unexpected size: the JSON value is not a dense tensor of "
            f"shape [{','.join(map(str, shape))}] (all lists at one level must be equally long)"
        )
    return array


def parse_predict_request(body: bytes, input_specs):
    """TF Serving's JSON predict request -> (signature_name, named arrays, row_format).

    `input_specs(signature_name)` returns the signature's input name -> `tf.TensorSpec`.
    Raises ServingError (INVALID_ARGUMENT) with TF Serving's message forms.
    """

    def invalid(message):
        return ServingError("INVALID_ARGUMENT", message)

    if not body.strip():
        raise invalid("JSON Parse error: The document is empty")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise invalid(f"JSON Parse error: {error}") from None
    except RecursionError:
        raise invalid("JSON Parse error: the document is nested too deeply") from None
    if not isinstance(document, dict):
        raise invalid(f"JSON Value: {_json_text(document)} Is not object")
    signature_name = document.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid(
            f"JSON Value: {_json_text(document)} not formatted correctly. 'signature_name' key "
            "must be a string value."
        )
    specs = input_specs(signature_name)
    if "instances" in document and "inputs" in document:
        raise invalid(
            f"JSON Value: {_json_text(document)} Not formatted correctly expecting only one of "
            "'inputs' or 'instances' keys to exist"
        )
    try:
        if "instances" in document:
            instances = document["instances"]
            # TF Serving's FormatError(doc, ...): "JSON Value: <request> <message>" (sic).
            if not isinstance(instances, list):
                problem = "Excepting 'instances' to be an list/array"
                raise invalid(f"JSON Value: {_json_text(document)} {problem}")
            if not instances:
                problem = "No values in 'instances' array"
                raise invalid(f"JSON Value: {_json_text(document)} {problem}")
            return signature_name, _rows(instances, specs, invalid), True
        if "inputs" in document:
            return signature_name, _columns(document["inputs"], specs, invalid), False
    except RecursionError:  # lists nested far deeper than any input's rank
        raise invalid("JSON Value: lists are nested too deeply for the inputs' ranks") from None
    raise invalid("Missing 'inputs' or 'instances' key")


def _rows(instances, specs, invalid):
    if not isinstance(instances, list):
        raise invalid("Expecting 'instances' to be an list/array")
    if not instances:
        raise invalid("No values in 'instances' array")
    if not isinstance(instances[0], dict) and len(specs) > 1:
        raise invalid(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map"
        )
    columns = {name: [] for name in specs}
    for index, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise invalid(f"Expecting object but got list at item {index} of input list")
        for name, value in instance.items():
            try:
                if name not in specs:
                    raise ValueError(f"JSON object: does not have named input: {name}")
                array = json_to_array(value, specs[name].dtype)
                if columns[name] and array.size != columns[name][0].size:
                    raise ValueError(
                        f"Expecting tensor size: {columns[name][0].size} but got: {array.size}"
                    )
                if columns[name] and array.shape != columns[name][0].shape:
                    raise ValueError(
                        f"Expecting shape {_shape(columns[name][0])} but got: {_shape(array)}"
                    )
            except ValueError as error:
                raise invalid(
                    f"Failed to process element: {index} key: {name} of 'instances' list. "
                    f"Error: INVALID_ARGUMENT: {error}"
                ) from None
            columns[name].append(array)
        if set(instance) != set(specs):
            raise invalid(
                f"Failed to process element: {index} of 'instances' list. JSON object: "
                f"{_json_text(instance)} keys must be equal to: {','.join(sorted(specs))}"
            )
    return {name: np.stack(arrays) for name, arrays in columns.items()}


def _columns(inputs, specs, invalid):
    if not isinstance(inputs, dict):
        raise invalid(
            "inputs is a plain value/list, but expecting an object as multiple input tensors "
            "required as per tensorinfo_map"
        )
    arrays = {}
    for name in sorted(specs):
        if name not in inputs:
            raise invalid(f"Missing named input: {name} in 'inputs' object.")
        try:
            arrays[name] = json_to_array(inputs[name], specs[name].dtype)
        except ValueError as error:
            raise invalid(str(error)) from None
    return arrays


def _json_ready(value):
    """Numpy output -> JSON values; float32 written as its shortest round-trip decimal."""
    if isinstance(value, np.ndarray):
        return [_json_ready(item) for item in value]
    if isinstance(value, np.floating):
        return float(str(value))
    return value.item() if isinstance(value, np.generic) else value


def predict_response(outputs, row_format):
    """Named output arrays -> TF Serving's JSON: `predictions` (rows) or `outputs`."""
    if not row_format:
        return {"outputs": {name: _json_ready(value) for name, value in outputs.items()}}
    names = sorted(outputs)
    batch = len(outputs[names[0]])
    if len(names) == 1:
        return {"predictions": _json_ready(outputs[names[0]])}
    return {
        "predictions": [
            {name: _json_ready(outputs[name][index]) for name in names} for index in range(batch)
        ]
    }


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "MIDG-TFServing-StandIn"
    timeout = REQUEST_TIMEOUT_S

    def log_message(self, format, *args):
        if self.server.verbose:
            super().log_message(format, *args)

    def _reply(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method):
        match = _PATH.match(self.path)
        want_predict = method == "POST"
        if not match or (match.group("rest") == ":predict") != want_predict:
            raise ServingError("NOT_FOUND", f"Malformed request: {method} {self.path}")
        if match.group("rest") == "/metadata":
            raise ServingError("UNIMPLEMENTED", "the stand-in does not serve /metadata")
        servable = self.server.servable
        servable.check_model(match.group("name"), match.group("version"))
        return servable

    def do_GET(self):  # noqa: N802 (http.server's naming)
        try:
            servable = self._route("GET")
        except ServingError as error:
            return self._reply(error.http_status, {"error": error.message})
        self._reply(
            200,
            {
                "model_version_status": [
                    {
                        "version": str(servable.version),
                        "state": "AVAILABLE",
                        "status": {"error_code": "OK", "error_message": ""},
                    }
                ]
            },
        )

    def do_POST(self):  # noqa: N802
        try:
            servable = self._route("POST")
            body = self._read_body()
            signature_name, inputs, row_format = parse_predict_request(body, servable.input_specs)
            outputs = servable.predict(inputs, signature_name)
            payload = predict_response(outputs, row_format)
        except ServingError as error:
            return self._reply(error.http_status, {"error": error.message})
        except Exception as error:  # a stand-in bug must not drop the connection unanswered
            self.close_connection = True
            return self._reply(500, {"error": f"stand-in failure: {type(error).__name__}: {error}"})
        self._reply(200, payload)

    def _read_body(self):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise ServingError("INVALID_ARGUMENT", "a Content-Length header is required")
        length = int(length)
        if length > self.server.max_body_bytes:
            self.close_connection = True
            self._discard(length)
            raise ServingError(
                "RESOURCE_EXHAUSTED",
                f"request body of {length} bytes exceeds the stand-in's limit of "
                f"{self.server.max_body_bytes} bytes",
                http_status=413,
            )
        return self.rfile.read(length)

    def _discard(self, length):
        """Reads and drops a refused body (up to 4x the limit) so the client gets the 413.

        Closing a socket with unread input resets the connection, and the client would see
        that instead of the answer. Larger bodies are not read: the connection just closes.
        """
        if length > 4 * self.server.max_body_bytes:
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                return
            length -= len(chunk)


class RestStandin(http.server.ThreadingHTTPServer):
    """The REST stand-in on 127.0.0.1:`port` (0 = a free port); `start()` runs it in a thread.

    Args:
        servable: the loaded `Servable` to answer with.
        port: TCP port on 127.0.0.1; 0 picks a free one (see `url`).
        max_body_bytes: larger requests are refused before they are read.
        verbose: log each request to stderr.

    Example:
    ```python
    with RestStandin(Servable("exports/midg")) as server:
        requests.post(server.url + "/v1/models/midg:predict", json=body)
    ```
    """

    daemon_threads = True

    def __init__(self, servable, port=0, max_body_bytes=MAX_BODY_BYTES, verbose=False):
        super().__init__((HOST, port), _Handler)
        self.servable = servable
        self.max_body_bytes = max_body_bytes
        self.verbose = verbose
        self._thread = None

    @property
    def url(self):
        return f"http://{HOST}:{self.server_address[1]}"

    @property
    def predict_url(self):
        return f"{self.url}/v1/models/{self.servable.name}:predict"

    def start(self):
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self.shutdown()
        self.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
