"""`--mixed_precision`: the dtype policy models are built under.

`auto` is `mixed_float16` on a GPU, `float32` on a CPU. The policy is global while the
model is built (sublayers created in `build()` read it), then restored. Keras' `compile()`
wraps the optimizer in a `LossScaleOptimizer` under `mixed_float16`; the models' heads and
losses compute in float32.
"""

import contextlib

import keras

from midg_keras.config import Config


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
