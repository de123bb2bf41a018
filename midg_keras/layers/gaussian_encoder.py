"""Diagonal Gaussian posterior q(z | x) with the reparameterization trick."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="midg")
class GaussianEncoder(keras.layers.Layer):
    """Maps features to N(mean, exp(log_var)) and samples from it (paper Eq. 2).

    One of the two decoupling encoders q(A_im | A_m) and q(A_om | A_m), applied
    token-wise. In training `z = mean + exp(log_var / 2) * eps` with
    `eps ~ N(0, I)` (reparameterization, so gradients reach mean and log_var);
    otherwise `z = mean`. `log_var` is clipped to `[-log_var_limit,
    log_var_limit]` so `exp(log_var)` can neither overflow nor vanish, also in
    float16.

    Args:
        latent_dim: width of z.
        log_var_limit: bound on |log_var|.
        seed: optional int seed of the sampling noise.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        x: `(..., features)`.
        training: sample when True, return the mean otherwise.

    Returns:
        `(z, mean, log_var)`, each `(..., latent_dim)`.

    Example:
    >>> encoder = GaussianEncoder(latent_dim=8)
    >>> z, mean, log_var = encoder(np.ones((2, 5, 16)))
    >>> z.shape
    (2, 5, 8)

    References:
        Kingma & Welling, "Auto-Encoding Variational Bayes", 2014; MIDG paper
        §3.2, Eqs. 1-3.
    """

    def __init__(self, latent_dim, log_var_limit=8.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = latent_dim
        self.log_var_limit = log_var_limit
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, x_shape):
        self.mean_dense = keras.layers.Dense(
            self.latent_dim, dtype=self.dtype_policy, name="mean_dense"
        )
        self.mean_dense.build(x_shape)
        self.log_var_dense = keras.layers.Dense(
            self.latent_dim, dtype=self.dtype_policy, name="log_var_dense"
        )
        self.log_var_dense.build(x_shape)

    def call(self, x, training=None):
        mean = self.mean_dense(x)
        log_var = ops.clip(self.log_var_dense(x), -self.log_var_limit, self.log_var_limit)
        if not training:
            return mean, mean, log_var
        noise = keras.random.normal(ops.shape(mean), dtype=mean.dtype, seed=self.seed_generator)
        z = mean + ops.exp(0.5 * log_var) * noise
        return z, mean, log_var

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "latent_dim": self.latent_dim,
                "log_var_limit": self.log_var_limit,
                "seed": self.seed,
            }
        )
        return config
