"""tests/skips.py and tests/real_data.py: which skips CI turns into failures."""

import pytest

from tests import real_data
from tests.skips import skip_unless_ci


def test_a_backend_skip_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    # Catches a skip too, so a helper that skips under CI fails here instead of skipping.
    with pytest.raises((pytest.fail.Exception, pytest.skip.Exception)) as outcome:
        skip_unless_ci("jax is not installed")
    assert outcome.type is pytest.fail.Exception, "skipped under CI=true"
    assert "jax is not installed" in str(outcome.value) and "CI=true" in str(outcome.value)


@pytest.mark.parametrize("value", [None, "", "false"])
def test_a_backend_skip_skips_outside_ci(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match="jax is not installed"):
        skip_unless_ci("jax is not installed")


def test_missing_real_data_skips_by_default_and_fails_when_its_folder_is_given(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("CI", "true")  # a fresh CI clone has no ../shared: still a skip
    monkeypatch.delenv(real_data.REAL_DATA_ENV, raising=False)
    monkeypatch.setattr(real_data, "REPO", tmp_path / "repo")
    with pytest.raises(pytest.skip.Exception, match="set MIDG_REAL_DATA"):
        real_data.real_data_file("mosi/labels.csv")
    monkeypatch.setenv(real_data.REAL_DATA_ENV, str(tmp_path))
    with pytest.raises((pytest.fail.Exception, pytest.skip.Exception)) as outcome:
        real_data.real_data_file("mosi/labels.csv")
    assert outcome.type is pytest.fail.Exception, "skipped although MIDG_REAL_DATA is set"
    assert "MIDG_REAL_DATA is set" in str(outcome.value)
    (tmp_path / "mosi").mkdir()
    (tmp_path / "mosi" / "labels.csv").write_text("x\n")
    assert real_data.real_data_file("mosi/labels.csv") == tmp_path / "mosi" / "labels.csv"
