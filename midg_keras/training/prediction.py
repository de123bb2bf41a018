"""Predictions of a model over a batched split: shared by evaluation and `ValidationMetrics`."""

import keras
import numpy as np


def predict(model, dataset):
    """(ids, labels, predictions) over a batched dataset, in its order, common scale."""
    ids, labels, predictions = [], [], []
    for batch in dataset:
        inputs, label = batch[0], batch[1]
        outputs = model(inputs, training=False)  # a grad-tracking tensor on PyTorch
        predictions.append(keras.ops.convert_to_numpy(outputs["prediction"]))
        labels.append(np.asarray(label))
        if len(batch) > 2:
            ids.extend(v.decode() for v in np.asarray(batch[2]))
    return ids, np.concatenate(labels), np.concatenate(predictions)
