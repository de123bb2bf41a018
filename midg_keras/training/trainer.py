"""Training and evaluation runs: build, fit with source-only model selection, score, write.

One run = one model on one seed in one workdir. It writes `config.json`, `history.csv`,
TensorBoard logs, the best `model.keras` (lowest source-validation `prediction_loss`),
`metrics.json` = {"valid": ..., "test": ..., "test_by_target": ...} with MMSA's keys, and
`predictions/test_<target>.csv` (`id,label,prediction` on the target's native scale; the
first target's also as `predictions/test.csv`). Target test splits are only ever scored,
never used to select anything. Every file is written atomically and `metrics.json` last,
so a run with a `metrics.json` is finished (docs/design.md §8).
"""

import json
import math
import os

import keras

from midg_keras import metrics as midg_metrics
from midg_keras.config import Config
from midg_keras.constants import MODEL_FILE, SELECTION_METRIC
from midg_keras.data.pipeline import PreparedData, target_slug
from midg_keras.models import MIDG, LateFusionBaseline
from midg_keras.training import distribute, plots, report, runtime
from midg_keras.training.callbacks import (
    GradientReversalSchedule,
    SelectOnEMAWeights,
    StopOnNonFiniteLoss,
    ValidationMetrics,
)
from midg_keras.training.prediction import predict
from midg_keras.training.resume import (
    AtomicModelCheckpoint,
    ResumableBackup,
    ResumableEarlyStopping,
    resume_state,
)
from midg_keras.training.workdir import atomic_copy, atomic_write

METRICS_FILE = "metrics.json"


class TrainingError(RuntimeError):
    """Training produced something unusable (diverged, collapsed); the message says what."""


def build_model(config: Config, data: PreparedData, model_name=None):
    """The configured model (`--model`, or `model_name`) for the prepared data.

    Its hyper-parameters are the model flags it names in `HYPERPARAMETERS`; the data gives
    the feature dims and strides (and, for MIDG, the discriminator's domains).
    """
    name = model_name or config.model
    model_class = MIDG if name == "midg" else LateFusionBaseline
    kwargs = config.model_settings(model_class.HYPERPARAMETERS)
    if model_class is MIDG:
        kwargs["num_domains"] = len(data.sources) if config.domain_labels == "source" else 2
    else:
        kwargs["simulate_shift"] = name == "erm_shift"
    return model_class(input_dims=data.dims, strides=data.strides, name=name, **kwargs)


def learning_rate(config: Config, steps: int):
    """`--learning_rate` as a number, or the schedule of `--lr_schedule` / `--warmup_epochs`.

    Both schedules are Keras' `CosineDecay` over the `--epochs` × `steps` planned steps: a
    linear warmup from 0 to the peak over `--warmup_epochs`, then a cosine decay to 0
    (`cosine`) or a flat peak (`constant`: a decay to `alpha` = 1 × the peak). The step
    counter is the optimizer's, so a resumed run continues the schedule where it stopped.
    """
    warmup_steps = round(config.warmup_epochs * steps)
    if config.lr_schedule == "constant" and not warmup_steps:
        return config.learning_rate
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else config.learning_rate,
        decay_steps=max(1, config.epochs * steps - warmup_steps),
        alpha=1.0 if config.lr_schedule == "constant" else 0.0,
        warmup_target=config.learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def make_optimizer(config: Config, steps: int):
    """AdamW for `steps` training steps per epoch, with `--ema_momentum`'s weight average."""
    return keras.optimizers.AdamW(
        learning_rate=learning_rate(config, steps),
        weight_decay=config.weight_decay,
        clipnorm=config.clipnorm or None,
        use_ema=config.ema_momentum > 0,
        ema_momentum=config.ema_momentum or 0.99,
    )


def compiled_model(config: Config, data: PreparedData, model_name=None, strategy=None):
    """`build_model`, built and compiled under `--mixed_precision` and `--distribute`.

    `strategy` is `distribute.create_strategy(config)` (None without `--distribute`). The
    optimizer is built too: BackupAndRestore needs every weight before `fit`, and a built
    optimizer lets `fit` trace the train step once instead of twice.
    """
    with distribute.model_scope(config, strategy):
        model = build_model(config, data, model_name)
        model.build_weights()
        model.compile(optimizer=make_optimizer(config, steps_per_epoch(config, data)))
        model.optimizer.build(model.trainable_variables)
    return model


def fit_callbacks(model, config: Config, steps: int) -> list:
    """What every fit of `model` needs: the NaN stop and, for MIDG, the λ schedule."""
    callbacks = [StopOnNonFiniteLoss()]
    if isinstance(model, MIDG):
        callbacks.append(
            GradientReversalSchedule(
                model.gradient_reversal,
                steps_per_epoch=steps,
                epochs=config.epochs,
                max_lambda=config.grl_max,
                schedule=config.grl_schedule,
            )
        )
    return callbacks


def steps_per_epoch(config: Config, data: PreparedData) -> int:
    examples = sum(source.num_examples["train"] for source in data.sources)
    steps = math.ceil(examples / config.batch_size)
    return min(steps, config.steps_per_epoch) if config.steps_per_epoch else steps


def fit(model, config: Config, data: PreparedData, callbacks=(), skip_epochs=0, **fit_kwargs):
    """The one `model.fit` of a run and of a tuning trial, on the source train/validation data.

    Every fit gets `fit_callbacks` before `callbacks`; `fit_kwargs` (e.g. keras-tuner's
    `epochs`, `verbose`) override `--epochs` and `--verbose`. Training reads one shuffled
    stream for all epochs, a new one per fit (`PreparedData.new_train`), so a resumed run
    skips exactly the batches of its `skip_epochs`.
    """
    steps = steps_per_epoch(config, data)
    train_data = data.new_train().repeat()
    if skip_epochs:
        train_data = train_data.skip(skip_epochs * steps)
    epochs = fit_kwargs.pop("epochs", None) or config.epochs
    fit_kwargs = {"verbose": config.verbose, **fit_kwargs}
    with distribute.fit_scope(model):
        return model.fit(
            distribute.shard_for(train_data, config),
            validation_data=distribute.shard_for(data.validation, config),
            epochs=epochs,
            steps_per_epoch=steps,
            callbacks=[*fit_callbacks(model, config, steps), *_with_ema_swaps(model, callbacks)],
            **fit_kwargs,
        )


def _with_ema_swaps(model, callbacks):
    """`callbacks` between the two swaps of `SelectOnEMAWeights`, the backup after them,
    when the optimizer keeps a weight average (`--ema_momentum`).

    Everything between the swaps (validation, checkpoint, metrics, logs, early stopping,
    keras-tuner's reports) sees the average; the backup and training see the raw weights.
    """
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    if not optimizer.use_ema:
        return list(callbacks)
    swap = SelectOnEMAWeights()
    backups = [c for c in callbacks if isinstance(c, ResumableBackup)]
    others = [c for c in callbacks if not isinstance(c, ResumableBackup)]
    return [swap, *others, swap.swap_back(), *backups]


def train(config: Config, data: PreparedData, workdir: str, model_name=None, strategy=None) -> dict:
    """Fits one model with seed `config.seed`; returns `evaluate`'s metrics of the best epoch.

    `strategy` is `distribute.create_strategy(config)` (None without `--distribute`).
    """
    workdir = distribute.worker_workdir(workdir, config, strategy)
    atomic_write(
        os.path.join(workdir, "config.json"),
        data.run_config_json(config.replace(model=model_name or config.model)),
    )
    runtime.seed_everything(config)
    model = compiled_model(config, data, model_name, strategy)
    history_path = os.path.join(workdir, "history.csv")
    backup_dir = os.path.join(workdir, "backup")
    resume = resume_state(backup_dir, history_path, SELECTION_METRIC)
    callbacks = [
        AtomicModelCheckpoint(
            os.path.join(workdir, MODEL_FILE),
            monitor=SELECTION_METRIC,
            mode="min",
            save_best_only=True,
            initial_value_threshold=resume.best if resume.epoch else None,
        ),
        ValidationMetrics(data.validation, data.sources[0].family, data.sources[0].label_scale),
        keras.callbacks.CSVLogger(history_path, append=resume.epoch > 0),
        keras.callbacks.TensorBoard(os.path.join(workdir, "logs"), write_graph=False),
        ResumableBackup(backup_dir, resume),
    ]
    if config.patience:
        callbacks.append(
            ResumableEarlyStopping(
                resume, monitor=SELECTION_METRIC, mode="min", patience=config.patience
            )
        )
    fit(model, config, data, callbacks, skip_epochs=resume.epoch)
    best = keras.saving.load_model(os.path.join(workdir, MODEL_FILE))
    return evaluate(best, data, workdir)


def evaluate(model, data: PreparedData, workdir: str) -> dict:
    """Scores the source validation split and every target's test split; writes the results.

    Returns (and writes as `metrics.json`, last) {"valid": ..., "test": ..., "test_by_target":
    {target name: ...}}, where "test" is the first target's. Each target's predictions go to
    `predictions/test_<slug>.csv`, the first target's also to `predictions/test.csv`; the
    training curves (when `workdir` has a `history.csv`) and predicted-vs-true scatter to
    `plots/` (`plots.write_run_plots`).
    """
    source = data.sources[0]
    results = {"valid": _score(model, data.validation, source, workdir, "valid")[0]}
    results["test_by_target"], prediction_files = {}, {}
    folder = os.path.join(workdir, "predictions")
    for target, dataset in zip(data.targets, data.tests):
        scores, ids, labels, predictions = _score(model, dataset, target, workdir, target.name)
        results["test_by_target"][target.name] = scores
        path = os.path.join(folder, f"test_{target_slug(target.name)}.csv")
        report.write_predictions_csv(path, ids, labels, predictions)
        prediction_files[target.name] = path
    atomic_copy(prediction_files[data.target.name], os.path.join(folder, "test.csv"))
    results["test"] = results["test_by_target"][data.target.name]
    plots.write_run_plots(workdir, prediction_files)
    atomic_write(os.path.join(workdir, METRICS_FILE), json.dumps(results, indent=2))
    return results


def _score(model, dataset, dataset_source, workdir, split_name):
    """(metrics, ids, labels, predictions) of one split, on its source's native label scale."""
    ids, labels, predictions = predict(model, dataset)
    scale = dataset_source.label_scale
    labels, predictions = labels * scale, predictions * scale
    reason = midg_metrics.degenerate_reason(predictions)
    if reason:
        raise TrainingError(f"{split_name} predictions of {workdir} are unusable: {reason}.")
    scores = midg_metrics.metrics_for_family(dataset_source.family)(predictions, labels)
    return scores, ids, labels, predictions
