"""Config validation: bad flag values get one clear message."""

import dataclasses
import inspect

import pytest

from midg_keras.config import GROUPS, Config, ConfigError, field_group, group_fields
from midg_keras.models import MIDG, LateFusionBaseline, SentimentModel


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"modalities": "t,x"}, "--modalities"),
        ({"modalities": ""}, "--modalities"),
        ({"av_stride": "0"}, "--av_stride"),
        ({"hidden_dim": 30, "num_heads": 4}, "divisible"),
        ({"router_top_k": 5, "num_experts": 4}, "--router_top_k"),
        ({"seeds": "1,x"}, "--seeds"),
        ({"baselines": "mult"}, "--baselines"),
        ({"epochs": 0}, "--epochs"),
        ({"harmonize": "crop"}, "--harmonize"),
        ({"domain_labels": "source"}, "several"),
        ({"shift_crop": 1.0}, "--shift_crop"),
        ({"shift_channel_drop": -0.1}, "--shift_channel_drop"),
        ({"shift_stats": -1.0}, "--shift_stats"),
        ({"consistency_weight": -1.0}, "--consistency_weight"),
        ({"consistency": "l2"}, "--consistency"),
        ({"decouple": "cross"}, "--decouple"),
        ({"token_dropout": 1.0}, "--token_dropout"),
        ({"ema_momentum": -0.1}, "--ema_momentum"),
        ({"ema_momentum": 1.0}, "--ema_momentum"),
        ({"warmup_epochs": 31.0, "epochs": 30}, "--warmup_epochs"),
        ({"lr_schedule": "linear"}, "--lr_schedule"),
    ],
)
def test_bad_values_are_rejected(changes, message):
    with pytest.raises(ConfigError, match=message):
        Config(**changes).validate()


def test_json_round_trip_and_lists():
    config = Config(seeds="1, 2,3", baselines="erm,midg", modalities="t,v")
    assert Config.from_json(config.to_json()) == config
    data_flags = Config(
        source="pickle:/d/mosi.pkl",
        target="pickle:/d/mosi.pkl,mosei/unaligned_50,sims",
        label_csv="/d/label.csv",
    )
    assert Config.from_json(data_flags.to_json()) == data_flags
    assert config.seed_list() == [1, 2, 3]
    assert config.model_list() == ["midg", "erm"]
    assert config.modality_list() == ["t", "v"]


DG_FLAGS = dict(
    baselines="erm,erm_shift",
    shift_crop=0.25,
    shift_frame_drop=0.1,
    shift_channel_drop=0.3,
    shift_stats=0.5,
    adv_weight=0.2,
    consistency_weight=0.7,
    consistency="vrex",
    decouple="cross_kl_recon_club",
)


def test_dg_flags_round_trip_through_absl_flags_and_config_json():
    from absl import flags as absl_flags

    from midg_keras import flags as midg_flags

    flag_values = absl_flags.FlagValues()
    midg_flags.define_flags(flag_values)
    flag_values([
        "train.py",
        *(f"--{name}={value}" for name, value in DG_FLAGS.items()),
    ])  # fmt: skip
    config = midg_flags.config_from_flags(flag_values)
    assert {name: getattr(config, name) for name in DG_FLAGS} == DG_FLAGS
    assert Config.from_json(config.to_json()) == config
    assert config.model_list() == ["midg", "erm", "erm_shift"]


def test_validate_parses_the_list_flags_once():
    config = Config(seeds="4,5", baselines="erm", modalities="v,t").validate()
    assert config.parsed_lists() is config.parsed_lists()
    assert config.parsed_lists().seeds == (4, 5)
    assert config.parsed_lists().modalities == ("v", "t")
    assert Config(seed=7).seed_list() == [7]


def test_every_field_has_a_group_and_groups_are_contiguous():
    names = [f.name for f in dataclasses.fields(Config)]
    groups = [field_group(name) for name in names]
    assert set(groups) == set(GROUPS)
    # Each group is one run of fields, in the order of GROUPS.
    runs = [g for i, g in enumerate(groups) if i == 0 or groups[i - 1] != g]
    assert runs == list(GROUPS)
    assert field_group("hidden_dim") == "model" and field_group("manual_dir") == "data"
    assert "learning_rate" in Config().group_values("training")


@pytest.mark.parametrize("model_class", [MIDG, LateFusionBaseline])
def test_model_hyperparameters_are_model_flags_and_constructor_arguments(model_class):
    model_flags = set(group_fields("model"))
    assert set(model_class.HYPERPARAMETERS) <= model_flags
    arguments = set(inspect.signature(model_class.__init__).parameters)
    arguments |= set(inspect.signature(SentimentModel.__init__).parameters)
    assert set(model_class.HYPERPARAMETERS) <= arguments
    model = model_class(input_dims={"text": 4}, strides={"text": 1})
    config = model.get_config()
    assert all(config[name] == getattr(Config(), name) for name in model_class.HYPERPARAMETERS)
    with pytest.raises(ValueError, match="model group"):
        Config().model_settings(("learning_rate",))
