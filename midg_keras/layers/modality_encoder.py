"""Per-modality encoder: strided Conv1D projection, positions, Transformer blocks."""

import math

import keras
from keras import ops

from midg_keras.layers.transformer_encoder_block import TransformerEncoderBlock


def sinusoidal_position_encoding(length, dim, dtype):
    """`(length, dim)` sinusoidal encoding: sin on even channels, cos on odd ones."""
    positions = ops.cast(ops.arange(length), "float32")[:, None]
    channels = ops.arange(dim)
    exponents = ops.cast(2 * (channels // 2), "float32") / float(dim)
    inverse_frequencies = ops.exp(-math.log(10000.0) * exponents)
    angles = positions * inverse_frequencies[None, :]
    encoding = ops.where(channels % 2 == 0, ops.sin(angles), ops.cos(angles))
    return ops.cast(encoding, dtype)


@keras.saving.register_keras_serializable(package="midg")
class ModalityEncoder(keras.layers.Layer):
    """Encodes one modality's feature sequence into A_m (docs/design.md §4.1, paper §3.2).

    The input features are projected to `hidden_dim` with a Conv1D whose
    kernel and stride both equal `stride`, so each output frame summarizes one
    non-overlapping chunk of `stride` input frames. The time axis is padded on
    the right to a multiple of `stride` first, so chunks always start at frame
    0 and a sequence's outputs do not depend on how much padding follows it.
    Padded frames are zeroed before the projection, an output frame is real
    iff any of its input frames is (`length' = ceil(length / stride)`), and
    the outputs at padded positions are zero. Sinusoidal positions and
    `num_layers` Transformer encoder blocks follow.

    Args:
        hidden_dim: output width d.
        num_layers: number of `TransformerEncoderBlock`s.
        num_heads: attention heads per block; must divide `hidden_dim`.
        intermediate_dim: feed-forward width; defaults to `2 * hidden_dim`.
        stride: temporal downsampling factor of the projection (1 = per frame).
        dropout: dropout rate of the blocks and after the position encoding.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(batch, time, features)`.
        mask: optional boolean `(batch, time)`, True at real frames.
        training: whether dropout is active.

    Returns:
        `(sequence, mask)`: `(batch, ceil(time / stride), hidden_dim)` and its
        boolean mask `(batch, ceil(time / stride))`.

    Example:
    >>> encoder = ModalityEncoder(hidden_dim=16, num_heads=2, stride=3)
    >>> sequence, mask = encoder(np.ones((2, 10, 5)), mask=np.arange(10) < np.array([[10], [4]]))
    >>> sequence.shape, mask.numpy().sum(axis=1).tolist()
    ((2, 4, 16), [4, 2])

    References:
        MIDG paper §3.2 ("encoders specific to each modality"), Fig. 1(a).
    """

    def __init__(
        self,
        hidden_dim,
        num_layers=1,
        num_heads=4,
        intermediate_dim=None,
        stride=1,
        dropout=0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if stride < 1:
            raise ValueError(f"ModalityEncoder: stride must be >= 1, got {stride}.")
        if num_layers and hidden_dim % num_heads != 0:
            raise ValueError(
                f"ModalityEncoder: hidden_dim={hidden_dim} must be divisible by "
                f"num_heads={num_heads}. Fix: choose --hidden_dim as a multiple "
                "of --num_heads."
            )
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.stride = stride
        self.dropout = dropout
        # Masks are consumed explicitly and the strided output mask is
        # returned, not attached: see `compute_mask`.
        self.supports_masking = True

    def build(self, inputs_shape):
        self.projection = keras.layers.Conv1D(
            self.hidden_dim,
            kernel_size=self.stride,
            strides=self.stride,
            padding="valid",
            dtype=self.dtype_policy,
            name="projection",
        )
        # Built for any length: a sequence shorter than the kernel is padded
        # to one full chunk in `call`.
        self.projection.build((inputs_shape[0], None, inputs_shape[-1]))
        self.embedding_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="embedding_dropout"
        )
        sequence_shape = (inputs_shape[0], None, self.hidden_dim)
        self.blocks = []
        for index in range(self.num_layers):
            block = TransformerEncoderBlock(
                num_heads=self.num_heads,
                intermediate_dim=self.intermediate_dim or 2 * self.hidden_dim,
                dropout=self.dropout,
                dtype=self.dtype_policy,
                name=f"block_{index}",
            )
            block.build(sequence_shape)
            self.blocks.append(block)

    def call(self, inputs, mask=None, training=None):
        batch_size, length = ops.shape(inputs)[0], ops.shape(inputs)[1]
        if mask is None:
            mask = ops.ones((batch_size, length), dtype="bool")
        mask = ops.cast(mask, "bool")
        # `where`, not a product: 0 * inf in an unused frame would be NaN.
        x = ops.where(mask[:, :, None], inputs, ops.zeros_like(inputs))

        padding = (-length) % self.stride
        x = ops.pad(x, [[0, 0], [0, padding], [0, 0]])
        chunks = ops.reshape(
            ops.pad(mask, [[0, 0], [0, padding]], constant_values=False),
            (batch_size, (length + padding) // self.stride, self.stride),
        )
        sequence_mask = ops.any(chunks, axis=-1)

        x = self.projection(x)
        positions = sinusoidal_position_encoding(ops.shape(x)[1], self.hidden_dim, x.dtype)
        x = self.embedding_dropout(x + positions[None, :, :], training=training)
        for block in self.blocks:
            x = block(x, mask=sequence_mask, training=training)
        x = x * ops.cast(sequence_mask, x.dtype)[:, :, None]
        return x, sequence_mask

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "stride": self.stride,
                "dropout": self.dropout,
            }
        )
        return config
