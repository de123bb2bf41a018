"""The malloc arena cap: set before TensorFlow, never over the user's MALLOC_ARENA_MAX."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = (
    "import sys; from midg_keras.training.allocator import cap_malloc_arenas; "
    "print(cap_malloc_arenas(), 'tensorflow' in sys.modules)"
)


def _probe(**env):
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    environment.update(env)
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=environment, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_cap_is_set_without_importing_tensorflow():
    assert _probe() == ["True", "False"]


def test_the_users_malloc_arena_max_wins():
    assert _probe(MALLOC_ARENA_MAX="4") == ["False", "False"]
