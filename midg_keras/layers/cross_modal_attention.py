"""Masked multi-head attention of a query sequence over a context sequence."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="midg")
class CrossModalAttention(keras.layers.Layer):
    """Multi-head scaled dot-product attention with key padding masks (Eq. 5).

    `softmax(Q K^T / sqrt(d_k)) V` per head, with Q projected from `query` and
    K, V from `context`. It is the knowledge-injection attention of the
    CM-Adapter (context = the other two modalities) and, with
    `context = query`, the self-attention of `TransformerEncoderBlock`.

    The softmax runs in float32 whatever the dtype policy, and padded keys get
    exactly zero weight. A batch row whose context is entirely padding gets a
    zero output (there is nothing to attend to) instead of the NaN of a
    softmax over only masked scores; padded query positions are zero as well.
    Written with `keras.ops` rather than `keras.layers.MultiHeadAttention`,
    whose fused backend kernels treat fully masked rows differently on
    TensorFlow, JAX and PyTorch.

    Args:
        num_heads: number of attention heads.
        key_dim: size of each head's query/key/value projection.
        dropout: dropout rate on the attention weights.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Call arguments:
        query: `(batch, query_length, query_dim)`.
        context: `(batch, context_length, context_dim)`.
        query_mask: optional boolean `(batch, query_length)`.
        context_mask: optional boolean `(batch, context_length)`.
        training: whether dropout is active.

    Returns:
        `(batch, query_length, query_dim)`.

    Example:
    >>> attention = CrossModalAttention(num_heads=2, key_dim=8)
    >>> out = attention(np.ones((2, 5, 16)), np.ones((2, 7, 12)))
    >>> out.shape
    (2, 5, 16)

    References:
        Vaswani et al., "Attention Is All You Need", 2017; MIDG paper Eq. 5.
    """

    def __init__(self, num_heads, key_dim, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.dropout = dropout
        # Outputs align with `query`, so a Keras mask on it stays valid.
        self.supports_masking = True

    def build(self, query_shape, context_shape):
        projection_dim = self.num_heads * self.key_dim
        self.query_projection = keras.layers.Dense(
            projection_dim, dtype=self.dtype_policy, name="query_projection"
        )
        self.query_projection.build(query_shape)
        self.key_projection = keras.layers.Dense(
            projection_dim, dtype=self.dtype_policy, name="key_projection"
        )
        self.key_projection.build(context_shape)
        self.value_projection = keras.layers.Dense(
            projection_dim, dtype=self.dtype_policy, name="value_projection"
        )
        self.value_projection.build(context_shape)
        self.output_projection = keras.layers.Dense(
            query_shape[-1], dtype=self.dtype_policy, name="output_projection"
        )
        self.output_projection.build(tuple(query_shape[:-1]) + (projection_dim,))
        self.attention_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="attention_dropout"
        )

    def _split_heads(self, x):
        """(batch, length, heads * key_dim) -> (batch, heads, length, key_dim)."""
        batch_size, length = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (batch_size, length, self.num_heads, self.key_dim))
        return ops.transpose(x, (0, 2, 1, 3))

    def call(
        self,
        query,
        context,
        query_mask=None,
        context_mask=None,
        training=None,
    ):
        # The 1/sqrt(d_k) scale goes on the (length x key_dim) queries, not on the
        # (length x length) scores; the masked softmax is one fused kernel. Both halve the
        # elementwise passes over the score tensor, most of the attention's cost on a CPU
        # (benchmarks/results/profile_*.md).
        scale = ops.cast(1.0 / float(self.key_dim) ** 0.5, self.compute_dtype)
        queries = self._split_heads(self.query_projection(query) * scale)
        keys = self._split_heads(self.key_projection(context))
        values = self._split_heads(self.value_projection(context))

        scores = ops.cast(ops.einsum("bhqd,bhkd->bhqk", queries, keys), "float32")
        if context_mask is None:
            context_mask = ops.ones(ops.shape(context)[:2], dtype="bool")
        key_mask = ops.cast(context_mask, "bool")[:, None, None, :]
        # exp(-1e9 - max) is exactly 0 in float32: padded keys get zero weight. A row with
        # no valid key gets uniform weights here and a zero output below.
        weights = ops.softmax(ops.where(key_mask, scores, -1e9), axis=-1)
        weights = ops.cast(weights, self.compute_dtype)
        weights = self.attention_dropout(weights, training=training)

        attended = ops.transpose(ops.matmul(weights, values), (0, 2, 1, 3))
        batch_size, query_length = ops.shape(query)[0], ops.shape(query)[1]
        attended = ops.reshape(attended, (batch_size, query_length, self.num_heads * self.key_dim))
        outputs = self.output_projection(attended)

        has_context = ops.any(ops.cast(context_mask, "bool"), axis=-1)
        keep = ops.cast(has_context, self.compute_dtype)[:, None, None]
        if query_mask is not None:
            keep = keep * ops.cast(query_mask, self.compute_dtype)[:, :, None]
        return outputs * keep

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "dropout": self.dropout,
            }
        )
        return config
