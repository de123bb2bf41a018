"""`--distribute`: the tf.distribute strategy, where each worker writes, data sharding, fit.

`create_strategy(config)` makes the strategy once per process (`train.py` does, before any
other TensorFlow op, as `MultiWorkerMirroredStrategy` requires) and the caller passes it
down to whatever builds or fits a model. Input batches are global and split across
replicas; `shard_for` makes tf.data shard by element across workers (files cannot be
relied on: pickle sources have none). Under `multiworker` only the chief writes the shared
`--workdir`; `worker_workdir` sends every other worker's files to a temporary scratch copy.
tests/test_multiworker.py runs BUILD.md's two-worker command on localhost.
"""

import atexit
import contextlib
import os
import shutil
import tempfile

import keras

from midg_keras import keras_compat
from midg_keras.config import Config, ConfigError
from midg_keras.constants import MODEL_FILE
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


def is_chief(config: Config, strategy) -> bool:
    """Whether this process writes the shared `--workdir`: always, but under `multiworker`.

    There only the chief does: task `chief`, or worker 0 when the cluster has none (or
    when there is no `TF_CONFIG`: a single worker).
    """
    if config.distribute != "multiworker":
        return True
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type in (None, "chief") or (
        task_type == "worker" and task_id == 0 and not has_chief
    )


# What a worker reads when it resumes a run (trainer.train): every worker must restore the
# same epoch and selection state, or they would train different numbers of steps and hang.
RESUME_FILES = ("backup", "history.csv", MODEL_FILE)
_scratch = {}  # this process's scratch folder, made by the first non-chief worker_workdir


def worker_workdir(workdir: str, config: Config, strategy) -> str:
    """Where this process writes `workdir`'s files: `workdir` itself on the chief.

    Under `--distribute=multiworker` every worker runs the whole training loop, callbacks
    and evaluation included; only the chief writes to the shared `--workdir`. Any other
    worker writes to the same path under its own scratch folder (a temporary directory,
    removed when the process exits), so nothing reaches `--workdir` from two processes.
    That copy starts with the chief's resume state (`RESUME_FILES`, read, never written),
    so a restarted worker resumes from the chief's last backup, as the chief does.
    """
    if is_chief(config, strategy):
        return workdir
    if "root" not in _scratch:
        resolver = strategy.cluster_resolver
        root = tempfile.mkdtemp(prefix=f"midg_{resolver.task_type}_{resolver.task_id}_")
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _scratch["root"] = root
    local = os.path.join(_scratch["root"], os.path.abspath(workdir).lstrip(os.sep))
    for name in RESUME_FILES:
        shared, copy = os.path.join(workdir, name), os.path.join(local, name)
        if os.path.isdir(shared) and not os.path.exists(copy):
            shutil.copytree(shared, copy)
        elif os.path.isfile(shared) and not os.path.exists(copy):
            os.makedirs(local, exist_ok=True)
            shutil.copyfile(shared, copy)
    return local


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
