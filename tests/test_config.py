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
