"""Starting `python -c SCRIPT ARGS...` children that import this repository (kill tests)."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_python(script, *args, **env):
    """Popen of `python -c script args` in the repo root, stdout+stderr captured as text.

    `env` entries are added to the environment; the repo is put on PYTHONPATH.
    """
    environment = dict(
        os.environ,
        PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
        **env,
    )
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
