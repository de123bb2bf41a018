"""Config validation: bad flag values get one clear message."""

import pytest

from midg_keras.config import Config, ConfigError


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
    assert config.seed_list() == [1, 2, 3]
    assert config.model_list() == ["midg", "erm"]
    assert config.modality_list() == ["t", "v"]
