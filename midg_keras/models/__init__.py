"""Sentiment models: MIDG and the ERM late-fusion baseline."""

from midg_keras.models.base import LateFusionBaseline, SentimentModel
from midg_keras.models.midg import MIDG

__all__ = ["MIDG", "LateFusionBaseline", "SentimentModel"]
