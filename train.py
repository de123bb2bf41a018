"""MIDG command line: `python train.py --flagfile=configs/X.flags [--flag=value ...]`.

Modes: `inspect` (check a dataset), `train`, `evaluate` (re-score a trained workdir),
`export` (SavedModel for TF Serving), `tune` (keras-tuner search). A thin layer over
`midg_keras`: flags -> `Config` -> library call. Bad data exits 2 with one line.
"""

import contextlib
import os
import re
import sys
import tempfile
import warnings

# Before TensorFlow is imported: no INFO/WARNING lines from its C++ runtime. Level 2 keeps its
# errors. `TF_ENABLE_ONEDNN_OPTS` is left alone on purpose: it changes numerics, not logging.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from midg_keras.training.allocator import cap_malloc_arenas  # noqa: E402

cap_malloc_arenas()  # before TensorFlow's threads exist

from absl import app, flags, logging  # noqa: E402

from midg_keras import flags as midg_flags  # noqa: E402
from midg_keras.config import ConfigError  # noqa: E402
from midg_keras.data.errors import DataError  # noqa: E402
from midg_keras.flagfile import FlagfileError, expand_flagfiles  # noqa: E402

midg_flags.define_flags()
FLAGS = flags.FLAGS
# Our datasets are tf.data pipelines that shuffle themselves; Keras warns on every fit anyway.
warnings.filterwarnings("ignore", message="`shuffle=True` was passed", category=UserWarning)

EXIT_BAD_INPUT = 2
HELP_FLAGS = ("--helpshort", "--help", "-help", "-?", "-h")

# TensorFlow's start-up lines (docs/design.md §11). absl writes them before logging is set up,
# so TF_CPP_MIN_LOG_LEVEL does not reach them.
_STARTUP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\)"
    r"|\] oneDNN custom operations are on"
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers"
    r"|cpu_feature_guard\.cc:\d+\]"
    r"|^To enable the following instructions: "
    r"|failed call to cuInit"
)


@contextlib.contextmanager
def quiet_tensorflow_startup():
    """Captures file descriptor 2 while TensorFlow loads; writes back all but its start-up lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not _STARTUP_NOISE.search(line)))
            sys.stderr.flush()


def run(config, strategy):
    """Runs `--mode`; `strategy` is the one tf.distribute strategy of the process (or None)."""
    import datasets  # the project's TFDS builders, opened by name as sources
    from midg_keras.training import distribute

    datasets.register()
    if config.mode == "inspect":
        from midg_keras.data.inspect import describe_source
        from midg_keras.data.pipeline import open_source
        from midg_keras.data.sources import parse_sources

        for spec in parse_sources(config.source, "source"):
            print(describe_source(open_source(spec, config, label_csv=config.label_csv)))
        for spec in parse_sources(config.target, "target"):
            print(describe_source(open_source(spec, config)))
        return
    if config.mode in ("train", "evaluate"):
        from midg_keras.training import experiment

        experiment.run(config, strategy, evaluate_only=config.mode == "evaluate")
    exporting = config.mode == "export" or (config.mode == "train" and config.export_dir)
    if exporting and distribute.is_chief(config, strategy):  # multiworker: the chief's model
        from midg_keras.export import export_workdir

        print(f"exported to {export_workdir(config)}")
    if config.mode == "tune":
        from midg_keras.tuning import run_search

        print(f"best hyper-parameters written to {run_search(config, strategy)}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS["verbosity"].present:  # TFDS logs every dataset it opens at INFO
        logging.set_verbosity(logging.WARNING)
    try:
        config = midg_flags.config_from_flags(FLAGS)
        with quiet_tensorflow_startup():  # imports TensorFlow and probes for GPUs
            from midg_keras.training import distribute, runtime

            runtime.configure_threads(config)
        strategy = distribute.create_strategy(config)  # multi-worker: before any TensorFlow op
        run(config, strategy)
    except (DataError, ConfigError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def parse_flags(argv):
    """absl's parser, except that `--helpshort` (and `--help`) list our flags by group."""
    if any(arg in HELP_FLAGS for arg in argv[1:]):
        print(__doc__)
        print("flags:")
        print(midg_flags.short_help(FLAGS))
        print("Try --helpfull to get a list of all flags (absl's and TensorFlow's too).")
        sys.exit(0)
    return app.parse_flags_with_usage(argv)


if __name__ == "__main__":
    try:
        arguments = expand_flagfiles(
            sys.argv, path_flags=midg_flags.PATH_FLAGS, source_flags=midg_flags.SOURCE_FLAGS
        )
    except FlagfileError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    app.run(main, argv=arguments, flags_parser=parse_flags)
