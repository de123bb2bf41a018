"""Mean over the real time steps of a padded sequence."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="midg")
class MaskedMeanPooling(keras.layers.Layer):
    """Averages `(batch, time, dim)` over the time steps the mask marks as real.

    Sums are accumulated in float32 (a float16 sum over hundreds of frames
    loses precision) and the result is cast back to the input dtype. A row
    with no real step pools to zeros rather than NaN.

    Args:
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        x: `(batch, time, dim)`.
        mask: optional boolean `(batch, time)`; None averages every step.

    Returns:
        `(batch, dim)`.

    Example:
    >>> pooling = MaskedMeanPooling()
    >>> pooling(np.ones((2, 4, 3)), mask=np.array([[1, 1, 0, 0], [0, 0, 0, 0]], bool)).numpy()[:, 0].tolist()
    [1.0, 0.0]

    References:
        MIDG paper §3.3-3.4 (pooled unimodal representations I_m and O_mi).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, x, mask=None):
        values = ops.cast(x, "float32")
        if mask is None:
            return ops.cast(ops.mean(values, axis=1), x.dtype)
        weights = ops.cast(mask, "float32")[:, :, None]
        total = ops.sum(values * weights, axis=1)
        count = ops.maximum(ops.sum(weights, axis=1), 1.0)
        return ops.cast(total / count, x.dtype)

    def compute_mask(self, x, mask=None):
        return None
