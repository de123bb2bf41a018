"""SavedModel export for TF Serving (docs/design.md §10).

A trained workdir becomes `<export_dir>/<version>/`: a TensorFlow SavedModel written with
`keras.export.ExportArchive` whose `serving_default` signature is the serving contract:

    inputs   text, audio, vision                    float32 [batch, time, dim]
             text_length, audio_length, vision_length  int32 [batch]
    outputs  sentiment  float32 [batch]  on the training target's label scale
             polarity   int32 [batch]    1 positive, 0 neutral or negative

Batch, time and feature dims are dynamic in the signature; the serving function itself
checks every used input (non-empty batch, feature dim, batch agreement, 1 <= length <= time,
finite feature values within +-MAX_ABS_FEATURE) and the score it returns (finite) with
in-graph asserts, so a bad request fails with one InvalidArgument naming the input, in TF
Serving as in Python, instead of deep inside a matmul or, worse, with a plausible score.
Nothing is clamped or cleaned. Runs trained with `--harmonize=pad` pad or
truncate feature dims as their evaluation did, instead of refusing other dims. A model
trained on a modality subset still takes all three modalities; the unused ones are ignored.
The graph is float32 even when the model was trained with mixed precision. Predictions come
from the model's configured inference path (`prediction`; ŷ2 of the out-of-domain pipeline
by default), so the in-domain head and the domain discriminator are not on the fetch path.
"""

import json
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from midg_keras.config import Config, ConfigError
from midg_keras.constants import LABEL_SCALE, MODALITY_KEYS, MODEL_FILE
from midg_keras.data.sources import SourceSpec
from midg_keras.models import SentimentModel  # importing the package registers both models

SIGNATURE_NAME = "serving_default"
# Feature values must be finite and within +-MAX_ABS_FEATURE. Real features are far smaller
# (BERT/openSMILE/Facet/COVAREP values stay below ~1e3); far larger ones overflow float32
# inside the layer norms (from ~1e19 for a small model, sooner with larger weights), and the
# scores turn to garbage (near 0, then NaN). docs/design.md §10.
MAX_ABS_FEATURE = 1e6
METADATA_FILE = os.path.join("assets.extra", "midg_export.json")


def serving_input_signature():
    """Named `tf.TensorSpec`s of the signature, in argument order."""
    features = [tf.TensorSpec([None, None, None], tf.float32, name=key) for key in MODALITY_KEYS]
    lengths = [tf.TensorSpec([None], tf.int32, name=f"{key}_length") for key in MODALITY_KEYS]
    return features + lengths


def target_family(run_config: dict) -> str:
    """The label family served predictions use, from a run's `config.json` values.

    Training records it (`data_sources`, see `PreparedData.run_config_json`); a workdir
    written before that is read through `SourceSpec`: --target, else the first --source.
    """
    recorded = run_config.get("data_sources")
    if recorded:
        return recorded["target"]["label_family"]
    target = run_config.get("target", "").strip()
    flag, spec = ("target", target) if target else ("source", run_config["source"].split(",")[0])
    return SourceSpec.parse(spec, flag).family


def find_run(workdir: str, log=print) -> str:
    """The run directory to export: `workdir` itself, or its best `seed_<n>/`.

    With several seeds the run with the lowest SOURCE-VALIDATION MAE (`metrics.json`,
    key `valid`) is chosen; the target test split never takes part in the choice.
    """
    if os.path.exists(os.path.join(workdir, MODEL_FILE)):
        return workdir
    candidates = sorted(
        entry
        for entry in _listdir(workdir)
        if entry.startswith("seed_") and os.path.exists(os.path.join(workdir, entry, MODEL_FILE))
    )
    if not candidates:
        raise FileNotFoundError(
            f"no {MODEL_FILE} in {workdir} (nor in {workdir}/seed_<n>/): train first "
            f"(--mode=train --workdir={workdir})."
        )
    scores = {}
    for entry in candidates:
        metrics_path = os.path.join(workdir, entry, "metrics.json")
        if not os.path.exists(metrics_path):
            raise FileNotFoundError(
                f"{metrics_path} is missing: the seed cannot be ranked by its source validation "
                f"MAE; re-score it with --mode=evaluate and the run's flags."
            )
        with open(metrics_path) as f:
            scores[entry] = float(json.load(f)["valid"]["MAE"])
    best = min(candidates, key=lambda entry: (scores[entry], entry))
    ranking = ", ".join(f"{entry} {scores[entry]:.4f}" for entry in candidates)
    log(
        f"exporting {best}: lowest source-validation MAE ({ranking}); "
        "the test split is not used to choose."
    )
    return os.path.join(workdir, best)


def load_float32_model(path: str) -> SentimentModel:
    """Loads `model.keras` and rebuilds it under the float32 policy with the same weights.

    A model saved under `mixed_float16`/`mixed_bfloat16` keeps that policy in its config;
    serving is float32, so such a model is re-created from its config with `dtype="float32"`
    (a float32 model is returned as loaded).
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        trained = keras.saving.load_model(path)
        if trained.dtype_policy.name == "float32":
            return trained
        config = trained.get_config()
        config["dtype"] = "float32"
        model = type(trained).from_config(config)
        model.build_weights()
        model.set_weights(trained.get_weights())
    finally:
        keras.config.set_dtype_policy(previous)
    return model


def make_serving_function(model: SentimentModel, label_scale: float, pad_dims=False):
    """The `serving_default` function: named tensors in, `sentiment` and `polarity` out.

    `pad_dims` (runs trained with `--harmonize=pad`) zero-pads or truncates each feature
    dim to the model's, as the evaluation pipeline did for the target, instead of
    refusing other dims.
    """

    def serve(text, audio, vision, text_length, audio_length, vision_length):
        features = {"text": text, "audio": audio, "vision": vision}
        lengths = {"text": text_length, "audio": audio_length, "vision": vision_length}
        inputs = {}
        batch_size = None
        for key in model.modalities:
            dim = model.input_dims[key]
            shape = tf.shape(features[key])
            length = lengths[key]
            if batch_size is None:
                batch_size, batch_key = shape[0], key
                # Every modality waits for it: an empty batch otherwise fails inside an encoder.
                not_empty = _check(
                    tf.greater(batch_size, 0),
                    key + ": the batch is empty ({} examples); send at least one",
                    [batch_size],
                )
            checks = [
                not_empty,
                _check(
                    tf.equal(shape[0], batch_size),
                    key + ": batch size {} differs from " + batch_key + "'s {}",
                    [shape[0], batch_size],
                ),
                _check(
                    tf.equal(tf.shape(length)[0], shape[0]),
                    key + "_length: has {} entries for a batch of {}",
                    [tf.shape(length)[0], shape[0]],
                ),
                _check(
                    tf.reduce_all((length >= 1) & (length <= shape[1])),
                    key + "_length: lengths must be in [1, time] = [1, {}], got {}",
                    [shape[1], length],
                ),
            ]
            if not pad_dims:
                checks.append(
                    _check(
                        tf.equal(shape[2], dim),
                        key + ": feature dim is {} but the model takes " + str(dim),
                        [shape[2]],
                    )
                )
            checks.append(_check_values(key, features[key]))
            with tf.control_dependencies(checks):
                sequence = tf.identity(features[key])
            if pad_dims:
                sequence = sequence[:, :, :dim]
                sequence = tf.pad(sequence, [[0, 0], [0, 0], [0, dim - tf.shape(sequence)[2]]])
            inputs[key] = tf.ensure_shape(sequence, [None, None, dim])
            inputs[f"{key}_mask"] = tf.sequence_mask(length, maxlen=shape[1])
        inputs["source_index"] = tf.zeros([batch_size], tf.int32)
        prediction = model(inputs, training=False)["prediction"]
        sentiment = tf.cast(prediction, tf.float32) * label_scale
        finite = _check(
            tf.reduce_all(tf.math.is_finite(sentiment)),
            "sentiment: the model produced a non-finite score {}; no score is returned",
            [sentiment],
        )
        with tf.control_dependencies([finite]):
            sentiment = tf.identity(sentiment)
        return {"sentiment": sentiment, "polarity": tf.cast(sentiment > 0, tf.int32)}

    return serve


def _check_values(key, features):
    """Every feature value finite and within +-MAX_ABS_FEATURE (padding included)."""
    within = tf.abs(features) <= MAX_ABS_FEATURE  # False for NaN and +-inf
    bad = tf.where(tf.logical_not(within))
    first = bad[:1]
    limit = f"{MAX_ABS_FEATURE:g}".replace("e+0", "e").replace("e+", "e")
    return _check(
        tf.reduce_all(within),
        key + ": feature values must be finite and within +-" + limit + "; {} are not, the "
        "first {} at [example, frame, feature] = {}",
        [
            tf.shape(bad)[0],
            tf.reshape(tf.gather_nd(features, first), [-1]),
            tf.reshape(first, [-1]),
        ],
    )


def _check(condition, template, values):
    return tf.debugging.Assert(
        condition, [tf.strings.format(template, values, summarize=8)], name="check_request"
    )


def next_version(export_dir: str) -> int:
    """1 + the highest numeric version under `export_dir` (1 when there is none)."""
    versions = [int(entry) for entry in _listdir(export_dir) if entry.isdigit()]
    return max(versions, default=0) + 1


def _check_free(export_dir, version):
    target = os.path.join(export_dir, str(version))
    if os.path.exists(target):
        raise ConfigError(
            f"--export_version={version}: {target} already exists and versions are never "
            f"overwritten; pass another version, or 0 for the next free one "
            f"({next_version(export_dir)})."
        )
    return target


def export_model(
    model: SentimentModel,
    export_dir: str,
    *,
    label_scale: float,
    version=0,
    pad_dims=False,
    metadata=None,
) -> str:
    """Writes `model` as SavedModel version `version` (0 = next free); returns its path.

    The SavedModel is written to a hidden temporary directory and renamed into place, so
    a TF Serving instance watching `export_dir` never sees a half-written version; an
    existing version is never overwritten.
    """
    version = version or next_version(export_dir)
    target = _check_free(export_dir, version)
    os.makedirs(export_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=export_dir)
    try:
        archive = keras.export.ExportArchive()
        # The model's variables, not the model: `track(model)` also walks every sublayer
        # for lookup tables (this model has none) and traces a default signature of each
        # Sequential head on the way, which doubles the export time. The collection is
        # needed: the gradient-reversal strength is captured by a gradient function only.
        archive.add_variable_collection("model_variables", list(model.variables))
        archive.add_endpoint(
            name=SIGNATURE_NAME,
            fn=make_serving_function(model, label_scale, pad_dims=pad_dims),
            input_signature=serving_input_signature(),
        )
        archive.write_out(staging, verbose=False)
        if metadata is not None:
            os.makedirs(os.path.join(staging, "assets.extra"), exist_ok=True)
            with open(os.path.join(staging, METADATA_FILE), "w") as f:
                json.dump(metadata, f, indent=2, sort_keys=True)
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def export_workdir(config: Config, log=print) -> str:
    """Exports the trained model of `config.workdir` to `config.export_dir`; returns the path.

    Model, sources and target come from the run's own `config.json`, so `--mode=export`
    needs only `--workdir` and `--export_dir` (plus an optional `--export_version`).
    """
    if not config.export_dir:
        raise ConfigError("--mode=export needs --export_dir (the SavedModel root).")
    if config.export_version:
        _check_free(config.export_dir, config.export_version)  # before the slow part
    run_dir = find_run(config.workdir, log=log)
    config_path = os.path.join(run_dir, "config.json")
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"{config_path} is missing: {run_dir} is not a training run.")
    with open(config_path) as f:
        text = f.read()
    trained = Config.from_json(text)
    family = target_family(json.loads(text))
    model = load_float32_model(os.path.join(run_dir, MODEL_FILE))
    metadata = {
        "run_dir": os.path.abspath(run_dir),
        "model": trained.model,
        "source": trained.source,
        "target": trained.target,
        "label_family": family,
        "label_scale": LABEL_SCALE[family],
        "modalities": list(model.modalities),
        "input_dims": dict(model.input_dims),
        "inference_path": getattr(model, "inference_path", "prediction"),
        "harmonize": trained.harmonize,
    }
    path = export_model(
        model,
        config.export_dir,
        label_scale=LABEL_SCALE[family],
        version=config.export_version,
        pad_dims=trained.harmonize == "pad",
        metadata=metadata,
    )
    log(
        f"SavedModel {path}: signature {SIGNATURE_NAME}, modalities {', '.join(model.modalities)}, "
        f"sentiment on the {family} label scale (x{LABEL_SCALE[family]:g})."
    )
    return path


def _listdir(path):
    return os.listdir(path) if os.path.isdir(path) else []
