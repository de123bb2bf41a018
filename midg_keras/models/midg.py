"""The MIDG model (paper Fig. 1, docs/design.md §4) and its training step (docs/design.md §8)."""

import keras
from keras import ops

from midg_keras import layers as midg_layers
from midg_keras import losses as midg_losses
from midg_keras.models.base import SentimentModel

REVERSAL_REACHES = ("experts", "encoders")


@keras.saving.register_keras_serializable(package="midg")
class MIDG(SentimentModel):
    """Mixture of Invariant Experts with knowledge injection for domain generalization.

    Each modality is encoded (`ModalityEncoder`) and split token-wise into an in-domain
    stream A_im and a simulated out-of-domain stream A_om (`InformationDecoupling`,
    Eqs. 1-3). The in-domain pipeline pools A_im, mixes it with the experts of
    `MixtureOfInvariantExperts` and predicts ŷ1; a `DomainDiscriminator` behind a
    `GradientReversal` layer tells the experts' output on A_im from their output on A_om
    (Eq. 4), which drives the experts towards domain-invariant features. The
    out-of-domain pipeline injects the other modalities into each A_om with a `CMAdapter`
    (Eq. 5), fuses and predicts ŷ2 (Eq. 6). L = α·L_in + β·L_out + γ·L_DIS (Eq. 7 plus the
    decoupling loss and the router's load-balance loss). Predictions come from ŷ2
    (`inference_path="out"`, paper §4.3), ŷ1 (`"in"`) or their α/β blend (`"blend"`).

    Args:
        input_dims: modality key (`text`, `audio`, `vision`) -> feature dim; its keys are
            the modalities the model uses.
        strides: modality key -> projection stride of its encoder.
        hidden_dim: width d of every representation.
        encoder_layers: Transformer blocks per modality encoder.
        num_heads: attention heads.
        dropout: dropout rate.
        num_experts: experts K of the MoIE.
        router_top_k: 0 for a dense mixture, k > 0 for top-k routing.
        router_aux_weight: weight of the router's load-balance loss.
        decouple: `kl_recon`, `club` or `kl_recon_club` (docs/design.md §4.2).
        club_weight: weight of the CLUB bound inside L_DIS.
        use_moie: False replaces the MoIE by a concat + MLP fusion (Table 2).
        use_cm_adapter: False replaces the CM-Adapter by pooled concat + MLP (Table 2).
        use_decoupling: False sets A_im = A_om = A_m.
        alpha, beta, gamma: weights of L_in, L_out and L_DIS.
        adv_weight: weight of the domain cross-entropy inside L_in.
        reversal_reach: which weights the discriminator's reversed gradient trains.
            `experts` (default): only the MoIE (router and experts; the concat fusion
            when `use_moie=False`), the adversary of paper §3.3 ("experts receive
            reversed gradients"); the streams enter the adversarial branch through a
            stop-gradient. `encoders`: the reversed gradient also flows into the
            decoupling and modality encoders (DANN's whole feature extractor). That
            lets the adversary rewrite the two streams that the decoupling is meant to
            keep distinct: on the synthetic demo it inflated the stream means
            (KL 1 -> 4-5 nats/dim) and drove the domain BCE to 60 with logits of ±200.
        reg_loss: `mse` or `l1`.
        inference_path: `out`, `in` or `blend`.
        num_domains: 2 for the in/out stream discriminator; the number of source datasets
            when the discriminator predicts the source (`domain_labels="source"`).

    Example:
    ```python
    model = MIDG(input_dims={"text": 32, "audio": 8}, strides={"text": 1, "audio": 2})
    outputs = model(model.dummy_inputs())
    outputs["prediction"].shape  # (2,)
    ```

    References:
        MIDG paper, Eqs. 1-7 and Fig. 1; docs/design.md §4.
    """

    LOSS_TERMS = (
        "in_loss",
        "out_loss",
        "domain_loss",
        "decoupling_loss",
        "router_loss",
        "prediction_loss",
    )

    HYPERPARAMETERS = SentimentModel.HYPERPARAMETERS + (
        "num_experts",
        "router_top_k",
        "router_aux_weight",
        "decouple",
        "club_weight",
        "use_moie",
        "use_cm_adapter",
        "use_decoupling",
        "alpha",
        "beta",
        "gamma",
        "adv_weight",
        "inference_path",
        "reversal_reach",
    )

    def __init__(
        self,
        input_dims,
        strides,
        hidden_dim=128,
        encoder_layers=1,
        num_heads=4,
        dropout=0.1,
        num_experts=4,
        router_top_k=0,
        router_aux_weight=0.01,
        decouple="kl_recon_club",
        club_weight=1.0,
        use_moie=True,
        use_cm_adapter=True,
        use_decoupling=True,
        alpha=1.0,
        beta=1.0,
        gamma=0.1,
        adv_weight=0.1,
        reg_loss="mse",
        inference_path="out",
        num_domains=2,
        reversal_reach="experts",
        **kwargs,
    ):
        super().__init__(
            input_dims=input_dims,
            strides=strides,
            hidden_dim=hidden_dim,
            encoder_layers=encoder_layers,
            num_heads=num_heads,
            dropout=dropout,
            reg_loss=reg_loss,
            **kwargs,
        )
        self.num_experts = num_experts
        self.router_top_k = router_top_k
        self.router_aux_weight = router_aux_weight
        self.decouple = decouple
        self.club_weight = club_weight
        self.use_moie = use_moie
        self.use_cm_adapter = use_cm_adapter
        self.use_decoupling = use_decoupling
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
        self.adv_weight = adv_weight
        self.inference_path = inference_path
        self.num_domains = num_domains
        if reversal_reach not in REVERSAL_REACHES:
            raise ValueError(
                f"MIDG: reversal_reach must be one of {REVERSAL_REACHES}, got {reversal_reach!r}."
            )
        self.reversal_reach = reversal_reach

        if use_decoupling:
            self.decouplers = {
                key: midg_layers.InformationDecoupling(
                    hidden_dim, decouple=decouple, club_weight=club_weight, name=f"decouple_{key}"
                )
                for key in self.modalities
            }
        if use_moie:
            self.moie = midg_layers.MixtureOfInvariantExperts(
                num_experts=num_experts,
                hidden_dim=hidden_dim,
                top_k=router_top_k,
                dropout=dropout,
                name="moie",
            )
        else:
            self.fusion = self.mlp(hidden_dim, name="concat_fusion")
        self.in_head = self.mlp(1, name="in_domain_head")
        self.gradient_reversal = midg_layers.GradientReversal(name="gradient_reversal")
        self.discriminator = midg_layers.DomainDiscriminator(
            hidden_dim, num_domains=num_domains, dropout=dropout, name="discriminator"
        )
        # Cross-modal injection needs other modalities to attend to.
        self.injects = use_cm_adapter and len(self.modalities) > 1
        if self.injects:
            self.adapters = {
                key: midg_layers.CMAdapter(
                    hidden_dim, num_heads=num_heads, dropout=dropout, name=f"cm_adapter_{key}"
                )
                for key in self.modalities
            }
        self.out_fusion = keras.layers.Dense(hidden_dim, name="out_fusion")
        self.out_head = self.mlp(1, name="out_of_domain_head")

    def call(self, inputs, training=None):
        encoded = self.encode(inputs, training=training)
        in_domain, out_of_domain, masks = {}, {}, {}
        decoupling_loss = ops.zeros((), "float32")
        for key, (sequence, mask) in encoded.items():
            masks[key] = mask
            if self.use_decoupling:
                streams = self.decouplers[key](sequence, mask=mask, training=training)
                in_domain[key] = streams["in_domain"]
                out_of_domain[key] = streams["out_of_domain"]
                decoupling_loss = decoupling_loss + ops.cast(streams["loss"], "float32")
            else:
                in_domain[key] = out_of_domain[key] = sequence

        # In-domain pipeline: pooled A_im -> MoIE -> ŷ1; discriminator on both streams.
        pooled_in = self.pool_concat(in_domain, masks)
        pooled_out = self.pool_concat(out_of_domain, masks)
        invariant_in, router_loss = self.fuse_in_domain(pooled_in, training)
        if self.reversal_reach == "experts":
            # The adversarial branch sees the streams as constants, so the reversed
            # gradient trains the experts only; ŷ1's regression still reaches the encoders.
            adversary_in, _ = self.fuse_in_domain(ops.stop_gradient(pooled_in), training)
            pooled_out = ops.stop_gradient(pooled_out)
        else:
            adversary_in = invariant_in
        adversary_out, router_loss_out = self.fuse_in_domain(pooled_out, training)
        router_loss = router_loss + router_loss_out
        y_in = ops.squeeze(ops.cast(self.in_head(invariant_in, training=training), "float32"), -1)
        domain_logits_in = self.discriminator(
            self.gradient_reversal(adversary_in), training=training
        )
        domain_logits_out = self.discriminator(
            self.gradient_reversal(adversary_out), training=training
        )

        # Out-of-domain pipeline: A_om -> CM-Adapter per modality -> fusion -> ŷ2.
        pooled = []
        for key in self.modalities:
            sequence = out_of_domain[key]
            if self.injects:
                others = [k for k in self.modalities if k != key]
                context = ops.concatenate([out_of_domain[k] for k in others], axis=1)
                context_mask = ops.concatenate([masks[k] for k in others], axis=1)
                sequence = self.adapters[key](
                    sequence, context, masks[key], context_mask, training=training
                )
            pooled.append(self.pooling(sequence, mask=masks[key]))
        fused = self.out_fusion(ops.concatenate(pooled, axis=-1))
        y_out = ops.squeeze(ops.cast(self.out_head(fused, training=training), "float32"), -1)

        batch = ops.shape(y_out)[0]
        blend = (self.alpha * y_in + self.beta * y_out) / (self.alpha + self.beta)
        prediction = {"out": y_out, "in": y_in, "blend": blend}[self.inference_path]
        return {
            "prediction": prediction,
            "y_in": y_in,
            "y_out": y_out,
            "y_blend": blend,
            "domain_logits_in": ops.cast(domain_logits_in, "float32"),
            "domain_logits_out": ops.cast(domain_logits_out, "float32"),
            # Batch-level terms broadcast over the batch so every output is per-sample
            # (`predict` concatenates outputs across batches).
            "decoupling_loss": ops.broadcast_to(decoupling_loss, (batch,)),
            "router_loss": ops.broadcast_to(router_loss, (batch,)),
        }

    def fuse_in_domain(self, pooled, training):
        """MoIE (or the concat-fusion ablation) on pooled streams: (h, router aux loss)."""
        if self.use_moie:
            mixed = self.moie(pooled, training=training)
            return mixed["output"], ops.cast(mixed["aux_loss"], "float32")
        return self.fusion(pooled, training=training), ops.zeros((), "float32")

    def loss_terms(self, inputs, y, y_pred):
        """L = α·L_in + β·L_out + γ·L_DIS + router aux (Eqs. 4, 6, 7; docs/design.md §5)."""
        y = ops.cast(y, "float32")
        regression_in = midg_losses.regression_loss(y, y_pred["y_in"], kind=self.reg_loss)
        regression_out = midg_losses.regression_loss(y, y_pred["y_out"], kind=self.reg_loss)
        if self.num_domains == 2:
            zeros = ops.zeros_like(y_pred["y_in"])
            domain_loss = 0.5 * (
                midg_losses.domain_bce_with_logits(zeros, y_pred["domain_logits_in"])
                + midg_losses.domain_bce_with_logits(zeros + 1.0, y_pred["domain_logits_out"])
            )
        else:
            domain_loss = midg_losses.domain_bce_with_logits(
                inputs["source_index"], y_pred["domain_logits_in"]
            )
        loss_in = regression_in + self.adv_weight * domain_loss
        decoupling = ops.mean(y_pred["decoupling_loss"])
        router = ops.mean(y_pred["router_loss"])
        total = (
            self.alpha * loss_in
            + self.beta * regression_out
            + self.gamma * decoupling
            + self.router_aux_weight * router
        )
        return {
            "loss": total,
            "in_loss": loss_in,
            "out_loss": regression_out,
            "domain_loss": domain_loss,
            "decoupling_loss": decoupling,
            "router_loss": router,
            "prediction_loss": midg_losses.regression_loss(
                y, y_pred["prediction"], kind=self.reg_loss
            ),
        }

    def get_config(self):
        return {**super().get_config(), "num_domains": self.num_domains}
