"""`--distribute`: the tf.distribute strategy, where each worker writes, data sharding, fit.

`create_strategy(config)` makes the strategy once per process (`train.py` does, before any
other TensorFlow op, as `MultiWorkerMirroredStrategy` requires) and the caller passes it
down to whatever builds or fits a model. Input batches are global and split across
replicas; `shard_for` makes tf.data shard by element across workers (files cannot be
relied on: pickle sources have none).
"""

import contextlib
import os

import keras

from midg_keras import keras_compat
from midg_keras.config import Config, ConfigError
from midg_keras.training.precision import precision_policy


def create_strategy(config: Config):
    """A new `tf.distribute` strategy of `--distribute`, or None for `none`.

    Create one per process and pass it to everything that builds or fits a model: two
    strategies in one process conflict in their collective ops.

    `multiworker` reads the cluster from the `TF_CONFIG` environment variable (BUILD.md,
    "Distributed training") and must be created before any other TensorFlow op runs.
    """
    if config.distribute == "none":
        return None
    if keras.backend.backend() != "tensorflow":
        raise ConfigError(
            f"--distribute={config.distribute} uses tf.distribute: run with "
            f"KERAS_BACKEND=tensorflow (now {keras.backend.backend()}), or --distribute=none."
        )
    import tensorflow as tf

    if config.distribute == "mirrored":
        return tf.distribute.MirroredStrategy()
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:
        raise ConfigError(
            f"--distribute=multiworker: {error}. Create the strategy first "
            "(midg_keras.training.distribute.create_strategy(config)) before any data is read."
        ) from None


def check_strategy(config: Config, strategy):
    """Refuses a `strategy` that does not match `--distribute` (a forgotten argument)."""
    if (strategy is None) != (config.distribute == "none"):
        raise ValueError(
            f"--distribute={config.distribute} but the strategy passed is {strategy!r}: "
            "pass distribute.create_strategy(config)."
        )


def worker_workdir(workdir: str, config: Config, strategy) -> str:
    """Where this process writes: `workdir` on the chief, `workdir/worker_<i>` elsewhere.

    Under `--distribute=multiworker` every worker runs the whole training loop, callbacks
    included; only the chief (task `chief`, or worker 0 when the cluster has none) writes
    to the shared `--workdir`, the others to their own subfolder, so no file is written by
    two processes.
    """
    if config.distribute != "multiworker":
        return workdir
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    if task_type in (None, "chief") or (task_type == "worker" and task_id == 0 and not has_chief):
        return workdir
    return os.path.join(workdir, f"{task_type}_{task_id}")


@contextlib.contextmanager
def model_scope(config: Config, strategy):
    """Build, compile and (re)load models in here: dtype policy plus strategy scope."""
    check_strategy(config, strategy)
    with precision_policy(config):
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            yield


@contextlib.contextmanager
def fit_scope(model):
    """Call `model.fit` in here: the model's strategy scope, without Keras' symbolic build.

    Keras 3.15's `fit` on a model created under a strategy first takes one input batch,
    averages it across replicas and builds the model on it: that fails on boolean masks
    (`AddN` has no bool kernel) and, with `steps_per_epoch`, drops that batch from
    training. `trainer.compiled_model` has built the model and optimizer already, so fit
    runs with the strategy taken from the scope instead of the model, which skips that step.
    """
    with keras_compat.without_model_strategy(model) as strategy:
        if strategy is None:
            yield
            return
        with strategy.scope(), _scalar_safe_multiworker_reduction(strategy):
            yield


@contextlib.contextmanager
def _scalar_safe_multiworker_reduction(strategy):
    """Works around Keras 3.15 + MultiWorkerMirroredStrategy failing on scalar logs.

    Keras reduces every step's logs across workers with `strategy.reduce("MEAN", v,
    axis=0)`, which raises "Invalid reduction dimension 0 for input with 0 dimensions" for
    scalars such as the loss (tensorflow/tensorflow#72388). While fitting, scalars are
    averaged over replicas with `axis=None` instead; everything else is left to Keras.
    """
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        yield
        return

    def scalar_safe(keras_reduce):
        def reduce_per_replica(values, strategy, reduction):
            def reduce(value):
                if reduction == "auto" and value.shape.rank == 0:
                    return strategy.reduce("MEAN", value, axis=None)
                return keras_reduce(value, strategy, reduction)

            return tf.nest.map_structure(reduce, values)

        return reduce_per_replica

    with keras_compat.replaced_reduce_per_replica(scalar_safe):
        yield


def shard_for(dataset, config: Config):
    """`dataset` sharded element-wise across workers under `--distribute=multiworker`."""
    if config.distribute != "multiworker":
        return dataset
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
