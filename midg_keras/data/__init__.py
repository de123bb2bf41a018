"""Data: MMSA readers and validation, sources, and the tf.data pipeline."""
