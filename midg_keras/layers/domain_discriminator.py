"""Domain discriminator of the MoIE adversarial game."""

import keras


@keras.saving.register_keras_serializable(package="midg")
class DomainDiscriminator(keras.layers.Layer):
    """Two-layer perceptron that predicts the domain of an expert output (Eq. 4).

    `Dense(hidden_dim // 2) -> ReLU -> Dropout -> Dense(1 or num_domains)`,
    returning logits. The output Dense always computes in float32 so the
    logits feed a numerically safe cross-entropy under mixed precision. The
    gradient reversal is not inside: apply `GradientReversal` to the input.

    Args:
        hidden_dim: d; the hidden layer is `max(hidden_dim // 2, 1)` wide.
        num_domains: 2 gives one logit (binary), more gives one logit per domain.
        dropout: dropout rate after the hidden layer.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        x: `(batch, features)`.
        training: whether dropout is active.

    Returns:
        float32 logits `(batch, 1)` or `(batch, num_domains)`.

    Example:
    >>> discriminator = DomainDiscriminator(hidden_dim=16)
    >>> discriminator(np.random.rand(3, 16)).shape
    (3, 1)

    References:
        MIDG paper §3.3, Eq. 4; Ganin et al., JMLR 2016.
    """

    def __init__(self, hidden_dim, num_domains=2, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        if num_domains < 2:
            raise ValueError(f"DomainDiscriminator: num_domains must be >= 2, got {num_domains}.")
        self.hidden_dim = hidden_dim
        self.num_domains = num_domains
        self.dropout = dropout

    def build(self, x_shape):
        hidden_units = max(self.hidden_dim // 2, 1)
        self.hidden_dense = keras.layers.Dense(
            hidden_units, activation="relu", dtype=self.dtype_policy, name="hidden_dense"
        )
        self.hidden_dense.build(x_shape)
        self.hidden_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="hidden_dropout"
        )
        self.logits_dense = keras.layers.Dense(
            1 if self.num_domains == 2 else self.num_domains,
            dtype="float32",
            name="logits_dense",
        )
        self.logits_dense.build(tuple(x_shape[:-1]) + (hidden_units,))

    def call(self, x, training=None):
        hidden = self.hidden_dropout(self.hidden_dense(x), training=training)
        return self.logits_dense(hidden)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_domains": self.num_domains,
                "dropout": self.dropout,
            }
        )
        return config
