"""Hyper-parameter search with keras-tuner (docs/design.md §9): `run_search(config)`."""

from midg_keras.tuning.search import OBJECTIVE, TrialError, run_search, write_flagfile
from midg_keras.tuning.space import Param, parse_search_space

__all__ = ["OBJECTIVE", "Param", "TrialError", "parse_search_space", "run_search", "write_flagfile"]
