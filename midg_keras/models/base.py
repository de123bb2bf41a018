"""What MIDG and its ERM baseline share: modality encoders, the loss plumbing, training.

Subclasses implement `call(inputs) -> dict` (every output per-sample, `prediction` on the
common label scale) and `loss_terms(inputs, y, y_pred) -> dict` (scalars, `loss` the
total). One training path serves every backend: Keras' own `train_step` and `test_step`
call `compute_loss`, which tracks each term and returns the total (docs/design.md §8).
Build a model with `build_weights()` before compiling it.
"""

import keras
from keras import ops

from midg_keras import layers as midg_layers
from midg_keras import losses as midg_losses
from midg_keras.constants import MODALITY_KEYS, POOLINGS, PREDICTION_HEADS


class SentimentModel(keras.Model):
    """Base of the sentiment models: encoders per modality plus the training plumbing.

    Subclasses name the scalar terms `loss_terms` returns besides the total in
    `LOSS_TERMS`, and extend `HYPERPARAMETERS`: the constructor arguments named like a
    model flag of `Config` (the trainer passes those flags, `get_config` saves them).
    `prediction_loss` (the regression loss of the served prediction) is
    the model-selection criterion shared by every model.

    Args:
        input_dims: modality key -> feature dim; its keys are the modalities used.
        strides: modality key -> projection stride of its encoder.
        hidden_dim: width of every representation.
        encoder_layers: Transformer blocks per encoder.
        num_heads: attention heads.
        dropout: dropout rate.
        input_dropout: in training, dropout on every modality's raw features before its
            encoder; 0 = off.
        pooling: how a modality's sequence becomes one vector: `mean` over its real steps,
            or `attention` (`MaskedAttentionPooling`, learned weights per modality and
            stream).
        token_dropout: in training, each text token is dropped (masked out) with this
            probability before the text encoder, a clip keeping at least one; 0 = off.
        reg_loss: `mse` or `l1`: the training loss of a regression head, and for every head
            the selection loss (`prediction_loss`).
        prediction_head: `regression` (one number per score head) or `distribution`
            (logits over `head_bins` bins of the common label scale, trained with
            `label_distribution_loss` and read out by `LabelDistributionReadout`).
        head_bins: bins of a distribution head.
        label_sigma: spread of a distribution head's Gaussian target (common scale).
        shift_crop, shift_frame_drop, shift_channel_drop, shift_stats: strengths of the
            simulated out-of-domain inputs (`SimulatedShift`), drawn in training only.
        simulate_shift: whether training also feeds the simulated out-of-domain inputs
            (MIDG always; the ERM baseline as `erm_shift`, the fair "same perturbation"
            baseline).
    """

    HYPERPARAMETERS = (
        "hidden_dim",
        "encoder_layers",
        "num_heads",
        "dropout",
        "input_dropout",
        "token_dropout",
        "pooling",
        "reg_loss",
        "prediction_head",
        "head_bins",
        "label_sigma",
        "shift_crop",
        "shift_frame_drop",
        "shift_channel_drop",
        "shift_stats",
    )

    def __init__(
        self,
        input_dims,
        strides,
        hidden_dim=128,
        encoder_layers=1,
        num_heads=4,
        dropout=0.1,
        input_dropout=0.0,
        token_dropout=0.0,
        pooling="mean",
        reg_loss="mse",
        prediction_head="regression",
        head_bins=61,
        label_sigma=0.083,
        shift_crop=0.5,
        shift_frame_drop=0.2,
        shift_channel_drop=0.2,
        shift_stats=1.0,
        simulate_shift=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.input_dims = {k: int(v) for k, v in input_dims.items()}
        self.strides = {k: int(v) for k, v in strides.items()}
        self.modalities = [key for key in MODALITY_KEYS if key in self.input_dims]
        self.hidden_dim = hidden_dim
        self.encoder_layers = encoder_layers
        self.num_heads = num_heads
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.token_dropout = token_dropout
        self.pooling = _checked_choice("pooling", pooling, POOLINGS)
        if input_dropout:
            self.feature_dropout = keras.layers.Dropout(input_dropout, name="input_dropout")
        self.reg_loss = reg_loss
        self.prediction_head = _checked_choice("prediction_head", prediction_head, PREDICTION_HEADS)
        self.head_bins = head_bins
        self.label_sigma = label_sigma
        if prediction_head == "distribution":
            self.distribution_readout = midg_layers.LabelDistributionReadout(
                head_bins, name="label_distribution_readout"
            )
        self.shift_crop = shift_crop
        self.shift_frame_drop = shift_frame_drop
        self.shift_channel_drop = shift_channel_drop
        self.shift_stats = shift_stats
        self.simulate_shift = simulate_shift
        if simulate_shift:
            self.shifts = {
                key: midg_layers.SimulatedShift(
                    crop=shift_crop,
                    frame_drop=shift_frame_drop,
                    channel_drop=shift_channel_drop,
                    stats=shift_stats,
                    name=f"simulated_shift_{key}",
                )
                for key in self.modalities
            }
        if token_dropout:
            # Word dropout is SimulatedShift's frame drop applied to the text alone.
            self.text_token_dropout = midg_layers.SimulatedShift(
                frame_drop=token_dropout, name="text_token_dropout"
            )
        self.encoders = {
            key: midg_layers.ModalityEncoder(
                hidden_dim,
                num_layers=encoder_layers,
                num_heads=num_heads,
                stride=self.strides[key],
                dropout=dropout,
                name=f"encoder_{key}",
            )
            for key in self.modalities
        }
        # Only the pooling in use is created: Keras warns that a model whose sublayer
        # stays unbuilt after its first call "has unbuilt state".
        if pooling == "mean":
            self.mean_pooling = midg_layers.MaskedMeanPooling(name="masked_mean_pooling")
        else:
            self.attention_poolings = {
                f"{stream}_{key}": midg_layers.MaskedAttentionPooling(
                    name=f"attention_pooling_{stream}_{key}"
                )
                for stream in self.POOLED_STREAMS
                for key in self.modalities
            }
        # One Mean tracker per loss term, reported by fit as `<term>` and `val_<term>`.
        self.term_trackers = {name: keras.metrics.Mean(name=name) for name in self.LOSS_TERMS}

    def mlp(self, units, name, float32_output=False):
        """Dense -> ReLU -> Dropout -> Dense (in float32 for a score head)."""
        return keras.Sequential(
            [
                keras.layers.Dense(self.hidden_dim, activation="relu"),
                keras.layers.Dropout(self.dropout),
                keras.layers.Dense(units, dtype="float32" if float32_output else None),
            ],
            name=name,
        )

    def score_head(self, name):
        """An MLP to a score: 1 output, or `head_bins` logits for a distribution head."""
        units = self.head_bins if self.prediction_head == "distribution" else 1
        return self.mlp(units, name=name, float32_output=True)

    def read_score(self, head_output):
        """`(scores (B,), logits (B, bins) or None)` of a score head's output."""
        head_output = ops.cast(head_output, "float32")
        if self.prediction_head == "distribution":
            return self.distribution_readout(head_output), head_output
        return ops.squeeze(head_output, -1), None

    def score_loss(self, y, y_pred, key):
        """Training loss of the score `y_pred[key]` (its logits: `y_pred[key + "_logits"]`).

        A regression head is trained on the score itself with `reg_loss`; a distribution
        head on its logits, towards the label's Gaussian soft target.
        """
        if self.prediction_head == "distribution":
            return midg_losses.label_distribution_loss(
                y, y_pred[f"{key}_logits"], self.distribution_readout.centers(), self.label_sigma
            )
        return midg_losses.regression_loss(y, y_pred[key], kind=self.reg_loss)

    def selection_loss(self, y, y_pred):
        """`prediction_loss`: `reg_loss` of the served score, whatever the head trains on."""
        return midg_losses.regression_loss(y, y_pred["prediction"], kind=self.reg_loss)

    @staticmethod
    def with_logits(outputs, key, logits, rows=slice(None)):
        """Adds `key + "_logits"` to `outputs` for a distribution head (`logits` not None)."""
        if logits is not None:
            outputs[f"{key}_logits"] = logits[rows]

    def encode(self, inputs, training=None):
        """modality key -> (sequence (B, T', d), mask (B, T'))."""
        if training and (self.input_dropout or self.token_dropout):
            inputs = dict(inputs)
        if training and self.input_dropout:
            for key in self.modalities:
                inputs[key] = self.feature_dropout(inputs[key], training=True)
        if training and self.token_dropout and "text" in self.input_dims:
            inputs["text"], inputs["text_mask"] = self.text_token_dropout(
                inputs["text"], inputs["text_mask"], training=True
            )
        return {
            key: self.encoders[key](inputs[key], mask=inputs.get(f"{key}_mask"), training=training)
            for key in self.modalities
        }

    def simulated_inputs(self, inputs):
        """`inputs` with every modality replaced by its simulated out-of-domain version."""
        shifted = dict(inputs)
        for key in self.modalities:
            shifted[key], shifted[f"{key}_mask"] = self.shifts[key](
                inputs[key], inputs[f"{key}_mask"], training=True
            )
        return shifted

    def with_simulated_inputs(self, inputs):
        """The batch followed by its simulated out-of-domain version: 2B rows, one pass.

        Every layer up to the pooling works per sample, so one pass over the 2B rows
        computes what a clean and a shifted pass compute, with half the kernel launches
        and matrix products twice as tall (docs/design.md §4.9). The shift is drawn from
        the clean batch alone (its statistics perturbation uses the batch's spread).
        """
        shifted = self.simulated_inputs(inputs)
        return {key: ops.concatenate([inputs[key], shifted[key]], axis=0) for key in shifted}

    def batch_size(self, inputs):
        return ops.shape(inputs[self.modalities[0]])[0]

    def pool(self, sequence, mask, key, stream="in"):
        """One modality's `(B, T', d)` sequence of `stream` pooled to `(B, d)` (`pooling`)."""
        if self.pooling == "attention":
            return self.attention_poolings[f"{stream}_{key}"](sequence, mask=mask)
        return self.mean_pooling(sequence, mask=mask)

    def pool_concat(self, sequences, masks, stream="in"):
        return ops.concatenate(
            [self.pool(sequences[key], masks[key], key, stream) for key in self.modalities],
            axis=-1,
        )

    def dummy_inputs(self, batch_size=2):
        """A small all-valid batch, to build the model before loading weights."""
        inputs = {}
        for key in self.modalities:
            steps = 2 * self.strides[key]
            inputs[key] = ops.ones((batch_size, steps, self.input_dims[key]))
            inputs[f"{key}_mask"] = ops.ones((batch_size, steps), "bool")
        inputs["source_index"] = ops.zeros((batch_size,), "int32")
        return inputs

    def build_weights(self):
        """Creates every weight with one forward pass on `dummy_inputs()`.

        The inputs are a dict of variable-length sequences, so one call is the simplest
        way to build every sublayer; the weights do not depend on the batch. Models with a
        simulated out-of-domain stream run it in training only (MIDG's discriminator), so
        they build in training mode.
        """
        self(self.dummy_inputs(), training=self.simulate_shift)

    def get_build_config(self):
        return {"dummy": True}

    def build_from_config(self, config):
        """Rebuilds a reloaded `.keras` model before its weights are loaded."""
        self.build_weights()

    LOSS_TERMS = ()
    # The representation streams a model pools (each gets its own attention pooling).
    POOLED_STREAMS = ("in",)

    def loss_terms(self, inputs, y, y_pred):
        raise NotImplementedError

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Tracks every loss term; returns the total, scaled for distribution as Keras expects.

        Under a tf.distribute strategy each replica sees its share of the global batch and
        the replicas' gradients are summed, so each replica's loss is divided by their
        number; Keras' `train_step`/`test_step` multiply it back for the reported `loss`.
        The term trackers get the unscaled per-replica values (a Mean over replicas).
        """
        terms = self.loss_terms(x, y, y_pred)
        # Weighted by the batch's rows, like Keras' own `loss`: an epoch's value is then the
        # mean over examples, not over batches (a last, smaller batch would count as a full
        # one and bias `val_prediction_loss`, the selection metric).
        rows = ops.cast(ops.shape(y)[0], "float32")
        for name, value in terms.items():
            if name == "loss":
                continue
            self.term_trackers[name].update_state(value, sample_weight=rows)
        return _scale_for_replicas(terms["loss"])

    def get_config(self):
        config = super().get_config()
        config.update(
            input_dims=self.input_dims, strides=self.strides, simulate_shift=self.simulate_shift
        )
        config.update({name: getattr(self, name) for name in self.HYPERPARAMETERS})
        return config


def _checked_choice(name, value, choices):
    """`value` if it is one of `choices`; otherwise a ValueError naming them."""
    if value not in choices:
        names = " or ".join(f"`{choice}`" for choice in choices)
        raise ValueError(f"{name} must be {names}, got {value!r}.")
    return value


def _scale_for_replicas(loss):
    """`loss` divided by the replicas of the current tf.distribute strategy (TF only)."""
    if keras.backend.backend() != "tensorflow":
        return loss
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / replicas if replicas > 1 else loss


@keras.saving.register_keras_serializable(package="midg")
class LateFusionBaseline(SentimentModel):
    """ERM late fusion on MIDG's encoders: pool, concatenate, MLP; no DG machinery.

    The honest baseline for the domain-generalization tables: same data, encoders,
    optimizer and model selection as MIDG, trained only on the regression loss. With
    `simulate_shift=True` (`--baselines=erm_shift`) it also regresses the label on MIDG's
    simulated out-of-domain inputs, L = (reg(y, ŷ) + reg(y, ŷ_shifted)) / 2: the same
    data perturbation without MIDG's machinery, so a gain from augmentation alone is not
    credited to MIDG.

    Example:
    ```python
    model = LateFusionBaseline(input_dims={"text": 32}, strides={"text": 1})
    model(model.dummy_inputs())["prediction"].shape  # (2,)
    ```
    """

    LOSS_TERMS = ("prediction_loss", "shifted_loss")

    def __init__(self, input_dims, strides, **kwargs):
        super().__init__(input_dims, strides, **kwargs)
        self.head = self.score_head(name="late_fusion_head")

    def call(self, inputs, training=None):
        if not (training and self.simulate_shift):
            scores, logits = self.predict_score(inputs, training)
            outputs = {"prediction": scores}
            self.with_logits(outputs, "prediction", logits)
            return outputs
        clean_rows = self.batch_size(inputs)
        scores, logits = self.predict_score(self.with_simulated_inputs(inputs), training)
        outputs = {"prediction": scores[:clean_rows], "prediction_shifted": scores[clean_rows:]}
        self.with_logits(outputs, "prediction", logits, slice(None, clean_rows))
        self.with_logits(outputs, "prediction_shifted", logits, slice(clean_rows, None))
        return outputs

    def predict_score(self, inputs, training):
        encoded = self.encode(inputs, training=training)
        pooled = self.pool_concat(
            {k: seq for k, (seq, _) in encoded.items()}, {k: m for k, (_, m) in encoded.items()}
        )
        return self.read_score(self.head(pooled, training=training))

    def loss_terms(self, inputs, y, y_pred):
        y = ops.cast(y, "float32")
        loss = self.score_loss(y, y_pred, "prediction")
        terms = {
            "loss": loss,
            "prediction_loss": self.selection_loss(y, y_pred),
            "shifted_loss": ops.zeros((), "float32"),
        }
        if "prediction_shifted" in y_pred:
            shifted = self.score_loss(y, y_pred, "prediction_shifted")
            terms.update(loss=0.5 * (loss + shifted), shifted_loss=shifted)
        return terms
