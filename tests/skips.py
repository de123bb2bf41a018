"""Skips that cannot hide a regression in CI.

A test whose prerequisite CI is meant to have (jax and torch are in requirements-dev.txt)
calls `skip_unless_ci(reason)`: locally it skips, under `CI=true` (set by GitHub Actions,
GitLab CI and most runners) it fails, naming the reason, so a broken install cannot turn
the backend tests into a green "skipped". `.ci/run` passes `-rs`, so every skip that
remains prints its reason in CI's log.
"""

import os

import pytest

CI_ENV = "CI"


def in_ci() -> bool:
    """Whether the tests run under CI (`CI=true`)."""
    return os.environ.get(CI_ENV, "").lower() == "true"


def skip_unless_ci(reason: str):
    """Skips the calling test, or fails it under `CI=true`: CI must not skip it."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: CI must run this test, so its skip is a failure)")
    pytest.skip(reason)
