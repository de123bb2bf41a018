"""SavedModel export (docs/design.md §10): the CLI, the `serving_default` contract,
fresh-process load, `saved_model_cli show/run`, versions, seed choice, mixed precision and
modality subsets.

The model is built and saved without training (a fit costs ~30 s here); export does not
care how the weights were obtained.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from midg_keras.config import Config, ConfigError
from midg_keras.data.errors import DataError
from midg_keras.export import export_workdir, find_run, next_version
from midg_keras.export.saved_model import target_family
from midg_keras.models import MIDG

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIMS = {"text": 16, "audio": 5, "vision": 20}
STRIDES = {"text": 1, "audio": 2, "vision": 2}
TINY = dict(hidden_dim=16, num_heads=2, num_experts=2)
INPUT_NAMES = ("text", "audio", "vision", "text_length", "audio_length", "vision_length")


def save_run(workdir, dims, config, seed=0, **model_kwargs):
    """A run directory as training leaves it: `model.keras` and `config.json`."""
    keras.utils.set_random_seed(seed)
    model = MIDG(
        input_dims=dims,
        strides={k: STRIDES[k] for k in dims},
        **TINY,
        **model_kwargs,
        name="midg",
    )
    model.build_weights()
    os.makedirs(workdir, exist_ok=True)
    model.save(os.path.join(workdir, "model.keras"))
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json())
    return model


def serving_batch(seed=0, dims=None):
    """Six named serving inputs: ragged lengths, padding filled with noise (must be masked)."""
    rng = np.random.default_rng(seed)
    dims = dims or DIMS
    times = {"text": 7, "audio": 9, "vision": 6}
    lengths = {"text": [7, 3, 1], "audio": [9, 2, 5], "vision": [6, 6, 1]}
    batch = {}
    for key in ("text", "audio", "vision"):
        batch[key] = rng.normal(size=(3, times[key], dims[key])).astype(np.float32)
        batch[f"{key}_length"] = np.asarray(lengths[key], np.int32)
    return batch


def keras_y_out(model, batch):
    """ŷ2 of the Keras model on a serving batch (common label scale)."""
    feed = {"source_index": np.zeros(len(batch["text_length"]), np.int32)}
    for key in model.modalities:
        time = batch[key].shape[1]
        feed[key] = batch[key]
        feed[f"{key}_mask"] = np.arange(time)[None, :] < batch[f"{key}_length"][:, None]
    return np.asarray(model(feed, training=False)["y_out"])


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=REPO, **kwargs)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A MIDG run exported by `train.py --mode=export`, as users run it."""
    root = tmp_path_factory.mktemp("export")
    workdir, export_dir = str(root / "run"), str(root / "exports")
    config = Config(source="pickle:/data/mosi.pkl@mosi", **TINY)
    model = save_run(workdir, DIMS, config)
    result = run(
        [
            sys.executable,
            "train.py",
            "--mode=export",
            f"--workdir={workdir}",
            f"--export_dir={export_dir}",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {"workdir": workdir, "export_dir": export_dir, "model": model, "stdout": result.stdout}


def test_cli_writes_version_1_with_provenance(exported):
    path = os.path.join(exported["export_dir"], "1")
    assert f"exported to {path}" in exported["stdout"]
    assert os.path.exists(os.path.join(path, "saved_model.pb"))
    assert os.path.isdir(os.path.join(path, "variables"))
    assert sorted(os.listdir(exported["export_dir"])) == ["1"]  # no staging leftovers
    with open(os.path.join(path, "assets.extra", "midg_export.json")) as f:
        metadata = json.load(f)
    assert metadata["label_family"] == "mosi" and metadata["label_scale"] == 3.0
    assert metadata["input_dims"] == DIMS and metadata["modalities"] == ["text", "audio", "vision"]
    assert metadata["inference_path"] == "out" and metadata["harmonize"] == "none"


def test_signature_takes_named_dynamic_inputs(exported):
    signature = tf.saved_model.load(os.path.join(exported["export_dir"], "1")).signatures[
        "serving_default"
    ]
    inputs = signature.structured_input_signature[1]
    assert sorted(inputs) == sorted(INPUT_NAMES)
    for key in ("text", "audio", "vision"):
        assert inputs[key].dtype == tf.float32 and inputs[key].shape.as_list() == [None] * 3
        assert inputs[f"{key}_length"].dtype == tf.int32
        assert inputs[f"{key}_length"].shape.as_list() == [None]
    outputs = signature.structured_outputs
    for name, dtype in (("sentiment", tf.float32), ("polarity", tf.int32)):
        assert outputs[name].dtype == dtype and outputs[name].shape.as_list() == [None]


def test_fresh_process_load_matches_keras_y_out(exported, tmp_path):
    batch = serving_batch()
    np.savez(tmp_path / "inputs.npz", **batch)
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        import tensorflow as tf
        serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
        inputs = dict(np.load(sys.argv[2]))
        outputs = serve(**{name: tf.constant(value) for name, value in inputs.items()})
        np.savez(sys.argv[3], **{name: value.numpy() for name, value in outputs.items()})
        assert "midg_keras" not in sys.modules
        """
    )
    path = os.path.join(exported["export_dir"], "1")
    result = run(
        [
            sys.executable,
            "-c",
            script,
            path,
            str(tmp_path / "inputs.npz"),
            str(tmp_path / "outputs.npz"),
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = np.load(tmp_path / "outputs.npz")
    expected = keras_y_out(exported["model"], batch)
    assert outputs["sentiment"].dtype == np.float32 and outputs["polarity"].dtype == np.int32
    np.testing.assert_allclose(outputs["sentiment"] / 3.0, expected, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(outputs["polarity"], (outputs["sentiment"] > 0).astype(np.int32))


def test_saved_model_cli_show_and_run(exported, tmp_path):
    path = os.path.join(exported["export_dir"], "1")
    shown = run(["saved_model_cli", "show", "--dir", path, "--all"])
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert "signature_def['serving_default']" in shown.stdout
    for name in INPUT_NAMES + ("sentiment", "polarity"):
        assert f"['{name}'] tensor_info" in shown.stdout, name
    assert "DT_INT32" in shown.stdout and "DT_FLOAT" in shown.stdout

    batch = serving_batch(seed=1)
    npz = str(tmp_path / "inputs.npz")
    np.savez(npz, **batch)
    outdir = tmp_path / "out"
    ran = run(
        [
            "saved_model_cli",
            "run",
            "--dir",
            path,
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            ";".join(f"{name}={npz}[{name}]" for name in INPUT_NAMES),
            "--outdir",
            str(outdir),
        ]
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    sentiment = np.load(outdir / "sentiment.npy")
    np.testing.assert_allclose(
        sentiment / 3.0, keras_y_out(exported["model"], batch), rtol=0, atol=1e-5
    )
    np.testing.assert_array_equal(np.load(outdir / "polarity.npy"), sentiment > 0)


def test_existing_version_is_never_overwritten(exported):
    before = os.path.getmtime(os.path.join(exported["export_dir"], "1", "saved_model.pb"))
    config = Config(
        workdir=exported["workdir"], export_dir=exported["export_dir"], export_version=1
    )
    with pytest.raises(ConfigError, match=r"already exists .* next free one \(2\)"):
        export_workdir(config, log=lambda _: None)
    assert os.path.getmtime(os.path.join(exported["export_dir"], "1", "saved_model.pb")) == before


def test_export_needs_export_dir_and_a_trained_workdir(tmp_path):
    with pytest.raises(ConfigError, match="--export_dir"):
        export_workdir(Config(workdir=str(tmp_path)))
    config = Config(workdir=str(tmp_path / "empty"), export_dir=str(tmp_path / "e"))
    with pytest.raises(FileNotFoundError, match="train first"):
        export_workdir(config)


def test_next_version_skips_non_numeric_entries(tmp_path):
    assert next_version(str(tmp_path / "missing")) == 1
    for name in ("1", "3", ".tmp-4-abc", "7b"):
        os.makedirs(tmp_path / name)
    assert next_version(str(tmp_path)) == 4


def test_several_seeds_export_the_best_source_validation_mae(tmp_path):
    # seed_2 is better on validation, seed_1 on test: the test split must not decide.
    scores = {"seed_1": (0.9, 0.1), "seed_2": (0.5, 2.0), "seed_3": (0.7, 0.2)}
    for name, (valid, test) in scores.items():
        os.makedirs(tmp_path / name)
        (tmp_path / name / "model.keras").write_bytes(b"")
        (tmp_path / name / "metrics.json").write_text(
            json.dumps({"valid": {"MAE": valid}, "test": {"MAE": test}})
        )
    messages = []
    assert find_run(str(tmp_path), log=messages.append) == str(tmp_path / "seed_2")
    assert "seed_2" in messages[0] and "source-validation MAE" in messages[0]
    assert "test split is not used" in messages[0]


@pytest.mark.parametrize(
    "source, target, family",
    [
        ("pickle:/d/a.pkl@sims", "", "sims"),
        ("pickle:/d/a.pkl", "", "mosi"),
        ("synthetic/domain_a,synthetic/domain_b", "", "mosi"),
        ("mosi/unaligned_50", "sims/unaligned_39", "sims"),
        ("sims/unaligned_39", "pickle:/d/b.pkl@mosei", "mosei"),
    ],
)
def test_label_scale_follows_the_target_in_an_old_config_json(source, target, family):
    """Workdirs written before `data_sources` was recorded: derived through SourceSpec."""
    assert target_family(json.loads(Config(source=source, target=target).to_json())) == family


def test_recorded_label_family_wins_over_the_flags():
    recorded = json.loads(Config(source="pickle:/d/a.pkl").to_json())
    recorded["data_sources"] = {
        "source": [{"spec": "pickle:/d/a.pkl", "label_family": "mosi"}],
        "target": {"spec": "pickle:/d/a.pkl@sims", "label_family": "sims"},
    }
    assert target_family(recorded) == "sims"


def test_unknown_builder_has_no_family():
    with pytest.raises(DataError, match="--target: unknown source 'imdb/plain_text'"):
        target_family(json.loads(Config(target="imdb/plain_text").to_json()))


def test_a_distribution_head_serves_its_median_score(tmp_path):
    workdir, export_dir = str(tmp_path / "run"), str(tmp_path / "exports")
    config = Config(source="pickle:/data/mosi.pkl@mosi", prediction_head="distribution", **TINY)
    model = save_run(workdir, DIMS, config, prediction_head="distribution", head_bins=21)
    path = export_workdir(Config(workdir=workdir, export_dir=export_dir), log=lambda _: None)
    serve = tf.saved_model.load(path).signatures["serving_default"]
    batch = serving_batch(seed=4)
    outputs = serve(**{name: tf.constant(value) for name, value in batch.items()})
    np.testing.assert_allclose(
        outputs["sentiment"].numpy() / 3.0, keras_y_out(model, batch), rtol=0, atol=1e-5
    )


def test_mixed_precision_subset_model_serves_float32_and_ignores_unused_inputs(tmp_path):
    """Trained under mixed_float16 on text+audio, tested on a SIMS-family target whose
    feature dims were harmonized (`--harmonize=pad`): served dims are padded/truncated too."""
    workdir, export_dir = str(tmp_path / "run"), str(tmp_path / "exports")
    dims = {"text": 16, "audio": 5}
    config = Config(
        source="pickle:/d/mosi.pkl@mosi",
        target="pickle:/d/sims.pkl@sims",
        modalities="t,a",
        harmonize="pad",
        mixed_precision="mixed_float16",
        **TINY,
    )
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        mixed = save_run(workdir, dims, config, seed=3)
    finally:
        keras.config.set_dtype_policy(previous)
    path = export_workdir(Config(workdir=workdir, export_dir=export_dir), log=lambda _: None)
    assert keras.config.dtype_policy().name == previous.name
    serve = tf.saved_model.load(path).signatures["serving_default"]

    batch = serving_batch(seed=2)
    outputs = serve(**{name: tf.constant(value) for name, value in batch.items()})
    # Unused vision: any dim, any values, any lengths give the same answer.
    batch["vision"] = np.full((3, 2, 3), 7.0, np.float32)
    batch["vision_length"] = np.asarray([9, 0, -1], np.int32)
    again = serve(**{name: tf.constant(value) for name, value in batch.items()})
    np.testing.assert_array_equal(outputs["sentiment"].numpy(), again["sentiment"].numpy())

    # The same weights in a model built under float32 (sims label scale is 1).
    reference = MIDG(input_dims=dims, strides={k: STRIDES[k] for k in dims}, **TINY)
    reference.build_weights()
    reference.set_weights(mixed.get_weights())
    expected = keras_y_out(reference, batch)
    np.testing.assert_allclose(outputs["sentiment"].numpy(), expected, rtol=0, atol=1e-5)
    # ... and the comparison can tell float16 serving from float32 serving.
    assert np.max(np.abs(keras_y_out(mixed, batch) - expected)) > 1e-4

    # Target-domain dims: audio with 7 features is truncated to 5, text with 12 padded to 16.
    wide = dict(batch, audio=np.concatenate([batch["audio"], np.ones((3, 9, 2), np.float32)], -1))
    wide["text"] = batch["text"][:, :, :12]
    served = serve(**{name: tf.constant(value) for name, value in wide.items()})
    narrowed = dict(batch, text=np.pad(wide["text"], [(0, 0), (0, 0), (0, 4)]))
    np.testing.assert_allclose(
        served["sentiment"].numpy(), keras_y_out(reference, narrowed), rtol=0, atol=1e-5
    )
