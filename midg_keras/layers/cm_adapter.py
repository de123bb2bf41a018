"""Cross-Modal Adapter: gated knowledge injection from the other modalities."""

import keras
from keras import ops

from midg_keras.layers.cross_modal_attention import CrossModalAttention


@keras.saving.register_keras_serializable(package="midg")
class CMAdapter(keras.layers.Layer):
    """Injects knowledge from context modalities into a target modality (paper §3.4).

    `M_m = MLP(Dropout(CrossModalAttention(O_m, context)))`,
    `g_m = sigmoid(Dense(O_m))` and `O_mi = O_m + g_m * M_m` (docs/design.md §4.5): the
    target modality O_m is the query, the concatenated sequences of the other
    two modalities are keys and values, and the gate, computed from the
    target alone, decides per position and channel how much injected
    knowledge to admit. The MLP is `Dense(hidden_dim, gelu) -> Dense(target
    width)`. Outputs at padded target positions are zero.

    Args:
        hidden_dim: attention width (`num_heads * key_dim`) and MLP hidden width;
            must be divisible by `num_heads`.
        num_heads: attention heads.
        dropout: dropout rate after the attention.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        target: O_m, `(batch, target_length, dim)`.
        context: `(batch, context_length, context_dim)`.
        target_mask: optional boolean `(batch, target_length)`.
        context_mask: optional boolean `(batch, context_length)`.
        training: whether dropout is active.

    Returns:
        O_mi, `(batch, target_length, dim)`.

    Example:
    >>> adapter = CMAdapter(hidden_dim=16, num_heads=2)
    >>> adapter(np.random.rand(2, 5, 16), np.random.rand(2, 9, 16)).shape
    (2, 5, 16)

    References:
        MIDG paper §3.4, Eq. 5.
    """

    def __init__(self, hidden_dim, num_heads=4, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        if hidden_dim % num_heads != 0:
            raise ValueError(
                f"CMAdapter: hidden_dim={hidden_dim} must be divisible by "
                f"num_heads={num_heads}. Fix: choose --hidden_dim as a multiple "
                "of --num_heads."
            )
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.dropout = dropout
        # Outputs align with `target`, so a Keras mask on it stays valid.
        self.supports_masking = True

    def build(self, target_shape, context_shape):
        target_dim = target_shape[-1]
        self.attention = CrossModalAttention(
            num_heads=self.num_heads,
            key_dim=self.hidden_dim // self.num_heads,
            dtype=self.dtype_policy,
            name="attention",
        )
        self.attention.build(target_shape, context_shape)
        self.attention_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="attention_dropout"
        )
        self.mlp_hidden = keras.layers.Dense(
            self.hidden_dim, activation="gelu", dtype=self.dtype_policy, name="mlp_hidden"
        )
        self.mlp_hidden.build(target_shape)
        self.mlp_output = keras.layers.Dense(target_dim, dtype=self.dtype_policy, name="mlp_output")
        self.mlp_output.build(tuple(target_shape[:-1]) + (self.hidden_dim,))
        self.gate = keras.layers.Dense(
            target_dim, activation="sigmoid", dtype=self.dtype_policy, name="gate"
        )
        self.gate.build(target_shape)

    def call(
        self,
        target,
        context,
        target_mask=None,
        context_mask=None,
        training=None,
    ):
        injected = self.attention(
            target,
            context,
            query_mask=target_mask,
            context_mask=context_mask,
            training=training,
        )
        injected = self.attention_dropout(injected, training=training)
        injected = self.mlp_output(self.mlp_hidden(injected))
        outputs = target + self.gate(target) * injected
        if target_mask is not None:
            outputs = outputs * ops.cast(target_mask, outputs.dtype)[:, :, None]
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "dropout": self.dropout,
            }
        )
        return config
