"""Process-wide settings of a run: TensorFlow's inter-op threads and the seeds.

The rest of how a run executes lives beside this: `precision.py` (`--mixed_precision`),
`distribute.py` (`--distribute`: strategy, sharding, fit scope) and `resume.py`
(resuming a killed run exactly).
"""

import keras

from midg_keras.config import Config


def configure_threads(config: Config):
    """TF inter-op threads: `--inter_op_threads`, or TensorFlow's default when 0 (auto).

    Since MIDG runs its clean and simulated streams as one pass, its step has fewer,
    larger ops, and TensorFlow's default (one inter-op thread per core) trains faster on a
    2-core CPU than a single thread: 129 vs 98 samples/s on MOSI-unaligned shapes (the
    two-pass model measured the opposite; `benchmarks/results/throughput.jsonl`). Must run
    before TensorFlow executes its first op; later calls keep TF's setting and say so.
    """
    threads = config.inter_op_threads
    if threads == 0 or keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    if tf.config.threading.get_inter_op_parallelism_threads() == threads:
        return
    try:
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        print(
            f"note: TensorFlow is already running; --inter_op_threads={threads} not applied.",
            flush=True,
        )


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
