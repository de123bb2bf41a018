"""Runs tests/backend_check.py under the JAX and PyTorch backends.

Each backend needs its own process: Keras picks the backend once, at import.
"""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

from tests.skips import skip_unless_ci

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "tests" / "backend_check.py"


@pytest.mark.parametrize("backend,module", [("jax", "jax"), ("torch", "torch")])
def test_layers_run_on_backend(backend, module):
    if importlib.util.find_spec(module) is None:
        reason = f"{module} is not installed (docs/design.md §11: jax, torch==2.13.0 CPU wheel)"
        skip_unless_ci(reason)
    env = dict(os.environ)
    env["KERAS_BACKEND"] = backend
    # Halves XLA compile time, which dominates this tiny-shape check on JAX.
    env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    result = subprocess.run(
        [sys.executable, str(SCRIPT)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert result.stdout.strip().splitlines()[-1] == f"OK {backend}"
