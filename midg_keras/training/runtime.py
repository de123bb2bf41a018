"""How a run executes: dtype policy, tf.distribute strategy, seeds and resumption.

`trainer` builds and compiles every model inside `model_scope(config)` (the policy of
`--mixed_precision` and the scope of `--distribute`), seeds with `seed_everything`, and
makes a killed run resumable with `ResumableBackup` + `resume_state`:

* `--mixed_precision=auto` is `mixed_float16` on a GPU, `float32` on a CPU. The policy is
  global while the model is built (sublayers created in `build()` read it), then restored.
  Keras' `compile()` wraps the optimizer in a `LossScaleOptimizer` under `mixed_float16`;
  the models' heads and losses compute in float32.
* `--distribute=mirrored|multiworker` returns one `tf.distribute` strategy per process;
  input batches are global and split across replicas, and `shard_for` makes tf.data shard
  by element across workers (files cannot be relied on: pickle sources have none).
* `--deterministic` turns on TF op determinism (bit-identical reruns, slower).
* `keras.callbacks.BackupAndRestore` restores weights, optimizer and epoch, but not the
  dropout/sampling RNG state (`SeedGenerator`s are not saved with the weights), the
  position in the shuffled data stream, nor the model-selection state of
  `ModelCheckpoint`/`EarlyStopping`. `ResumableBackup` saves the RNG state beside the
  backup; `resume_state` reads the backed-up epoch and the validation history so the
  trainer can skip the data already seen and restore the selection state. Together a run
  killed mid-epoch ends exactly as an uninterrupted one (tests/test_resume.py).
"""

import contextlib
import csv
import dataclasses
import json
import math
import os

import keras
import numpy as np

from midg_keras.config import Config, ConfigError

BACKUP_METADATA = "training_metadata.json"  # written by keras.callbacks.BackupAndRestore
RANDOM_STATE_FILE = "random_state_epoch{epoch}.npz"


def gpu_available() -> bool:
    """Whether the active Keras backend sees a GPU."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def configure_threads(config: Config):
    """TF inter-op threads: `--inter_op_threads`, or 1 on CPU-only machines when 0 (auto).

    MIDG's step is thousands of small ops; on a 2-core CPU, running independent ops in
    parallel makes them contend for the cores and their intra-op pools. One inter-op thread
    measured 2x faster training (benchmarks/results/throughput.md). Must run before
    TensorFlow executes its first op; later calls keep TF's setting and say so.
    """
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    threads = config.inter_op_threads
    if threads == 0:
        if tf.config.list_physical_devices("GPU"):
            return
        threads = 1
    if tf.config.threading.get_inter_op_parallelism_threads() == threads:
        return
    try:
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        print(
            f"note: TensorFlow is already running; --inter_op_threads={threads} not applied.",
            flush=True,
        )


def precision_policy_name(config: Config) -> str:
    """`--mixed_precision`, with `auto` resolved: mixed_float16 on a GPU, else float32."""
    if config.mixed_precision != "auto":
        return config.mixed_precision
    return "mixed_float16" if gpu_available() else "float32"


@contextlib.contextmanager
def precision_policy(config: Config):
    """Sets the global dtype policy of `--mixed_precision` for the block, then restores it.

    Build the model inside: Keras layers read the global policy when they are created,
    and MIDG's layers create their sublayers in `build()`.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision_policy_name(config))
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


_STRATEGIES = {}


def distribution_strategy(config: Config):
    """The `tf.distribute` strategy of `--distribute` (one per process), or None for `none`.

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
    if config.distribute not in _STRATEGIES:
        import tensorflow as tf

        if config.distribute == "mirrored":
            _STRATEGIES["mirrored"] = tf.distribute.MirroredStrategy()
        else:
            try:
                _STRATEGIES["multiworker"] = tf.distribute.MultiWorkerMirroredStrategy()
            except RuntimeError as error:
                raise ConfigError(
                    f"--distribute=multiworker: {error}. Create the strategy first "
                    "(midg_keras.training.runtime.distribution_strategy(config)) before "
                    "any data is read."
                ) from None
    return _STRATEGIES[config.distribute]


def worker_workdir(workdir: str, config: Config) -> str:
    """Where this process writes: `workdir` on the chief, `workdir/worker_<i>` elsewhere.

    Under `--distribute=multiworker` every worker runs the whole training loop, callbacks
    included; only the chief (task `chief`, or worker 0 when the cluster has none) writes
    to the shared `--workdir`, the others to their own subfolder, so no file is written by
    two processes.
    """
    if config.distribute != "multiworker":
        return workdir
    resolver = distribution_strategy(config).cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    if task_type in (None, "chief") or (task_type == "worker" and task_id == 0 and not has_chief):
        return workdir
    return os.path.join(workdir, f"{task_type}_{task_id}")


@contextlib.contextmanager
def model_scope(config: Config):
    """Build, compile and (re)load models in here: dtype policy plus strategy scope.

    Yields the strategy (None without `--distribute`).
    """
    strategy = distribution_strategy(config)
    with precision_policy(config):
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            yield strategy


@contextlib.contextmanager
def fit_scope(model):
    """Call `model.fit` in here: the model's strategy scope, without Keras' symbolic build.

    Keras 3.15's `fit` on a model created under a strategy first takes one input batch,
    averages it across replicas and builds the model on it: that fails on boolean masks
    (`AddN` has no bool kernel) and, with `steps_per_epoch`, drops that batch from
    training. `trainer.compiled_model` has built the model and optimizer already, so fit
    runs with the strategy taken from the scope instead of the model, which skips that step.
    """
    strategy = getattr(model, "_distribute_strategy", None)
    if strategy is None:
        yield
        return

    model._distribute_strategy = None
    try:
        with strategy.scope(), _scalar_safe_multiworker_reduction(strategy):
            yield
    finally:
        model._distribute_strategy = strategy


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
    from keras.src.backend.tensorflow import trainer as tf_trainer

    keras_reduce = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        def reduce(value):
            if reduction == "auto" and value.shape.rank == 0:
                return strategy.reduce("MEAN", value, axis=None)
            return keras_reduce(value, strategy, reduction)

        return tf.nest.map_structure(reduce, values)

    tf_trainer.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = keras_reduce


def shard_for(dataset, config: Config):
    """`dataset` sharded element-wise across workers under `--distribute=multiworker`."""
    if config.distribute != "multiworker":
        return dataset
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def seed_everything(config: Config):
    """Seeds Python, NumPy and the backend; `--deterministic` adds op determinism."""
    keras.utils.set_random_seed(config.seed)
    if not config.deterministic:
        return
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True)
    # JAX is deterministic on CPU; on GPU set XLA_FLAGS=--xla_gpu_deterministic_ops=true.


@dataclasses.dataclass
class ResumeState:
    """Where an interrupted run stopped, read from its backup and `history.csv`.

    Attributes:
        epoch: epochs completed and backed up (0 = start from scratch).
        best: lowest value of the monitored metric over those epochs (inf if none).
        best_epoch: 0-based epoch of `best`.
    """

    epoch: int = 0
    best: float = math.inf
    best_epoch: int = 0

    @property
    def epochs_since_best(self) -> int:
        """`EarlyStopping.wait` after `epoch` epochs."""
        return max(0, self.epoch - 1 - self.best_epoch)


def resume_state(backup_dir: str, history_path: str, monitor: str) -> ResumeState:
    """Reads the backup of an interrupted run; keeps only its backed-up rows of history.

    `history.csv` may hold one row more than the backup (killed between the two
    writes): rows past the backed-up epoch are dropped, since those epochs rerun.
    """
    metadata_path = os.path.join(backup_dir, BACKUP_METADATA)
    if not os.path.exists(metadata_path):
        return ResumeState()
    with open(metadata_path) as f:
        epoch = int(json.load(f)["epoch"])
    rows = []
    if os.path.exists(history_path):
        with open(history_path, newline="") as f:
            rows = list(csv.DictReader(f))[:epoch]
        with open(history_path, "w", newline="") as f:
            if rows:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
    values = [float(row[monitor]) for row in rows if row.get(monitor) not in (None, "")]
    if not values:
        return ResumeState(epoch=epoch)
    best_epoch = int(np.argmin(values))
    return ResumeState(epoch=epoch, best=values[best_epoch], best_epoch=best_epoch)


def _seed_generators(model):
    generators = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        generators.extend(layer._seed_generators)
    return generators


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that also backs up the RNG state of dropout and sampling.

    The state of every `keras.random.SeedGenerator` of the model is written to
    `random_state_epoch<N>.npz` before Keras commits epoch N (its metadata file), and
    restored with the weights, so a resumed run draws the same dropout masks and
    Gaussian samples as an uninterrupted one.
    """

    def __init__(self, backup_dir):
        super().__init__(backup_dir, save_freq="epoch")

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        epoch = self.model._initial_epoch or 0
        if not epoch:
            return
        path = os.path.join(self.backup_dir, RANDOM_STATE_FILE.format(epoch=epoch))
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path} is missing, so the run backed up in {self.backup_dir} cannot resume "
                "exactly: delete that folder to start the run afresh."
            )
        states = np.load(path)
        generators = _seed_generators(self.model)
        if len(states.files) != len(generators):
            raise ValueError(
                f"{path} holds {len(states.files)} RNG states but the model has "
                f"{len(generators)}: the backup is of another model; delete {self.backup_dir}."
            )
        for index, generator in enumerate(generators):
            generator.state.assign(states[f"state_{index}"])

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.backup_dir, exist_ok=True)
        states = {
            f"state_{index}": np.asarray(keras.ops.convert_to_numpy(generator.state.value))
            for index, generator in enumerate(_seed_generators(self.model))
        }
        np.savez(os.path.join(self.backup_dir, RANDOM_STATE_FILE.format(epoch=epoch + 1)), **states)
        super().on_epoch_end(epoch, logs)
        stale = os.path.join(self.backup_dir, RANDOM_STATE_FILE.format(epoch=epoch))
        if os.path.exists(stale):
            os.remove(stale)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """`EarlyStopping` that starts from the best value and wait count of a resumed run."""

    def __init__(self, resume: ResumeState, **kwargs):
        super().__init__(**kwargs)
        self.resume = resume

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.resume.epoch and math.isfinite(self.resume.best):
            self.best = self.resume.best
            self.best_epoch = self.resume.best_epoch
            self.wait = self.resume.epochs_since_best
