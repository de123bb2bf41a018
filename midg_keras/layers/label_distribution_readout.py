"""The median score of a predicted label distribution over fixed bins."""

import keras
from keras import ops


def bin_centers(num_bins, low=-1.0, high=1.0):
    """`(num_bins,)` float32 centers, evenly spaced from `low` to `high` inclusive."""
    return ops.linspace(low, high, num_bins, dtype="float32")


@keras.saving.register_keras_serializable(package="midg")
class LabelDistributionReadout(keras.layers.Layer):
    """Reads a score off logits over label bins: the median of the predicted distribution.

    A distribution head (`--prediction_head=distribution`, docs/design.md §4.6) predicts
    softmax probabilities over `num_bins` bins whose centers span the common label scale
    `[low, high]`; each bin is read as a uniform density over its width, so the
    distribution's cumulative function is piecewise linear and its median is exact and
    continuous. The median is the point that minimizes the expected absolute error, the
    metric MOSI/MOSEI tables report (MAE); it moves with the probabilities almost
    everywhere, so a consistency penalty on scores still gets gradients. Runs in float32.

    Args:
        num_bins: number of bins (>= 2).
        low, high: the centers of the first and the last bin.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        logits: `(batch, num_bins)`.

    Returns:
        `(batch,)` scores in `[low - width / 2, high + width / 2]`.

    Example:
    >>> readout = LabelDistributionReadout(num_bins=3)  # bins centered at -1, 0, 1
    >>> logits = np.log(np.array([[0.2, 0.2, 0.6], [1.0, 1e-9, 1e-9]], "float32"))
    >>> readout(logits).numpy().round(3).tolist()  # 0.1 of the last bin's 0.6 is below the median
    [0.667, -1.0]

    References:
        Label distribution learning with Gaussian soft targets (Gao et al., "Deep Label
        Distribution Learning With Label Ambiguity", IEEE TIP 2017); here read out by the
        median instead of the mean, for an absolute-error metric.
    """

    def __init__(self, num_bins, low=-1.0, high=1.0, **kwargs):
        super().__init__(**kwargs)
        if num_bins < 2:
            raise ValueError(f"LabelDistributionReadout: num_bins must be >= 2, got {num_bins}.")
        if not high > low:
            raise ValueError(f"LabelDistributionReadout: need low < high, got {low}, {high}.")
        self.num_bins = num_bins
        self.low = low
        self.high = high
        self.built = True  # no weights

    def call(self, logits):
        probabilities = ops.softmax(ops.cast(logits, "float32"), axis=-1)
        cumulative = ops.cumsum(probabilities, axis=-1)
        # The bin holding the median: the first whose cumulative mass reaches 1/2.
        index = ops.sum(ops.cast(cumulative < 0.5, "int32"), axis=-1)
        index = ops.minimum(index, self.num_bins - 1)[:, None]
        mass = ops.take_along_axis(probabilities, index, axis=-1)[:, 0]
        before = ops.take_along_axis(cumulative, index, axis=-1)[:, 0] - mass
        fraction = ops.clip((0.5 - before) / ops.maximum(mass, 1e-12), 0.0, 1.0)
        width = (self.high - self.low) / (self.num_bins - 1)
        return ops.take(self.centers(), index[:, 0]) - width / 2 + width * fraction

    def centers(self):
        """`(num_bins,)` float32 bin centers: what a distribution loss must target."""
        return bin_centers(self.num_bins, self.low, self.high)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],)

    def get_config(self):
        config = super().get_config()
        config.update({"num_bins": self.num_bins, "low": self.low, "high": self.high})
        return config
