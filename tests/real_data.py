"""Where the shared real-data folder is: real labels and published predictions, not in the repo.

`$MIDG_REAL_DATA` when set, else `shared/real_data` next to the checkout
(`<repo>/../shared/real_data`). A test that needs a missing file skips, naming the path it
looked at and the variable that moves it; `.ci/run` prints that reason (`-rs`).

The files are not in the repository (they are copies of third-party files, see the folder's
SOURCES.md), so a fresh CI clone has none and its real-data tests skip, even under
`CI=true`. Setting `$MIDG_REAL_DATA` says the data is there: a missing file is then a
failure, not a skip, so a CI job that provides the folder cannot lose these tests silently.
"""

import os
import pathlib

REAL_DATA_ENV = "MIDG_REAL_DATA"
REPO = pathlib.Path(__file__).resolve().parent.parent


def real_data_dir() -> pathlib.Path:
    """`$MIDG_REAL_DATA`, else `<repo>/../shared/real_data`."""
    return pathlib.Path(os.environ.get(REAL_DATA_ENV) or REPO.parent / "shared" / "real_data")


def real_data_file(relative: str) -> pathlib.Path:
    """The path of `relative` in the real-data folder; skips the calling test when absent."""
    import pytest

    path = real_data_dir() / relative
    if not path.exists() and os.environ.get(REAL_DATA_ENV):
        pytest.fail(f"{path} not present, but {REAL_DATA_ENV} is set: it must hold {relative}")
    if not path.exists():
        pytest.skip(
            f"{path} not present: set {REAL_DATA_ENV} to the folder holding {relative} "
            "(default <repo>/../shared/real_data)"
        )
    return path
