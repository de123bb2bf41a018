"""CLUB: contrastive log-ratio upper bound of mutual information."""

import keras
from keras import ops

from midg_keras import losses


@keras.saving.register_keras_serializable(package="midg")
class ClubEstimator(keras.layers.Layer):
    """Variational net q(y | x) = N(mu(x), exp(log_var(x))) and the CLUB bound.

    The bound (Cheng et al. 2020, Eq. 6) is
    `E_i[log q(y_i|x_i)] - E_i E_j[log q(y_j|x_i)]`: positive pairs minus all
    negative pairs of the batch. Tokens are the samples: every real token of
    every sequence in the batch is one pair `(x_i, y_i)`. The mean over all
    `N^2` negative pairs is computed in closed form,
    `E_j[(y_j - mu_i)^2] = Var(y) + (mean(y) - mu_i)^2`, so it costs O(N) and
    has no shuffling noise.

    Two objectives with disjoint gradients:
    - `log_likelihood(x, y)`: what the estimator maximizes; `x` and `y` are
      wrapped in `stop_gradient`, so only the estimator's weights learn.
    - `mi_upper_bound(x, y)`: what the encoders minimize; the estimator's
      weights are wrapped in `stop_gradient`, so only `x` and `y` (and the
      encoders that produced them) learn.

    Both are averaged over real tokens and over dimensions of `y`, and the
    log-likelihood omits the `log(2*pi)/2` constant. The net's weights are
    float32 and not autocast: the bound is a small difference of large terms.

    Args:
        hidden_dim: width of the hidden layer of the mean and log-variance nets.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        x: `(batch, time, x_dim)` (or `(batch, x_dim)`).
        y: `(batch, time, y_dim)` (or `(batch, y_dim)`).
        mask: optional boolean `(batch, time)`, True at real tokens.

    Returns:
        dict with float32 scalars `mi_upper_bound` and `log_likelihood`.

    Example:
    >>> club = ClubEstimator(hidden_dim=16)
    >>> terms = club(np.random.rand(2, 5, 8), np.random.rand(2, 5, 8))
    >>> sorted(terms)
    ['log_likelihood', 'mi_upper_bound']

    References:
        Cheng et al., "CLUB: A Contrastive Log-ratio Upper Bound of Mutual
        Information", ICML 2020; MIDG paper Eqs. 1-2 (docs/design.md §4.2).
    """

    def __init__(self, hidden_dim, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.supports_masking = True

    def _dense_weights(self, name, input_dim, output_dim):
        kernel = self.add_weight(
            name=f"{name}_kernel",
            shape=(input_dim, output_dim),
            initializer="glorot_uniform",
            dtype="float32",
            autocast=False,
        )
        bias = self.add_weight(
            name=f"{name}_bias",
            shape=(output_dim,),
            initializer="zeros",
            dtype="float32",
            autocast=False,
        )
        return kernel, bias

    def build(self, x_shape, y_shape):
        x_dim, y_dim = x_shape[-1], y_shape[-1]
        self.mean_hidden = self._dense_weights("mean_hidden", x_dim, self.hidden_dim)
        self.mean_output = self._dense_weights("mean_output", self.hidden_dim, y_dim)
        self.log_var_hidden = self._dense_weights("log_var_hidden", x_dim, self.hidden_dim)
        self.log_var_output = self._dense_weights("log_var_output", self.hidden_dim, y_dim)

    def _variational_parameters(self, x, freeze_weights):
        """mu(x), log_var(x) in float32, optionally with stopped weights."""

        def dense(inputs, weights):
            kernel, bias = (ops.convert_to_tensor(w) for w in weights)
            if freeze_weights:
                kernel, bias = ops.stop_gradient(kernel), ops.stop_gradient(bias)
            return ops.matmul(inputs, kernel) + bias

        x = ops.cast(x, "float32")
        mean = dense(ops.relu(dense(x, self.mean_hidden)), self.mean_output)
        log_var = ops.tanh(dense(ops.relu(dense(x, self.log_var_hidden)), self.log_var_output))
        return mean, log_var

    def log_likelihood(self, x, y, mask=None):
        """Mean log q(y|x) over real tokens: the estimator's training objective."""
        x = ops.stop_gradient(ops.convert_to_tensor(x))
        y = ops.stop_gradient(ops.convert_to_tensor(y))
        mean, log_var = self._variational_parameters(x, freeze_weights=False)
        return losses.gaussian_log_likelihood(y, mean, log_var, mask)

    def mi_upper_bound(self, x, y, mask=None):
        """CLUB estimate of I(x; y) over real tokens: minimized by the encoders."""
        mean, log_var = self._variational_parameters(x, freeze_weights=True)
        y = ops.cast(y, "float32")
        y_dim = y.shape[-1]
        flat_y = ops.reshape(y, (-1, y_dim))
        if mask is None:
            weights = ops.ones_like(flat_y[:, :1])
        else:
            weights = ops.reshape(ops.cast(mask, "float32"), (-1, 1))
        count = ops.maximum(ops.sum(weights), 1.0)
        y_mean = ops.sum(flat_y * weights, axis=0) / count
        y_var = ops.sum(ops.square(flat_y - y_mean) * weights, axis=0) / count

        inverse_var = ops.exp(-log_var)
        positive = -0.5 * ops.square(y - mean) * inverse_var
        negative = -0.5 * (y_var + ops.square(y_mean - mean)) * inverse_var
        return losses.masked_mean(positive - negative, mask)

    def call(self, x, y, mask=None):
        return {
            "mi_upper_bound": self.mi_upper_bound(x, y, mask),
            "log_likelihood": self.log_likelihood(x, y, mask),
        }

    def compute_mask(self, x, mask=None):
        return None

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_dim": self.hidden_dim})
        return config
