"""Every use of a private Keras (or keras-tuner) attribute, in one place.

Keras has no public API for the few things below; each function says why the project needs
it. `PRIVATE_NAMES` lists them all, and tests/test_keras_compat.py fails naming the one a
Keras upgrade removed, instead of a run failing somewhere deep in training.
"""

import contextlib

import keras

# (where, attribute) of every private name used here, checked by tests/test_keras_compat.py.
PRIVATE_NAMES = (
    ("keras.Model instance", "_distribute_strategy"),
    ("keras.Layer instance", "_seed_generators"),
    ("keras.Layer instance", "_flatten_layers"),
    ("keras.src.backend.tensorflow.trainer", "reduce_per_replica"),
    ("keras_tuner.src.engine.tuner_utils", "SaveBestEpoch"),
)


def all_layers(model):
    """`model` and every layer nested in it, at any depth.

    `Model.layers` lists only the direct sublayers; the recursive walk Keras uses itself
    (`_flatten_layers`) has no public counterpart.
    """
    return list(model._flatten_layers(include_self=True, recursive=True))


def seed_generators(model):
    """Every `keras.random.SeedGenerator` of `model` (dropout, Gaussian sampling), in order.

    Their state is not saved with the weights; a resumed run restores it (training/resume.py).
    Layers keep their generators in `_seed_generators`, with no public accessor.
    """
    generators = []
    for layer in all_layers(model):
        generators.extend(layer._seed_generators)
    return generators


@contextlib.contextmanager
def without_model_strategy(model):
    """Hides the strategy `model` was created under for the block, then restores it.

    Keras' `fit` on a model created under a strategy first builds it symbolically on one
    input batch averaged across replicas (see training/distribute.py `fit_scope`); with the
    model's `_distribute_strategy` unset, `fit` takes the strategy from the enclosing scope
    and skips that step. Yields the hidden strategy (None when there is none).
    """
    strategy = getattr(model, "_distribute_strategy", None)
    if strategy is None:
        yield None
        return
    model._distribute_strategy = None
    try:
        yield strategy
    finally:
        model._distribute_strategy = strategy


@contextlib.contextmanager
def replaced_reduce_per_replica(reduce_per_replica):
    """Keras' TF trainer reduces every step's logs across replicas with `reduce_per_replica`.

    `reduce_per_replica(keras_reduce)` gets Keras' function and returns the one used for the
    block (training/distribute.py works around a multi-worker bug with it); there is no
    public hook for the reduction of the logs.
    """
    from keras.src.backend.tensorflow import trainer as tf_trainer

    keras_reduce = tf_trainer.reduce_per_replica
    tf_trainer.reduce_per_replica = reduce_per_replica(keras_reduce)
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = keras_reduce


def keras_tuner_save_best_epoch_class():
    """keras-tuner's callback that records a trial's best epoch (Hyperband resumes from it).

    Tests that stand in for a trial's fit must call it as fit would; it is not exported.
    """
    from keras_tuner.src.engine.tuner_utils import SaveBestEpoch

    return SaveBestEpoch


def check_private_names():
    """Raises AttributeError naming the first entry of `PRIVATE_NAMES` this Keras lacks."""
    import importlib

    instances = {
        "keras.Model instance": keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]),
        "keras.Layer instance": keras.layers.Dropout(0.1),
    }
    for where, name in PRIVATE_NAMES:
        if where in instances:
            owner = instances[where]
        else:
            try:
                owner = importlib.import_module(where)
            except ImportError as error:
                raise AttributeError(
                    f"{where} (holding {name}) no longer exists: {error}"
                ) from None
        if not hasattr(owner, name):
            raise AttributeError(
                f"{where} has no attribute {name!r} any more: update midg_keras/keras_compat.py."
            )
