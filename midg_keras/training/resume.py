"""Resuming a killed run exactly: resume state plus the resumable callbacks.

`keras.callbacks.BackupAndRestore` restores weights, optimizer and epoch, but not the
dropout/sampling RNG state (`SeedGenerator`s are not saved with the weights), the position
in the shuffled data stream, nor the model-selection state of
`ModelCheckpoint`/`EarlyStopping`. `ResumableBackup` saves the RNG state beside the backup;
`resume_state` reads the backed-up epoch and the validation history so the trainer can skip
the data already seen and restore the selection state. Together a run killed mid-epoch ends
exactly as an uninterrupted one (tests/test_resume.py).
"""

import csv
import dataclasses
import json
import math
import os

import keras
import numpy as np

from midg_keras import keras_compat

BACKUP_METADATA = "training_metadata.json"  # written by keras.callbacks.BackupAndRestore
RANDOM_STATE_FILE = "random_state_epoch{epoch}.npz"


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


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that also backs up the RNG state of dropout and sampling.

    The state of every `keras.random.SeedGenerator` of the model is written to
    `random_state_epoch<N>.npz` before Keras commits epoch N (its metadata file), and
    restored with the weights, so a resumed run draws the same dropout masks and
    Gaussian samples as an uninterrupted one.

    Args:
        backup_dir: the backup folder.
        resume: `resume_state` of that folder, read before `fit` (its epoch is the one
            `BackupAndRestore` restores).
    """

    def __init__(self, backup_dir, resume: ResumeState):
        super().__init__(backup_dir, save_freq="epoch")
        self.resume = resume

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        epoch = self.resume.epoch
        if not epoch:
            return
        path = os.path.join(self.backup_dir, RANDOM_STATE_FILE.format(epoch=epoch))
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path} is missing, so the run backed up in {self.backup_dir} cannot resume "
                "exactly: delete that folder to start the run afresh."
            )
        states = np.load(path)
        generators = keras_compat.seed_generators(self.model)
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
            for index, generator in enumerate(keras_compat.seed_generators(self.model))
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
