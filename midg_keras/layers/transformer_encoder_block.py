"""Post-norm Transformer encoder block with a key padding mask."""

import keras

from midg_keras.layers.cross_modal_attention import CrossModalAttention


@keras.saving.register_keras_serializable(package="midg")
class TransformerEncoderBlock(keras.layers.Layer):
    """Self-attention + feed-forward block of the modality encoders (docs/design.md §4.1).

    `x = LayerNorm(x + Dropout(SelfAttention(x)))`, then
    `x = LayerNorm(x + Dropout(FFN(x)))` with `FFN = Dense(intermediate_dim,
    gelu) -> Dense(hidden)`. Padded positions are excluded as keys, so they
    never change the outputs at real positions; their own outputs are
    meaningless and left to the caller to zero.

    Args:
        num_heads: attention heads; the input width must be divisible by it.
        intermediate_dim: width of the feed-forward hidden layer.
        dropout: dropout rate after attention, inside and after the FFN.
        layer_norm_epsilon: epsilon of both layer normalizations.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(batch, time, hidden)`.
        mask: optional boolean `(batch, time)`, True at real positions.
        training: whether dropout is active.

    Returns:
        `(batch, time, hidden)`.

    Example:
    >>> block = TransformerEncoderBlock(num_heads=2, intermediate_dim=32)
    >>> block(np.ones((2, 6, 16)), mask=np.array([[True] * 6, [True] * 3 + [False] * 3])).shape
    (2, 6, 16)

    References:
        Vaswani et al., "Attention Is All You Need", 2017 (post-norm layout).
    """

    def __init__(
        self,
        num_heads,
        intermediate_dim,
        dropout=0.1,
        layer_norm_epsilon=1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.supports_masking = True

    def build(self, inputs_shape):
        hidden_dim = inputs_shape[-1]
        if hidden_dim % self.num_heads != 0:
            raise ValueError(
                f"TransformerEncoderBlock: the width {hidden_dim} must be "
                f"divisible by num_heads={self.num_heads}. Fix: choose "
                "--hidden_dim as a multiple of --num_heads."
            )
        self.self_attention = CrossModalAttention(
            num_heads=self.num_heads,
            key_dim=hidden_dim // self.num_heads,
            dtype=self.dtype_policy,
            name="self_attention",
        )
        self.self_attention.build(inputs_shape, inputs_shape)
        self.attention_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="attention_dropout"
        )
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon,
            dtype=self.dtype_policy,
            name="attention_norm",
        )
        self.attention_norm.build(inputs_shape)
        self.ffn_intermediate = keras.layers.Dense(
            self.intermediate_dim,
            activation="gelu",
            dtype=self.dtype_policy,
            name="ffn_intermediate",
        )
        self.ffn_intermediate.build(inputs_shape)
        self.ffn_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="ffn_dropout"
        )
        self.ffn_output = keras.layers.Dense(hidden_dim, dtype=self.dtype_policy, name="ffn_output")
        self.ffn_output.build(tuple(inputs_shape[:-1]) + (self.intermediate_dim,))
        self.output_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="output_dropout"
        )
        self.ffn_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon,
            dtype=self.dtype_policy,
            name="ffn_norm",
        )
        self.ffn_norm.build(inputs_shape)

    def call(self, inputs, mask=None, training=None):
        attended = self.self_attention(
            inputs, inputs, query_mask=mask, context_mask=mask, training=training
        )
        x = self.attention_norm(inputs + self.attention_dropout(attended, training=training))
        h = self.ffn_dropout(self.ffn_intermediate(x), training=training)
        h = self.output_dropout(self.ffn_output(h), training=training)
        return self.ffn_norm(x + h)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
