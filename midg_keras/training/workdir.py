"""Workdir safety: atomic output files, one process per workdir, no silent replacement.

A workdir is written by one process at a time (`workdir_lock`), each result file appears
whole or not at all (`atomic_write`), a finished run is never trained over without
`--overwrite`, and an interrupted run only resumes under the flags it was started with
(`differing_flags`). docs/design.md §8.
"""

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import json
import os
import shutil
import socket
import tempfile

from midg_keras.config import Config, ConfigError

LOCK_FILE = ".midg.lock"
# Flags that cannot change a run's numbers: what to do, where outputs go, how chatty it
# is, how many CPU threads, which other seeds and models the experiment holds, tuning.
# Everything else (data paths included) must match for a run to resume or be reused.
RESULT_NEUTRAL_FLAGS = frozenset(
    {
        "mode",
        "verbose",
        "workdir",
        "overwrite",
        "export_dir",
        "export_version",
        "inter_op_threads",
        "seeds",
        "baselines",
        "tuner",
        "max_trials",
        "executions_per_trial",
        "search_space",
    }
)
# What one run (one model, one seed) writes into its folder; `--overwrite` deletes these
# (and the experiment's summary) and nothing else.
RUN_OUTPUTS = (
    "config.json",
    "history.csv",
    "metrics.json",
    "model.keras",
    "model.partial.keras",
    "predictions",
    "plots",
    "logs",
    "backup",
)


class WorkdirError(ConfigError):
    """The workdir cannot take this run (finished, busy, other flags); the message says why."""


def atomic_write(path: str, text: str):
    """Writes `text` to `path` through a temporary file in the same folder and `os.replace`.

    A reader (or a rerun after a kill) sees the old file or the new one, never a part.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


def atomic_copy(source: str, path: str):
    """`shutil.copyfile`, through a temporary file and `os.replace` like `atomic_write`."""
    with open(source, encoding="utf-8", newline="") as f:
        atomic_write(path, f.read())


@contextlib.contextmanager
def workdir_lock(workdir: str):
    """Holds `<workdir>/.midg.lock` (an `flock`) while the block runs.

    The kernel drops the lock when its process dies, so a crashed or killed run never
    blocks the next one; the file names the holder (pid, host, start time) for the message
    another process gets.
    """
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK_FILE)
    while True:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(handle)
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise WorkdirError(
                f"{workdir} is in use by {_holder(path)}: wait for it to finish, or choose "
                "another --workdir."
            ) from None
        # The previous holder may have removed the file between our open and flock.
        if _same_file(handle, path):
            break
        os.close(handle)
    try:
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(handle, 0)
        os.write(handle, json.dumps(holder).encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        os.close(handle)


def _same_file(handle, path):
    try:
        return os.stat(path).st_ino == os.fstat(handle).st_ino
    except FileNotFoundError:
        return False


def _holder(path):
    try:
        with open(path) as f:
            holder = json.load(f)
        return f"pid {holder['pid']} on host {holder['host']} (since {holder['since']})"
    except (OSError, ValueError, KeyError):
        return "another process"


def differing_flags(saved_json: str, config: Config) -> list[str]:
    """`--flag=saved (now new)` for each result-changing flag where `config` differs.

    `saved_json` is a run's `config.json`; flags it lacks (written by an older version)
    count as their defaults.
    """
    saved = Config.from_json(saved_json)
    return [
        f"--{field.name}={getattr(saved, field.name)!r} (now {getattr(config, field.name)!r})"
        for field in dataclasses.fields(Config)
        if field.name not in RESULT_NEUTRAL_FLAGS
        and getattr(saved, field.name) != getattr(config, field.name)
    ]


def clear_outputs(folder: str, names=RUN_OUTPUTS):
    """Deletes the entries `names` of `folder` (run outputs by default); nothing else."""
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
