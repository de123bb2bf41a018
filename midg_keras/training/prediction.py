"""Predictions of a model over a batched split: shared by evaluation and `ValidationMetrics`."""

import weakref

import keras
import numpy as np

# model -> its traced forward pass on TensorFlow (one per model, for every split and epoch).
_TRACED_FORWARD = weakref.WeakKeyDictionary()


def predict(model, dataset):
    """(ids, labels, predictions) over a batched dataset, in its order, common scale."""
    forward = _forward(model, dataset)
    ids, labels, predictions = [], [], []
    for batch in dataset:
        inputs, label = batch[0], batch[1]
        predictions.append(keras.ops.convert_to_numpy(forward(inputs)))
        labels.append(np.asarray(label))
        if len(batch) > 2:
            ids.extend(v.decode() for v in np.asarray(batch[2]))
    return ids, np.concatenate(labels), np.concatenate(predictions)


def _forward(model, dataset):
    """`inputs -> model(inputs, training=False)["prediction"]`, traced once on TensorFlow.

    The signature is the dataset's own (any batch size, any sequence length), so one trace
    serves every batch, split and epoch; Keras' `predict_on_batch` would retrace for new
    shapes, and an eager pass per batch costs several times a traced one. Other backends
    and plain iterables of batches run eagerly (`convert_to_numpy` converts PyTorch's
    grad-tracking tensors).
    """
    spec = getattr(dataset, "element_spec", None)  # None: an iterable of batches
    if keras.backend.backend() != "tensorflow" or spec is None:
        return lambda inputs: model(inputs, training=False)["prediction"]
    import tensorflow as tf

    signature = spec[0]
    cached = _TRACED_FORWARD.get(model)
    if cached is None or cached[0] != signature:
        # A weak reference: the cache must not keep a finished run's model alive.
        model_ref = weakref.ref(model)
        function = tf.function(
            lambda inputs: model_ref()(inputs, training=False)["prediction"],
            input_signature=[signature],
        )
        _TRACED_FORWARD[model] = cached = (signature, function)
    return cached[1]
