"""MIDG (domain-generalization multimodal sentiment analysis) in Keras 3."""

__version__ = "0.1.0"
