"""Names and tables every part of the project shares (docs/design.md §3).

One place for the modality keys, their one-letter flag names, the split names, the label
families with their scale, the run's model file and the model-selection metric, so that
the data layer, the models, training, export and serving cannot drift apart.
"""

# Modality keys in the order every model, pipeline and export signature uses.
MODALITY_KEYS = ("text", "audio", "vision")
# `--modalities=t,a,v` letters -> modality keys.
MODALITY_LETTERS = {"t": "text", "a": "audio", "v": "vision"}

# Split names everywhere but inside MMSA files (which say `valid`).
SPLITS = ("train", "validation", "test")
# Split name in an MMSA pickle -> split name everywhere else.
FILE_SPLITS = {"train": "train", "valid": "validation", "test": "test"}

# Label family -> its label bound: labels lie in [-bound, bound]. Training divides labels by
# it (a common scale across datasets) and predictions are multiplied back by the target's.
LABEL_SCALE = {"mosi": 3.0, "mosei": 3.0, "sims": 1.0}
# Label family of each TFDS builder; the synthetic data follows MOSI's scale and metrics.
BUILDER_FAMILY = {"mosi": "mosi", "mosei": "mosei", "sims": "sims", "synthetic": "mosi"}

# How a modality's sequence is pooled (`--pooling`) and the consistency penalties
# (`--consistency`): the flags' choices and what the models accept.
POOLINGS = ("mean", "attention")
CONSISTENCY_MODES = ("pairwise", "to_shifted", "vrex")
# What a score head predicts (`--prediction_head`): one number, or a distribution over bins.
PREDICTION_HEADS = ("regression", "distribution")

# The best model of a run (lowest SELECTION_METRIC), in its workdir.
MODEL_FILE = "model.keras"
# Model selection and early stopping: the regression loss of the served prediction on the
# source validation split, the same for every model (never a target split).
SELECTION_METRIC = "val_prediction_loss"
