"""Information-entropy decoupling of A_m into A_im and A_om (paper Eqs. 1-3)."""

import keras
from keras import ops

from midg_keras import losses
from midg_keras.layers.club_estimator import ClubEstimator
from midg_keras.layers.gaussian_encoder import GaussianEncoder

DECOUPLE_MODES = ("kl_recon_club", "kl_recon", "club", "cross_kl_recon_club", "cross_kl_recon")


@keras.saving.register_keras_serializable(package="midg")
class InformationDecoupling(keras.layers.Layer):
    """Splits a modality sequence into in-domain and out-of-domain parts.

    Token-wise, two Gaussian encoders give q(A_im | A_m) and q(A_om | A_m).
    The decoupling loss L_DIS (docs/design.md §4.2, the variational reading of paper
    Eq. 2) is the sum of the terms selected by `decouple`:
    - "kl" terms: KL(q_im || N(0, I)) + KL(q_om || N(0, I)); with "cross_kl" the
      cross-stream priors of Eq. 2 as printed, KL(q_im || q_om) + KL(q_om || q_im), each
      prior held constant (`stop_gradient`) so a stream is pulled, not its prior;
    - "recon": the negative Gaussian log-likelihood of A_m given
      `[A_im; A_om]` (Eq. 3) = MSE of a Dense decoder's reconstruction; the
      target A_m is held fixed (`stop_gradient`) so the modality encoder
      cannot lower it by shrinking A_m;
    - "club": `club_weight` x CLUB(A_im; A_om), the MI upper bound the
      encoders minimize, plus the CLUB net's own negative log-likelihood
      (its training objective; gradients of the two never mix).
    All terms are float32 means over real tokens and feature dimensions.

    Args:
        hidden_dim: width d of A_im and A_om (and of the CLUB net's hidden layer).
        decouple: "kl_recon_club" (default), "kl_recon", "club", "cross_kl_recon_club"
            or "cross_kl_recon".
        club_weight: weight of the CLUB bound inside L_DIS.
        seed: optional int seed of the two encoders' sampling noise.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        sequence: A_m, `(batch, time, features)`.
        mask: optional boolean `(batch, time)`.
        training: sample the encoders when True, use their means otherwise.

    Returns:
        dict: `in_domain` and `out_of_domain` `(batch, time, hidden_dim)`
        (zero at padded tokens); float32 scalars `loss` (L_DIS), `kl`,
        `reconstruction`, `club` (the bound, unweighted); terms that
        `decouple` leaves out are 0.

    Example:
    >>> decoupling = InformationDecoupling(hidden_dim=8)
    >>> outputs = decoupling(np.random.rand(2, 5, 16), mask=np.arange(5) < np.array([[5], [3]]))
    >>> outputs["in_domain"].shape, outputs["loss"].shape
    ((2, 5, 8), ())

    References:
        MIDG paper §3.2, Eqs. 1-3; Cheng et al., ICML 2020 (CLUB).
    """

    def __init__(
        self,
        hidden_dim,
        decouple="kl_recon_club",
        club_weight=1.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if decouple not in DECOUPLE_MODES:
            raise ValueError(
                f"InformationDecoupling: decouple must be one of {DECOUPLE_MODES}, "
                f"got {decouple!r}."
            )
        self.hidden_dim = hidden_dim
        self.decouple = decouple
        self.club_weight = club_weight
        self.seed = seed
        self.supports_masking = True

    @property
    def _uses_kl_recon(self):
        return "kl_recon" in self.decouple

    @property
    def _uses_club(self):
        return self.decouple.endswith("club")

    def build(self, sequence_shape):
        self.in_domain_encoder = GaussianEncoder(
            self.hidden_dim,
            seed=self.seed,
            dtype=self.dtype_policy,
            name="in_domain_encoder",
        )
        self.in_domain_encoder.build(sequence_shape)
        self.out_of_domain_encoder = GaussianEncoder(
            self.hidden_dim,
            seed=None if self.seed is None else self.seed + 1,
            dtype=self.dtype_policy,
            name="out_of_domain_encoder",
        )
        self.out_of_domain_encoder.build(sequence_shape)
        latent_shape = tuple(sequence_shape[:-1]) + (self.hidden_dim,)
        if self._uses_kl_recon:
            self.decoder = keras.layers.Dense(
                sequence_shape[-1], dtype=self.dtype_policy, name="decoder"
            )
            self.decoder.build(tuple(sequence_shape[:-1]) + (2 * self.hidden_dim,))
        if self._uses_club:
            self.club = ClubEstimator(self.hidden_dim, dtype=self.dtype_policy, name="club")
            self.club.build(latent_shape, latent_shape)

    def call(self, sequence, mask=None, training=None):
        in_domain, in_mean, in_log_var = self.in_domain_encoder(sequence, training=training)
        out_domain, out_mean, out_log_var = self.out_of_domain_encoder(sequence, training=training)
        zero = ops.zeros((), dtype="float32")
        kl = reconstruction = club = club_log_likelihood = zero
        if self._uses_kl_recon:
            if self.decouple.startswith("cross_kl"):
                fixed = ops.stop_gradient
                kl = losses.gaussian_kl(
                    in_mean, in_log_var, fixed(out_mean), fixed(out_log_var), mask
                ) + losses.gaussian_kl(
                    out_mean, out_log_var, fixed(in_mean), fixed(in_log_var), mask
                )
            else:
                kl = losses.gaussian_kl_standard_normal(
                    in_mean, in_log_var, mask
                ) + losses.gaussian_kl_standard_normal(out_mean, out_log_var, mask)
            reconstructed = self.decoder(ops.concatenate([in_domain, out_domain], axis=-1))
            reconstruction = losses.masked_mse(ops.stop_gradient(sequence), reconstructed, mask)
        if self._uses_club:
            club = self.club.mi_upper_bound(in_domain, out_domain, mask)
            club_log_likelihood = self.club.log_likelihood(in_domain, out_domain, mask)
        loss = kl + reconstruction + self.club_weight * club - club_log_likelihood

        if mask is not None:
            keep = ops.cast(mask, in_domain.dtype)[..., None]
            in_domain, out_domain = in_domain * keep, out_domain * keep
        return {
            "in_domain": in_domain,
            "out_of_domain": out_domain,
            "loss": loss,
            "kl": kl,
            "reconstruction": reconstruction,
            "club": club,
        }

    def compute_mask(self, sequence, mask=None):
        return None

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "decouple": self.decouple,
                "club_weight": self.club_weight,
                "seed": self.seed,
            }
        )
        return config
