"""The MIDG model (paper Fig. 1, docs/design.md §4) and its losses (docs/design.md §5)."""

import keras
from keras import ops

from midg_keras import layers as midg_layers
from midg_keras import losses as midg_losses
from midg_keras.constants import CONSISTENCY_MODES
from midg_keras.models.base import SentimentModel


@keras.saving.register_keras_serializable(package="midg")
class MIDG(SentimentModel):
    """Mixture of Invariant Experts with knowledge injection for domain generalization.

    Each modality is encoded (`ModalityEncoder`) and split token-wise into an in-domain
    stream A_im and an out-of-domain stream A_om (`InformationDecoupling`, Eqs. 1-3).
    The in-domain pipeline pools A_im, mixes it with the experts of
    `MixtureOfInvariantExperts` and predicts ŷ1. The out-of-domain pipeline injects the
    other modalities into each A_om with a `CMAdapter` (Eq. 5), fuses them into O and
    predicts ŷ2 (Eq. 6), the served prediction (paper §4.3).

    In training the out-of-domain pipeline also sees *simulated out-of-domain inputs*
    (paper §1, §4.3): `SimulatedShift` draws a random subset / perturbation of each
    sample's raw features (sub-sequences, frame subsets, whole-channel dropout,
    feature-statistics perturbation), which pass through the same encoders, decoupling
    and adapters. ŷ2 regresses the label on both the clean and the shifted input, and the
    invariance signal reaches O, the representation ŷ2 is computed from:

    - a `DomainDiscriminator` behind a `GradientReversal` layer tells O(clean) from
      O(shifted) (Eq. 4); the reversed gradient trains everything upstream of O
      (`adv_weight`);
    - a consistency penalty between ŷ2 on the clean and on the shifted input
      (`consistency_weight`, `consistency`): `pairwise` pulls the two together,
      `to_shifted` pulls the clean prediction towards the (constant) shifted one, so
      features the shift destroys stop paying off, `vrex` penalizes the squared
      difference of the two regression risks (Krueger et al. 2021).

    L = α·L_in + β·L_out + adv_weight·L_domain + consistency_weight·L_cons + γ·L_DIS
    + router aux, with L_in = reg(y, ŷ1), L_out = (reg(y, ŷ2) + reg(y, ŷ2_shifted)) / 2
    (Eq. 7 plus the decoupling, invariance and load-balance terms); with
    `prediction_head="distribution"` reg is the label-distribution loss of each score's
    logits (docs/design.md §4.6). At inference there is
    no shift: predictions come from ŷ2 (`inference_path="out"`), ŷ1 (`"in"`) or their α/β
    blend (`"blend"`).

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
        decouple: the L_DIS terms (`InformationDecoupling`, docs/design.md §4.2).
        club_weight: weight of the CLUB bound inside L_DIS.
        use_moie: False replaces the MoIE by a concat + MLP fusion (Table 2).
        use_cm_adapter: False replaces the CM-Adapter by pooled concat + MLP (Table 2).
        use_decoupling: True splits each A_m into A_im and A_om (Eqs. 1-3); False (the
            default, chosen on the development shift) sets A_im = A_om = A_m.
        alpha, beta, gamma: weights of L_in, L_out and L_DIS.
        adv_weight: weight of the discriminator's cross-entropy (clean vs shifted O).
        consistency_weight: weight of the consistency penalty.
        consistency: `pairwise`, `to_shifted` or `vrex`.
        shift_crop, shift_frame_drop, shift_channel_drop, shift_stats: strengths of the
            simulated shift (`SimulatedShift`).
        reg_loss: `mse` or `l1`.
        inference_path: `out`, `in` or `blend`.
        num_domains: 2 for the clean/shifted discriminator; the number of source datasets
            when the discriminator predicts the source (`domain_labels="source"`).

    Example:
    ```python
    model = MIDG(input_dims={"text": 32, "audio": 8}, strides={"text": 1, "audio": 2})
    outputs = model(model.dummy_inputs())
    outputs["prediction"].shape  # (2,)
    ```

    References:
        MIDG paper §1, §3-4, Eqs. 1-7 and Fig. 1; docs/design.md §4-5.
    """

    POOLED_STREAMS = ("in", "out")  # I_m for the MoIE, O_m after the CM-Adapter
    LOSS_TERMS = (
        "in_loss",
        "out_loss",
        "shifted_loss",
        "domain_loss",
        "domain_acc_clean",
        "domain_acc_shifted",
        "consistency_loss",
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
        "consistency_weight",
        "consistency",
        "inference_path",
    )

    def __init__(
        self,
        input_dims,
        strides,
        num_experts=4,
        router_top_k=0,
        router_aux_weight=0.01,
        decouple="kl_recon_club",
        club_weight=1.0,
        use_moie=True,
        use_cm_adapter=True,
        use_decoupling=False,
        alpha=1.0,
        beta=1.0,
        gamma=0.1,
        adv_weight=0.0,
        consistency_weight=0.0,
        consistency="to_shifted",
        inference_path="out",
        num_domains=2,
        **kwargs,
    ):
        kwargs.pop("simulate_shift", None)  # always on; saved by get_config
        super().__init__(input_dims=input_dims, strides=strides, simulate_shift=True, **kwargs)
        if consistency not in CONSISTENCY_MODES:
            raise ValueError(
                f"MIDG: consistency must be one of {CONSISTENCY_MODES}, got {consistency!r}."
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
        self.consistency_weight = consistency_weight
        self.consistency = consistency
        self.inference_path = inference_path
        self.num_domains = num_domains

        hidden_dim, dropout = self.hidden_dim, self.dropout
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
        self.in_head = self.score_head(name="in_domain_head")
        self.gradient_reversal = midg_layers.GradientReversal(name="gradient_reversal")
        self.discriminator = midg_layers.DomainDiscriminator(
            hidden_dim, num_domains=num_domains, dropout=dropout, name="discriminator"
        )
        # Cross-modal injection needs other modalities to attend to.
        self.injects = use_cm_adapter and len(self.modalities) > 1
        if self.injects:
            self.adapters = {
                key: midg_layers.CMAdapter(
                    hidden_dim, num_heads=self.num_heads, dropout=dropout, name=f"cm_adapter_{key}"
                )
                for key in self.modalities
            }
        self.out_fusion = keras.layers.Dense(hidden_dim, name="out_fusion")
        self.out_head = self.score_head(name="out_of_domain_head")

    def call(self, inputs, training=None):
        # In training the clean rows are followed by their simulated out-of-domain
        # version (`with_simulated_inputs`) and both go through one pass.
        clean_rows = self.batch_size(inputs)
        if training:
            inputs = self.with_simulated_inputs(inputs)
        represented = self.represent(inputs, training=training, clean_rows=clean_rows)
        y_in, y_out = represented["y_in"], represented["y_out"][:clean_rows]
        blend = (self.alpha * y_in + self.beta * y_out) / (self.alpha + self.beta)
        outputs = {
            "prediction": {"out": y_out, "in": y_in, "blend": blend}[self.inference_path],
            "y_in": y_in,
            "y_out": y_out,
            "y_blend": blend,
            # Batch-level terms broadcast over the batch so every output is per-sample
            # (`predict` concatenates outputs across batches).
            "decoupling_loss": ops.broadcast_to(represented["decoupling_loss"], (clean_rows,)),
            "router_loss": ops.broadcast_to(represented["router_loss"], (clean_rows,)),
        }
        self.with_logits(outputs, "y_in", represented["y_in_logits"])
        self.with_logits(outputs, "y_out", represented["y_out_logits"], slice(None, clean_rows))
        if training:
            outputs["y_out_shifted"] = represented["y_out"][clean_rows:]
            self.with_logits(
                outputs, "y_out_shifted", represented["y_out_logits"], slice(clean_rows, None)
            )
            logits = self.discriminator(
                self.gradient_reversal(represented["fused"]), training=training
            )
            logits = ops.cast(logits, "float32")
            outputs["domain_logits_clean"] = logits[:clean_rows]
            outputs["domain_logits_shifted"] = logits[clean_rows:]
        return outputs

    def represent(self, inputs, training, clean_rows):
        """Encoders -> decoupling -> MoIE -> ŷ1 and CM-Adapter -> O -> ŷ2.

        The first `clean_rows` rows are the clean batch; any rows after them are its
        simulated out-of-domain version, which skips the in-domain pipeline (ŷ1) and
        whose decoupling loss is not part of L.
        """
        encoded = self.encode(inputs, training=training)
        in_streams, out_streams, masks = {}, {}, {}
        decoupling_loss = ops.zeros((), "float32")
        for key, (sequence, mask) in encoded.items():
            masks[key] = mask
            if self.use_decoupling:
                streams = self.decouple_rows(key, sequence, mask, clean_rows, training)
                in_streams[key], out_streams[key] = streams["in_domain"], streams["out_of_domain"]
                decoupling_loss = decoupling_loss + ops.cast(streams["loss"], "float32")
            else:
                in_streams[key] = out_streams[key] = sequence
        invariant, router_loss = self.fuse_in_domain(
            self.pool_concat(in_streams, masks)[:clean_rows], training
        )
        y_in, y_in_logits = self.read_score(self.in_head(invariant, training=training))
        represented = {
            "decoupling_loss": decoupling_loss,
            "router_loss": router_loss,
            "y_in": y_in,
            "y_in_logits": y_in_logits,
        }
        pooled = []
        for key in self.modalities:
            sequence = out_streams[key]
            if self.injects:
                others = [k for k in self.modalities if k != key]
                context = ops.concatenate([out_streams[k] for k in others], axis=1)
                context_mask = ops.concatenate([masks[k] for k in others], axis=1)
                sequence = self.adapters[key](
                    sequence, context, masks[key], context_mask, training=training
                )
            pooled.append(self.pool(sequence, masks[key], key, stream="out"))
        fused = self.out_fusion(ops.concatenate(pooled, axis=-1))
        represented["fused"] = fused
        represented["y_out"], represented["y_out_logits"] = self.read_score(
            self.out_head(fused, training=training)
        )
        return represented

    def decouple_rows(self, key, sequence, mask, clean_rows, training):
        """Eqs. 1-3 on the clean rows and, separately, on the simulated rows after them.

        Separate calls keep the decoupling's batch-level terms (its CLUB bound pairs
        samples within the batch) to one stream each; only the clean loss enters L.
        """
        decoupler = self.decouplers[key]
        clean = decoupler(sequence[:clean_rows], mask=mask[:clean_rows], training=training)
        if not training:
            return clean
        shifted = decoupler(sequence[clean_rows:], mask=mask[clean_rows:], training=training)
        return {
            "loss": clean["loss"],
            **{
                stream: ops.concatenate([clean[stream], shifted[stream]], axis=0)
                for stream in ("in_domain", "out_of_domain")
            },
        }

    def fuse_in_domain(self, pooled, training):
        """MoIE (or the concat-fusion ablation) on pooled streams: (h, router aux loss)."""
        if self.use_moie:
            mixed = self.moie(pooled, training=training)
            return mixed["output"], ops.cast(mixed["aux_loss"], "float32")
        return self.fusion(pooled, training=training), ops.zeros((), "float32")

    def loss_terms(self, inputs, y, y_pred):
        """The terms of L (Eqs. 4, 6, 7; docs/design.md §5); shift terms are 0 when evaluating."""
        y = ops.cast(y, "float32")
        in_loss = self.score_loss(y, y_pred, "y_in")
        clean_out_loss = self.score_loss(y, y_pred, "y_out")
        zero = ops.zeros((), "float32")
        shifted_loss = domain_loss = consistency = acc_clean = acc_shifted = zero
        out_loss = clean_out_loss
        if "y_out_shifted" in y_pred:  # training: the simulated out-of-domain stream
            shifted_loss = self.score_loss(y, y_pred, "y_out_shifted")
            out_loss = 0.5 * (clean_out_loss + shifted_loss)
            domain_loss, acc_clean, acc_shifted = self.domain_terms(inputs, y_pred)
            consistency = self.consistency_penalty(y_pred, clean_out_loss, shifted_loss)
        decoupling = ops.mean(y_pred["decoupling_loss"])
        router = ops.mean(y_pred["router_loss"])
        total = (
            self.alpha * in_loss
            + self.beta * out_loss
            + self.adv_weight * domain_loss
            + self.consistency_weight * consistency
            + self.gamma * decoupling
            + self.router_aux_weight * router
        )
        return {
            "loss": total,
            "in_loss": in_loss,
            "out_loss": out_loss,
            "shifted_loss": shifted_loss,
            "domain_loss": domain_loss,
            "domain_acc_clean": acc_clean,
            "domain_acc_shifted": acc_shifted,
            "consistency_loss": consistency,
            "decoupling_loss": decoupling,
            "router_loss": router,
            "prediction_loss": self.selection_loss(y, y_pred),
        }

    def domain_terms(self, inputs, y_pred):
        """Discriminator cross-entropy (Eq. 4) and its accuracy on each stream."""
        logits_clean, logits_shifted = (
            y_pred["domain_logits_clean"],
            y_pred["domain_logits_shifted"],
        )
        if self.num_domains == 2:
            zeros = ops.zeros_like(y_pred["y_out"])
            loss = 0.5 * (
                midg_losses.domain_bce_with_logits(zeros, logits_clean)
                + midg_losses.domain_bce_with_logits(zeros + 1.0, logits_shifted)
            )
            acc_clean = ops.mean(ops.cast(ops.reshape(logits_clean, (-1,)) < 0, "float32"))
            acc_shifted = ops.mean(ops.cast(ops.reshape(logits_shifted, (-1,)) > 0, "float32"))
            return loss, acc_clean, acc_shifted
        # Several sources: both streams must not reveal which source a sample came from.
        source = ops.cast(inputs["source_index"], "int32")
        loss = 0.5 * (
            midg_losses.domain_bce_with_logits(source, logits_clean)
            + midg_losses.domain_bce_with_logits(source, logits_shifted)
        )
        accuracies = [
            ops.mean(ops.cast(ops.argmax(logits, axis=-1) == source, "float32"))
            for logits in (logits_clean, logits_shifted)
        ]
        return loss, *accuracies

    def consistency_penalty(self, y_pred, clean_risk, shifted_risk):
        clean, shifted = y_pred["y_out"], y_pred["y_out_shifted"]
        if self.consistency == "pairwise":
            return ops.mean(ops.square(clean - shifted))
        if self.consistency == "to_shifted":
            return ops.mean(ops.square(clean - ops.stop_gradient(shifted)))
        return ops.square(clean_risk - shifted_risk)

    def get_config(self):
        return {**super().get_config(), "num_domains": self.num_domains}
