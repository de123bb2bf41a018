"""Callbacks of a MIDG run: the gradient-reversal schedule, validation metrics, NaN stop,
and the weight average used for validation."""

import math

import keras
import numpy as np

from midg_keras import metrics as midg_metrics
from midg_keras.training.prediction import predict


class GradientReversalSchedule(keras.callbacks.Callback):
    """Sets the gradient-reversal strength λ before every training batch.

    `dann`: λ_p = max_lambda · (2 / (1 + exp(-10 p)) - 1) with p the training progress in
    [0, 1] (Ganin & Lempitsky 2015), so the adversary starts weak while the features are
    still noise; `constant`: λ = max_lambda throughout.

    Args:
        gradient_reversal: the model's `GradientReversal` layer.
        steps_per_epoch: training steps per epoch.
        epochs: planned epochs.
        max_lambda: `--grl_max`.
        schedule: `dann` or `constant`.
    """

    def __init__(self, gradient_reversal, steps_per_epoch, epochs, max_lambda=1.0, schedule="dann"):
        super().__init__()
        self.gradient_reversal = gradient_reversal
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.total_steps = self.steps_per_epoch * max(1, int(epochs))
        self.max_lambda = float(max_lambda)
        self.schedule = schedule
        self.epoch = 0

    def strength(self, step):
        if self.schedule == "constant":
            return self.max_lambda
        progress = min(1.0, step / self.total_steps)
        return self.max_lambda * (2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        step = self.epoch * self.steps_per_epoch + batch
        self.gradient_reversal.grl_lambda.assign(self.strength(step))

    def on_epoch_end(self, epoch, logs=None):
        """Records the λ reached this epoch (`grl_lambda` in history.csv and TensorBoard)."""
        if logs is not None:
            logs["grl_lambda"] = float(
                keras.ops.convert_to_numpy(self.gradient_reversal.grl_lambda)
            )


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first NaN/inf loss with a message saying what to try."""

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            raise FloatingPointError(
                f"training loss became {float(loss)} at epoch {self.epoch + 1}, batch {batch + 1}: "
                "lower --learning_rate, keep --clipnorm > 0, check the data with --mode=inspect, "
                "or use --mixed_precision=float32."
            )


class ValidationMetrics(keras.callbacks.Callback):
    """Adds the source validation MAE and binary accuracy, on the native label scale, to logs.

    Keras' own validation reports the losses on the common scale only; this predicts the
    validation split at each epoch end and writes `val_MAE` and `val_<ACC key>`
    (`val_Non0_acc_2`, SIMS family: `val_Mult_acc_2`) into the epoch's logs. Keras hands
    every callback the same logs dict, so `CSVLogger` and `TensorBoard` placed after this
    one record them. Non-finite predictions give nan (the NaN stop reports the cause).

    Args:
        validation_data: batched `(inputs, label)` validation split, labels on the
            common scale.
        family: the label family of the metrics (the first source's).
        label_scale: native labels are the common-scale ones times this.
    """

    def __init__(self, validation_data, family, label_scale):
        super().__init__()
        self.validation_data = validation_data
        self.family = family
        self.label_scale = float(label_scale)
        self.accuracy_key = midg_metrics.HEADLINE_KEYS[family]["ACC"]

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        _, labels, predictions = predict(self.model, self.validation_data)
        labels, predictions = labels * self.label_scale, predictions * self.label_scale
        scores = {"MAE": math.nan, self.accuracy_key: math.nan}
        if np.isfinite(predictions).all():
            scores = midg_metrics.metrics_for_family(self.family)(predictions, labels)
        for key in ("MAE", self.accuracy_key):
            logs[f"val_{key}"] = float(scores[key])


class SelectOnEMAWeights(keras.callbacks.SwapEMAWeights):
    """Validates, selects and saves the optimizer's weight average; trains the raw weights.

    Keras' `SwapEMAWeights` puts the moving average (`use_ema=True`) into the model for
    each validation pass. With `swap_on_epoch` it also keeps it there from each epoch's end
    to the next epoch's start, for `ModelCheckpoint`, but then the epoch's backup would hold
    the average as the model's weights and a resumed run would train from it. Here the
    average goes in at epoch end (this callback comes before the checkpoint and the
    validation metrics) and `swap_back()`, a second callback placed before the backup,
    puts the raw weights back, so the backup holds exactly what training holds.
    """

    def __init__(self):
        super().__init__(swap_on_epoch=False)

    def on_epoch_end(self, epoch, logs=None):
        if not self._ema_weights_in_model:
            self._swap_variables()
            self._ema_weights_in_model = True

    def swap_back(self) -> keras.callbacks.Callback:
        """The callback that puts the raw weights back at epoch end."""
        parent = self

        class SwapBackRawWeights(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if parent._ema_weights_in_model:
                    parent._swap_variables()
                    parent._ema_weights_in_model = False

        return SwapBackRawWeights()
