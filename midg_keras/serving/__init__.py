"""Serving the exported SavedModel: a TF Serving client and local stand-ins (docs/design.md §10).

`client` builds TF Serving REST bodies and gRPC `PredictRequest`s and sends them.
`rest_standin`, `grpc_standin` and `standin` are LOCAL STAND-INS for
`tensorflow_model_server` (which cannot be installed here): they load the SavedModel and
answer in TF Serving's shapes for tests and demos. Production is `tensorflow/serving`.
Modules are imported on use, so the client does not pull in gRPC or the stand-ins.
"""
