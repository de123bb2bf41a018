"""Training loop pieces: fitting, evaluation and run reports (`report`)."""
