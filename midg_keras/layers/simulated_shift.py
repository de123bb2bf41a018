"""Simulated out-of-domain inputs: a random subset / perturbation of raw features."""

import keras
from keras import ops

EPSILON = 1e-6


@keras.saving.register_keras_serializable(package="midg")
class SimulatedShift(keras.layers.Layer):
    """Draws a simulated out-of-domain version of a batch of raw feature sequences.

    MIDG simulates out-of-domain data "using a subset of raw data" (paper §1) and trains
    "with simulated out-of-domain data in conjunction with in-domain data" (§4.3). This
    layer makes that sample, in training only, from four independent kinds of shift,
    each off at strength 0:

    - `crop`: keep a random contiguous sub-sequence covering a fraction drawn from
      U(1 - crop, 1) of each sample's valid length (shorter clips, another start);
    - `frame_drop`: drop each valid frame / token with probability `frame_drop`
      (a random subset; a clip keeps at least one frame);
    - `channel_drop`: zero each feature channel with probability `channel_drop` for the
      whole sequence of a sample (per-frame dropout would average away over time);
    - `stats`: resample each sample's per-channel mean and std around the batch's
      (DSU, Li et al. 2022): mu' = mu + stats * eps * std_batch(mu), and likewise sigma,
      then x' = (x - mu) / sigma * sigma' + mu' on the valid frames (covariate shift).

    At inference (`training=False`) the inputs pass unchanged, so serving is
    deterministic.

    Args:
        crop: largest fraction of a sequence cut away, in [0, 1).
        frame_drop: per-frame drop probability, in [0, 1).
        channel_drop: per-channel drop probability, in [0, 1).
        stats: strength of the feature-statistics perturbation (>= 0).
        seed: optional int seed.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        sequence: `(batch, time, features)` raw features.
        frame_mask: boolean `(batch, time)`, True on valid frames (not a Keras mask:
            the layer returns the new one).
        training: shift when True, identity otherwise.

    Returns:
        `(sequence, mask)`: the shifted features (zero on frames the mask drops) and mask.

    Example:
    >>> shift = SimulatedShift(crop=0.5, channel_drop=0.2, stats=1.0, seed=1)
    >>> x, mask = np.random.rand(2, 6, 4), np.arange(6) < np.array([[6], [4]])
    >>> shifted, new_mask = shift(x, mask, training=True)
    >>> shifted.shape, new_mask.shape
    ((2, 6, 4), (2, 6))

    References:
        MIDG paper §1 and §4.3 (simulated out-of-domain data); Li et al., ICLR 2022
        (DSU: uncertain feature statistics).
    """

    def __init__(self, crop=0.0, frame_drop=0.0, channel_drop=0.0, stats=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        for name, value in (
            ("crop", crop),
            ("frame_drop", frame_drop),
            ("channel_drop", channel_drop),
        ):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"SimulatedShift: {name} must be in [0, 1), got {value}.")
        if stats < 0:
            raise ValueError(f"SimulatedShift: stats must be >= 0, got {stats}.")
        self.crop = crop
        self.frame_drop = frame_drop
        self.channel_drop = channel_drop
        self.stats = stats
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # Built at once, as Keras' Dropout: its only state, the seed, does not depend on
        # the input shape. A model whose forward pass skips it (token dropout outside
        # training) then has no unbuilt sublayer for Keras to warn about.
        self.built = True

    @property
    def active(self):
        return any((self.crop, self.frame_drop, self.channel_drop, self.stats))

    def call(self, sequence, frame_mask, training=None):
        mask = ops.cast(frame_mask, "bool")
        if not training or not self.active:
            return sequence, mask
        batch, steps = ops.shape(sequence)[0], ops.shape(sequence)[1]
        dtype = sequence.dtype
        lengths = ops.sum(ops.cast(mask, "float32"), axis=1)
        positions = ops.cast(ops.arange(steps), "float32")[None, :]
        new_mask = mask
        if self.crop:
            fraction = 1.0 - self.crop * keras.random.uniform((batch,), seed=self.seed_generator)
            width = ops.maximum(1.0, ops.ceil(fraction * lengths))
            start = ops.floor(
                keras.random.uniform((batch,), seed=self.seed_generator) * (lengths - width + 1.0)
            )
            window = (positions >= start[:, None]) & (positions < (start + width)[:, None])
            new_mask = new_mask & window
        if self.frame_drop:
            draw = keras.random.uniform((batch, steps), seed=self.seed_generator)
            kept = new_mask & (draw >= self.frame_drop)
            # A clip that lost every frame keeps its valid frame with the highest draw.
            best = ops.argmax(ops.where(new_mask, draw, -1.0), axis=1)
            fallback = ops.one_hot(best, steps, dtype="int32") > 0
            empty = ops.sum(ops.cast(kept, "int32"), axis=1, keepdims=True) == 0
            new_mask = kept | (fallback & empty)
        valid = ops.cast(new_mask, dtype)[..., None]
        if self.stats:
            sequence = self._perturb_statistics(sequence, valid)
        if self.channel_drop:
            channels = ops.shape(sequence)[2]
            keep = keras.random.uniform((batch, 1, channels), seed=self.seed_generator)
            sequence = sequence * ops.cast(keep >= self.channel_drop, dtype)
        return sequence * valid, new_mask

    def _perturb_statistics(self, sequence, valid):
        count = ops.maximum(ops.sum(valid, axis=1, keepdims=True), 1.0)
        mean = ops.sum(sequence * valid, axis=1, keepdims=True) / count
        variance = ops.sum(ops.square(sequence - mean) * valid, axis=1, keepdims=True) / count
        std = ops.sqrt(variance + EPSILON)
        # Spread of the statistics across the batch: how far a new domain may move them.
        mean_spread = ops.std(mean, axis=0, keepdims=True)
        std_spread = ops.std(std, axis=0, keepdims=True)
        shape = ops.shape(mean)
        new_mean = mean + self.stats * mean_spread * keras.random.normal(
            shape, seed=self.seed_generator, dtype=sequence.dtype
        )
        new_std = std + self.stats * std_spread * keras.random.normal(
            shape, seed=self.seed_generator, dtype=sequence.dtype
        )
        return (sequence - mean) / std * ops.abs(new_std) + new_mean

    def compute_output_shape(self, sequence_shape, frame_mask_shape):
        return sequence_shape, frame_mask_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            crop=self.crop,
            frame_drop=self.frame_drop,
            channel_drop=self.channel_drop,
            stats=self.stats,
            seed=self.seed,
        )
        return config
