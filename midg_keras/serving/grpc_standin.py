"""A local in-process STAND-IN for TF Serving's gRPC `PredictionService`; not TF Serving.

It implements `Predict` with the real `tensorflow_serving.apis` protos (from the
`tensorflow-serving-api` package), so a `PredictRequest` a client builds here is exactly
what it would send to `tensorflow_model_server --port=8500`. Errors are gRPC statuses with
TF Serving's codes (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION; RESOURCE_EXHAUSTED from
gRPC itself for a message over the size limit, as TF Serving's own limit gives). It listens on
127.0.0.1 only, answers `max_workers` requests at once (more wait in gRPC's queue) and bounds
message sizes.
"""

import math
from concurrent import futures

import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from midg_keras.serving.servable import ServingError

HOST = "127.0.0.1"
MAX_MESSAGE_BYTES = 64 << 20
# A tensor may declare a shape larger than its message carries; the stand-in materializes
# at most this many values per input (a full 64 MiB message of float32).
MAX_TENSOR_ELEMENTS = MAX_MESSAGE_BYTES // 4


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """`PredictionService.Predict` over a loaded `Servable`; other methods stay unimplemented."""

    def __init__(self, servable):
        self.servable = servable

    def Predict(self, request, context):  # noqa: N802 (gRPC's method name)
        try:
            return self._predict(request)
        except ServingError as error:
            context.abort(getattr(grpc.StatusCode, error.code), error.message)
        except Exception as error:  # a stand-in bug still gets a status, not UNKNOWN
            context.abort(
                grpc.StatusCode.INTERNAL, f"stand-in failure: {type(error).__name__}: {error}"
            )

    def _predict(self, request):
        version = (
            request.model_spec.version.value if request.model_spec.HasField("version") else None
        )
        self.servable.check_model(request.model_spec.name, version)
        specs = self.servable.input_specs(request.model_spec.signature_name)
        for index, name in enumerate(sorted(request.inputs)):
            proto = request.inputs[name]
            if name in specs and proto.dtype != specs[name].dtype.as_datatype_enum:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"Expects arg[{index}] ({name}) to be {specs[name].dtype.name} but "
                    f"{_dtype_name(proto.dtype)} is provided",
                )
        inputs = {name: _to_array(name, proto) for name, proto in request.inputs.items()}
        outputs = self.servable.predict(inputs, request.model_spec.signature_name)
        unknown = [name for name in request.output_filter if name not in outputs]
        if unknown:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"output tensor alias not found in signature: {unknown[0]} Outputs expected "
                f"to be in the set {{{','.join(sorted(outputs))}}}.",
            )
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.servable.name
        response.model_spec.version.value = self.servable.version
        response.model_spec.signature_name = request.model_spec.signature_name or "serving_default"
        for name in request.output_filter or outputs:
            response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name]))
        return response


def _dtype_name(enum):
    try:
        return tf.dtypes.as_dtype(enum).name
    except TypeError:
        return f"DataType({enum})"


def _to_array(name, proto):
    """A `TensorProto` -> numpy, refusing malformed or oversized ones with a status.

    A proto may declare any shape with few or no values (TensorFlow repeats the last value
    or fills zeros), so the declared size is bounded before anything is allocated.
    """
    dims = [dim.size for dim in proto.tensor_shape.dim]
    if any(size < 0 for size in dims):
        raise ServingError("INVALID_ARGUMENT", f"{name}: negative dimension in shape {dims}")
    if math.prod(dims) > MAX_TENSOR_ELEMENTS:
        raise ServingError(
            "RESOURCE_EXHAUSTED",
            f"{name}: shape {dims} holds {math.prod(dims)} values, over the stand-in's limit "
            f"of {MAX_TENSOR_ELEMENTS}",
        )
    try:
        return tf.make_ndarray(proto)
    except (ValueError, TypeError) as error:
        raise ServingError("INVALID_ARGUMENT", f"{name}: malformed TensorProto: {error}") from None


def start_grpc_standin(servable, port=0, max_workers=4, max_message_bytes=MAX_MESSAGE_BYTES):
    """Starts the stand-in on 127.0.0.1:`port` (0 = a free one); returns (server, port).

    Stop it with `server.stop(grace=None)`.
    """
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(servable), server
    )
    bound = server.add_insecure_port(f"{HOST}:{port}")
    if not bound:
        raise OSError(f"cannot listen on {HOST}:{port}")
    server.start()
    return server, bound
