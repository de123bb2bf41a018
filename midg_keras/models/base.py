"""What MIDG and its ERM baseline share: modality encoders, the loss plumbing, training.

Subclasses implement `call(inputs) -> dict` (every output per-sample, `prediction` on the
common label scale) and `loss_terms(inputs, y, y_pred) -> dict` (scalars, `loss` the
total). One loss code path serves every backend: Keras' own `train_step` calls
`compute_loss` on JAX and PyTorch; on TensorFlow an explicit `train_step` does the same
under a `GradientTape` with the optimizer's loss scaling (docs/design.md §8).
"""

import keras
from keras import ops

from midg_keras import layers as midg_layers
from midg_keras import losses as midg_losses

MODALITY_ORDER = ("text", "audio", "vision")


class SentimentModel(keras.Model):
    """Base of the sentiment models: encoders per modality plus the training plumbing.

    Subclasses name the scalar terms `loss_terms` returns besides the total in
    `LOSS_TERMS`; `prediction_loss` (the regression loss of the served prediction) is
    the model-selection criterion shared by every model.

    Args:
        input_dims: modality key -> feature dim; its keys are the modalities used.
        strides: modality key -> projection stride of its encoder.
        hidden_dim: width of every representation.
        encoder_layers: Transformer blocks per encoder.
        num_heads: attention heads.
        dropout: dropout rate.
        reg_loss: `mse` or `l1`.
    """

    def __init__(
        self,
        input_dims,
        strides,
        hidden_dim=128,
        encoder_layers=1,
        num_heads=4,
        dropout=0.1,
        reg_loss="mse",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.input_dims = {k: int(v) for k, v in input_dims.items()}
        self.strides = {k: int(v) for k, v in strides.items()}
        self.modalities = [key for key in MODALITY_ORDER if key in self.input_dims]
        self.hidden_dim = hidden_dim
        self.encoder_layers = encoder_layers
        self.num_heads = num_heads
        self.dropout = dropout
        self.reg_loss = reg_loss
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
        self.pooling = midg_layers.MaskedMeanPooling(name="masked_mean_pooling")
        # One Mean tracker per loss term, reported by fit as `<term>` and `val_<term>`.
        self.term_trackers = {name: keras.metrics.Mean(name=name) for name in self.LOSS_TERMS}

    def mlp(self, units, name):
        """Dense -> ReLU -> Dropout -> Dense; a 1-unit head outputs float32."""
        return keras.Sequential(
            [
                keras.layers.Dense(self.hidden_dim, activation="relu"),
                keras.layers.Dropout(self.dropout),
                keras.layers.Dense(units, dtype="float32" if units == 1 else None),
            ],
            name=name,
        )

    def encode(self, inputs, training=None):
        """modality key -> (sequence (B, T', d), mask (B, T'))."""
        return {
            key: self.encoders[key](inputs[key], mask=inputs.get(f"{key}_mask"), training=training)
            for key in self.modalities
        }

    def pool_concat(self, sequences, masks):
        return ops.concatenate(
            [self.pooling(sequences[key], mask=masks[key]) for key in self.modalities], axis=-1
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

    def get_build_config(self):
        return {"dummy": True}

    def build_from_config(self, config):
        # Dict inputs of variable length: building by one forward pass is simplest.
        self(self.dummy_inputs(), training=False)

    LOSS_TERMS = ()

    def loss_terms(self, inputs, y, y_pred):
        raise NotImplementedError

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        terms = self.loss_terms(x, y, y_pred)
        for name, value in terms.items():
            if name == "loss":
                continue
            self.term_trackers[name].update_state(value)
        return terms["loss"]

    if keras.backend.backend() == "tensorflow":

        def train_step(self, data):
            import tensorflow as tf

            x, y = data[0], data[1]
            with tf.GradientTape() as tape:
                y_pred = self(x, training=True)
                loss = self.compute_loss(x, y, y_pred, training=True)
                scaled_loss = self.optimizer.scale_loss(loss)
            gradients = tape.gradient(scaled_loss, self.trainable_weights)
            self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
            self._loss_tracker.update_state(loss)
            return self.get_metrics_result()

    def get_config(self):
        config = super().get_config()
        config.update(
            input_dims=self.input_dims,
            strides=self.strides,
            hidden_dim=self.hidden_dim,
            encoder_layers=self.encoder_layers,
            num_heads=self.num_heads,
            dropout=self.dropout,
            reg_loss=self.reg_loss,
        )
        return config


@keras.saving.register_keras_serializable(package="midg")
class LateFusionBaseline(SentimentModel):
    """ERM late fusion on MIDG's encoders: pool, concatenate, MLP; no DG machinery.

    The honest baseline for the domain-generalization tables: same data, encoders,
    optimizer and model selection as MIDG, trained only on the regression loss.

    Example:
    ```python
    model = LateFusionBaseline(input_dims={"text": 32}, strides={"text": 1})
    model(model.dummy_inputs())["prediction"].shape  # (2,)
    ```
    """

    LOSS_TERMS = ("prediction_loss",)

    def __init__(self, input_dims, strides, **kwargs):
        super().__init__(input_dims, strides, **kwargs)
        self.head = self.mlp(1, name="late_fusion_head")

    def call(self, inputs, training=None):
        encoded = self.encode(inputs, training=training)
        pooled = self.pool_concat(
            {k: seq for k, (seq, _) in encoded.items()}, {k: m for k, (_, m) in encoded.items()}
        )
        prediction = ops.squeeze(ops.cast(self.head(pooled, training=training), "float32"), -1)
        return {"prediction": prediction}

    def loss_terms(self, inputs, y, y_pred):
        loss = midg_losses.regression_loss(
            ops.cast(y, "float32"), y_pred["prediction"], kind=self.reg_loss
        )
        return {"loss": loss, "prediction_loss": loss}
