"""Attention-weighted mean over the real time steps of a padded sequence."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="midg")
class MaskedAttentionPooling(keras.layers.Layer):
    """Pools `(batch, time, dim)` with learned weights over the real time steps.

    A mean gives every token the same weight, so the few words that carry a clip's
    sentiment are diluted by the rest; here a learned score per step (a Dense layer to
    one logit) is softmaxed over the real steps and weights the average. Scores and the
    softmax run in float32; a row with no real step pools to zeros.

    Args:
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        x: `(batch, time, dim)`.
        mask: optional boolean `(batch, time)`; None weighs every step.

    Returns:
        `(batch, dim)`.

    Example:
    >>> pooling = MaskedAttentionPooling()
    >>> pooling(np.ones((2, 4, 3)), mask=np.array([[1, 1, 0, 0], [0, 0, 0, 0]], bool)).numpy()[:, 0].tolist()
    [1.0, 0.0]

    References:
        An alternative to the mean pooling of the MIDG paper §3.3-3.4 (pooled unimodal
        representations), as in attention pooling for sentence encoders (Lin et al. 2017).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def build(self, input_shape):
        self.score = keras.layers.Dense(1, dtype=self.dtype_policy, name="score")
        self.score.build(input_shape)

    def call(self, x, mask=None):
        logits = ops.cast(self.score(x), "float32")[..., 0]
        if mask is None:
            mask = ops.ones(ops.shape(logits), "bool")
        mask = ops.cast(mask, "bool")
        logits = ops.where(mask, logits, ops.full_like(logits, -1e9))
        weights = ops.softmax(logits, axis=-1) * ops.cast(mask, "float32")
        pooled = ops.sum(ops.cast(x, "float32") * weights[..., None], axis=1)
        return ops.cast(pooled, x.dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def compute_mask(self, x, mask=None):
        return None
