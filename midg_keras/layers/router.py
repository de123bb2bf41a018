"""Router network G of the mixture of invariant experts."""

import keras
from keras import ops

from midg_keras import losses


@keras.saving.register_keras_serializable(package="midg")
class Router(keras.layers.Layer):
    """Computes expert weights g(x) = softmax(Dense(ReLU(Dense(x)))) (paper §3.3).

    With `top_k = 0` every expert gets its softmax weight (dense mixture) and
    the auxiliary loss is 0. With `top_k = k > 0` only the k largest weights
    are kept and renormalized to sum to 1, and the auxiliary loss is the
    Switch-Transformer load-balance loss `K * sum_i f_i * P_i` (1 when
    balanced), which keeps the router from collapsing onto a few experts.
    The softmax and both outputs are float32 under any dtype policy.

    Args:
        num_experts: K.
        hidden_dim: width of the router's hidden layer.
        top_k: 0 for a dense mixture, else the number of experts kept per example.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        x: `(batch, features)`, the fused representation I = [I_t, I_a, I_v].
        training: unused; accepted for a uniform call signature.

    Returns:
        `(gates, aux_loss)`: float32 `(batch, num_experts)` rows summing to 1
        and a float32 scalar.

    Example:
    >>> router = Router(num_experts=4, hidden_dim=16, top_k=2)
    >>> gates, aux_loss = router(np.random.rand(3, 24))
    >>> (gates.numpy() > 0).sum(axis=1).tolist()
    [2, 2, 2]

    References:
        MIDG paper §3.3; Fedus et al., "Switch Transformers", JMLR 2022 (Eq. 4).
    """

    def __init__(self, num_experts, hidden_dim, top_k=0, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= top_k <= num_experts:
            raise ValueError(
                f"Router: top_k must be in [0, num_experts={num_experts}], got {top_k}."
            )
        self.num_experts = num_experts
        self.hidden_dim = hidden_dim
        self.top_k = top_k

    def build(self, x_shape):
        self.hidden_dense = keras.layers.Dense(
            self.hidden_dim,
            activation="relu",
            dtype=self.dtype_policy,
            name="hidden_dense",
        )
        self.hidden_dense.build(x_shape)
        self.logits_dense = keras.layers.Dense(
            self.num_experts, dtype=self.dtype_policy, name="logits_dense"
        )
        self.logits_dense.build(tuple(x_shape[:-1]) + (self.hidden_dim,))

    def call(self, x, training=None):
        logits = self.logits_dense(self.hidden_dense(x))
        probs = ops.softmax(ops.cast(logits, "float32"), axis=-1)
        if self.top_k == 0:
            return probs, ops.zeros((), dtype="float32")
        _, top_indices = ops.top_k(probs, k=self.top_k)
        selected = ops.sum(ops.one_hot(top_indices, self.num_experts, dtype="float32"), axis=1)
        kept = probs * selected
        gates = kept / ops.sum(kept, axis=-1, keepdims=True)
        return gates, losses.load_balance_loss(probs, selected)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_experts": self.num_experts,
                "hidden_dim": self.hidden_dim,
                "top_k": self.top_k,
            }
        )
        return config
