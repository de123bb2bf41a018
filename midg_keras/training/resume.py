"""Resuming a killed run exactly: resume state plus the resumable callbacks.

`keras.callbacks.BackupAndRestore` restores weights, optimizer and epoch, but not the
dropout/sampling RNG state (`SeedGenerator`s are not saved with the weights), the position
in the shuffled data stream, nor the model-selection state of
`ModelCheckpoint`/`EarlyStopping`. `ResumableBackup` saves the RNG state beside the backup;
`resume_state` reads the backed-up epoch and the validation history so the trainer can skip
the data already seen and restore the selection state. Together a run killed mid-epoch ends
exactly as an uninterrupted one (tests/test_resume.py).

A kill can also land while a checkpoint is being written. Keras writes the backup's weights
and then its epoch in place, so a kill between or during the two leaves torn weights or
weights of one epoch labelled with the previous one. `ResumableBackup` commits an epoch in
two phases instead (`_commit`, `recover_backup`), and `AtomicModelCheckpoint` renames a
finished `model.keras` into place (tests/test_faults.py).
"""

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import shutil

import keras
import numpy as np

from midg_keras import keras_compat
from midg_keras.training.workdir import atomic_write

BACKUP_METADATA = "training_metadata.json"  # read by keras.callbacks.BackupAndRestore
BACKUP_WEIGHTS = "latest.weights.h5"  # read by keras.callbacks.BackupAndRestore
RANDOM_STATE_FILE = "random_state_epoch{epoch}.npz"
# An epoch's backup before its commit: weights first, then the metadata naming its epoch.
PENDING_WEIGHTS = "pending.weights.h5"
PENDING_METADATA = "pending_metadata.json"


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
    recover_backup(backup_dir)
    metadata_path = os.path.join(backup_dir, BACKUP_METADATA)
    if not os.path.exists(metadata_path):
        return ResumeState()
    with open(metadata_path) as f:
        epoch = int(json.load(f)["epoch"])
    rows = []
    if os.path.exists(history_path):
        with open(history_path, newline="") as f:
            rows = list(csv.DictReader(f))[:epoch]
        text = io.StringIO()
        if rows:
            writer = csv.DictWriter(text, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        atomic_write(history_path, text.getvalue())
    values = [float(row[monitor]) for row in rows if row.get(monitor) not in (None, "")]
    if not values:
        return ResumeState(epoch=epoch)
    best_epoch = int(np.argmin(values))
    return ResumeState(epoch=epoch, best=values[best_epoch], best_epoch=best_epoch)


def recover_backup(backup_dir: str):
    """Finishes or undoes an epoch commit that a kill interrupted (see `_commit`).

    Pending metadata without pending weights means the weights were already renamed into
    place: the commit is completed. Otherwise the pending files are dropped and the
    previous epoch's backup stands. Leftovers of a backup being deleted go too.
    """
    for leftover in _deleted_backups(backup_dir):
        shutil.rmtree(leftover, ignore_errors=True)
    pending_weights = os.path.join(backup_dir, PENDING_WEIGHTS)
    pending_metadata = os.path.join(backup_dir, PENDING_METADATA)
    if os.path.exists(pending_metadata) and not os.path.exists(pending_weights):
        os.replace(pending_metadata, os.path.join(backup_dir, BACKUP_METADATA))
    for path in (pending_weights, pending_metadata):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _deleted_backups(backup_dir):
    parent = os.path.dirname(os.path.abspath(backup_dir))
    prefix = os.path.basename(backup_dir) + ".deleting-"
    if not os.path.isdir(parent):
        return []
    return [os.path.join(parent, name) for name in os.listdir(parent) if name.startswith(prefix)]


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that also backs up the RNG state of dropout and sampling.

    The state of every `keras.random.SeedGenerator` of the model is written to
    `random_state_epoch<N>.npz` before epoch N is committed, and restored with the
    weights, so a resumed run draws the same dropout masks and Gaussian samples as an
    uninterrupted one. Epochs are committed in two phases (`_commit`) and the finished
    backup is renamed away before it is deleted, so a kill at any point leaves one whole
    epoch's backup or none.

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
        random_state = os.path.join(self.backup_dir, RANDOM_STATE_FILE.format(epoch=epoch + 1))
        staged = os.path.join(
            self.backup_dir, f".staged_{RANDOM_STATE_FILE.format(epoch=epoch + 1)}"
        )
        np.savez(staged, **states)
        os.replace(staged, random_state)
        self._commit(epoch + 1)
        stale = os.path.join(self.backup_dir, RANDOM_STATE_FILE.format(epoch=epoch))
        if os.path.exists(stale):
            os.remove(stale)

    def _commit(self, epoch):
        """Backs up `epoch` so that a kill at any point leaves it or the previous one whole.

        Phase 1 writes the weights and the metadata under pending names; phase 2 renames
        the weights, then the metadata, into Keras' names. `recover_backup` completes a
        commit killed between the two renames and drops one killed before them.
        """
        pending_weights = os.path.join(self.backup_dir, PENDING_WEIGHTS)
        pending_metadata = os.path.join(self.backup_dir, PENDING_METADATA)
        self.model.save_weights(pending_weights, overwrite=True)
        atomic_write(pending_metadata, json.dumps({"epoch": epoch, "batch": 0}))
        os.replace(pending_weights, os.path.join(self.backup_dir, BACKUP_WEIGHTS))
        os.replace(pending_metadata, os.path.join(self.backup_dir, BACKUP_METADATA))

    def on_train_end(self, logs=None):
        """Deletes the backup: renamed away first, so a kill mid-deletion leaves none."""
        if not os.path.exists(self.backup_dir):
            return
        deleting = f"{os.path.abspath(self.backup_dir)}.deleting-{os.getpid()}"
        os.rename(self.backup_dir, deleting)
        shutil.rmtree(deleting)


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


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`ModelCheckpoint` whose file is written under another name and renamed into place.

    A kill while Keras writes the zip leaves the previous best `model.keras` whole.

    Args:
        filepath: the checkpoint (`.keras`); the partial file is `<stem>.partial.keras`.
        **kwargs: `ModelCheckpoint`'s.
    """

    def __init__(self, filepath, **kwargs):
        stem, extension = os.path.splitext(filepath)
        super().__init__(f"{stem}.partial{extension}", **kwargs)
        self.final_path = filepath
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.filepath)  # a kill's leftover

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if os.path.exists(self.filepath):
            os.replace(self.filepath, self.final_path)
