"""MIDG command line: `python train.py --flagfile=configs/X.flags [--flag=value ...]`.

Modes: `inspect` (check a dataset), `train`, `evaluate` (re-score a trained workdir),
`export` (SavedModel for TF Serving), `tune` (keras-tuner search). A thin layer over
`midg_keras`: flags -> `Config` -> library call. Bad data exits 2 with one line.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from midg_keras import flags as midg_flags  # noqa: E402
from midg_keras.config import ConfigError  # noqa: E402
from midg_keras.data.errors import DataError  # noqa: E402
from midg_keras.flagfile import FlagfileError, expand_flagfiles  # noqa: E402

midg_flags.define_flags()
FLAGS = flags.FLAGS

EXIT_BAD_INPUT = 2


def run(config, strategy):
    """Runs `--mode`; `strategy` is the one tf.distribute strategy of the process (or None)."""
    if config.mode == "inspect":
        from midg_keras.data.inspect import describe_source
        from midg_keras.data.sources import load_source

        specs = [s for s in config.source.split(",") if s.strip()]
        specs += [config.target] if config.target.strip() else []
        for spec in specs:
            source = load_source(
                spec,
                data_dir=config.data_dir,
                manual_dir=config.manual_dir,
                nan_to_num=config.nan_to_num,
            )
            print(describe_source(source))
        return
    if config.mode in ("train", "evaluate"):
        from midg_keras.training import experiment

        experiment.run(config, strategy, evaluate_only=config.mode == "evaluate")
    if config.mode == "export" or (config.mode == "train" and config.export_dir):
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
        from midg_keras.training import distribute, runtime

        runtime.configure_threads(config)
        strategy = distribute.create_strategy(config)  # multi-worker: before any TensorFlow op
        run(config, strategy)
    except (DataError, ConfigError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":
    try:
        arguments = expand_flagfiles(
            sys.argv, path_flags=midg_flags.PATH_FLAGS, source_flags=midg_flags.SOURCE_FLAGS
        )
    except FlagfileError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    app.run(main, argv=arguments)
