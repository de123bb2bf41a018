"""Source strings (one grammar, `SourceSpec`), builder lookup, its errors, manual dir per source."""

import json
import os
import subprocess
import sys

import pytest

from midg_keras.config import Config, ConfigError
from midg_keras.data.errors import DataError
from midg_keras.data.pipeline import prepare_data
from midg_keras.data.sources import SourceSpec, load_source, parse_sources, register_builders
from midg_keras.flagfile import FlagfileError, expand_flagfiles
from midg_keras.flags import PATH_FLAGS
from tests.fake_mmsa import STOCK_DIMS, make_fake_mmsa, write_pickle

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    "text, builder, config, path, family",
    [
        ("mosi/unaligned_50", "mosi", "unaligned_50", "", "mosi"),
        ("synthetic", "synthetic", "", "", "mosi"),  # bare name: the builder's default config
        ("sims/unaligned_39", "sims", "unaligned_39", "", "sims"),
        ("pickle:/d/a.pkl@mosei", "", "", "/d/a.pkl", "mosei"),
        ("pickle:/d/a.pkl", "", "", "/d/a.pkl", "mosi"),  # no family: MOSI's scale
        ("pickle:/d/we@ird/a.pkl", "", "", "/d/we@ird/a.pkl", "mosi"),  # `@` inside the path
        ("pickle:/d/a@b.pkl@sims", "", "", "/d/a@b.pkl", "sims"),
        (" pickle:rel/a.pkl@sims ", "", "", "rel/a.pkl", "sims"),
    ],
)
def test_parse_and_format_round_trip(text, builder, config, path, family):
    spec = SourceSpec.parse(text)
    assert (spec.builder, spec.config, spec.path, spec.family) == (builder, config, path, family)
    assert str(spec) == text.strip()
    assert SourceSpec.parse(str(spec)) == spec


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("pickle:/d/a.pkl@imdb", "--target: unknown label family 'imdb'"),
        ("pickle:@sims", "--target: no path in source"),
        ("imdb/plain_text", "--target: unknown source 'imdb/plain_text'"),
        ("mosi/", "--target: unknown source 'mosi/'"),
        ("mosi/unaligned_50/x", "--target: unknown source"),
    ],
)
def test_bad_sources_name_the_flag_and_the_fix(text, fragment):
    with pytest.raises(DataError) as error:
        SourceSpec.parse(text, "target")
    message = str(error.value)
    assert fragment in message and "Fix: " in message and "\n" not in message


def test_a_list_skips_empty_items_and_with_path_leaves_builders_alone():
    specs = parse_sources("mosi/unaligned_50, ,pickle:a.pkl@sims,")
    assert [str(spec.with_path("/abs/a.pkl")) for spec in specs] == [
        "mosi/unaligned_50",
        "pickle:/abs/a.pkl@sims",
    ]


def test_only_builders_with_a_label_family_register():
    class Imdb:
        name = "imdb"

    with pytest.raises(ValueError, match="BUILDER_FAMILY"):
        register_builders(Imdb)


def test_bare_builder_name_opens_its_default_config(tmp_path):
    source = load_source("synthetic", data_dir=str(tmp_path))
    assert source.name == "synthetic" and str(source.spec) == "synthetic/domain_a"
    assert source.family == "mosi"


@pytest.mark.parametrize(
    "text, fragment",
    [
        (
            "synthetic/domain_d",
            "synthetic has no config 'domain_d'; its configs are domain_a, domain_b, domain_c",
        ),
        ("mosi/unaligned50", "Fix: use mosi/unaligned_50"),
    ],
)
def test_unknown_config_lists_the_valid_ones(text, fragment, tmp_path):
    with pytest.raises(DataError, match="unknown source") as error:
        load_source(text, data_dir=str(tmp_path))
    assert fragment in str(error.value)


def test_missing_data_names_the_manual_dir_flags(tmp_path):
    with pytest.raises(DataError) as error:
        load_source("mosei/unaligned_50", data_dir=str(tmp_path), manual_dir=str(tmp_path))
    message = str(error.value)
    assert "--manual_dirs=mosei=DIR" in message and "--manual_dir=DIR" in message
    assert "DownloadConfig" not in message


def test_run_config_records_resolved_sources_and_families(tmp_path):
    path = tmp_path / "a.pkl"
    write_pickle(make_fake_mmsa("sims_unaligned"), path)
    config = Config(source=f"pickle:{path}@sims", target=f"pickle:{path}")
    values = json.loads(prepare_data(config).run_config_json(config))
    assert values["data_sources"] == {
        "source": [{"spec": f"pickle:{path}@sims", "label_family": "sims"}],
        "target": {"spec": f"pickle:{path}", "label_family": "mosi"},
        "targets": [{"spec": f"pickle:{path}", "label_family": "mosi"}],
    }
    assert Config.from_json(json.dumps(values)) == config


# ------------------------------------------------------------ one manual dir per source


def _mmsa_folders(root):
    """MMSA's MOSI and MOSEI files: the same name, different dims, in two folders."""
    for builder, layout in (("mosi", "mosi_unaligned"), ("mosei", "mosei_unaligned")):
        raw = make_fake_mmsa(layout, sizes=(3, 2, 2), dims=STOCK_DIMS[layout])
        write_pickle(raw, root / builder.upper() / "unaligned_50.pkl")
    return root / "MOSI", root / "MOSEI"


def test_config_checks_manual_dirs():
    config = Config(manual_dirs="mosi=/m, mosei=/e").validate()
    assert config.manual_dir_map() == {"mosi": "/m", "mosei": "/e"}
    for bad in ("imdb=/x", "mosi", "mosi="):
        with pytest.raises(ConfigError, match="--manual_dirs"):
            Config(manual_dirs=bad).validate()


def test_mosi_to_mosei_from_two_manual_dirs(tmp_path):
    mosi_dir, mosei_dir = _mmsa_folders(tmp_path)
    config = Config(
        source="mosi/unaligned_50",
        target="mosei/unaligned_50",
        harmonize="pad",
        data_dir=str(tmp_path / "tfds"),
        manual_dirs=f"mosi={mosi_dir},mosei={mosei_dir}",
    )
    data = prepare_data(config)
    assert data.sources[0].dims["audio"] == 5 and data.target.dims["audio"] == 74
    assert (data.sources[0].family, data.target.family) == ("mosi", "mosei")
    # One folder for both (the old way) finds MOSI's file where MOSEI's should be.
    with pytest.raises(DataError, match="does not fit mosei/unaligned_50"):
        prepare_data(
            config.replace(manual_dirs="", manual_dir=str(mosi_dir), data_dir=str(tmp_path / "b"))
        )


def test_flagfile_resolves_manual_dirs_and_names_bad_sources(tmp_path):
    flagfile = tmp_path / "configs" / "x.flags"
    flagfile.parent.mkdir()
    flagfile.write_text("--manual_dirs=mosi=../MOSI, mosei=/data/MOSEI\n--source=mosi\n")
    expanded = expand_flagfiles([f"--flagfile={flagfile}"], PATH_FLAGS)
    assert expanded == [
        f"--manual_dirs=mosi={tmp_path / 'MOSI'},mosei=/data/MOSEI",
        "--source=mosi",
    ]
    flagfile.write_text("--epochs=1\n--target=pickle:a.pkl@imdb\n")
    with pytest.raises(
        FlagfileError, match=r"x.flags:2: DataError: --target: unknown label family"
    ):
        expand_flagfiles([f"--flagfile={flagfile}"], PATH_FLAGS)


def test_cli_inspects_mosi_to_mosei_flagfile_from_two_folders(tmp_path):
    _mmsa_folders(tmp_path)
    flagfile = tmp_path / "mosi_to_mosei.flags"
    flagfile.write_text(
        f"--flagfile={os.path.join(REPO, 'configs', 'mosi_to_mosei.flags')}\n"
        "--manual_dirs=mosi=MOSI,mosei=MOSEI\n"
        "--data_dir=tfds\n"
        "--mode=inspect\n"
    )
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "train.py"), f"--flagfile={flagfile}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "source mosi/unaligned_50 (label family mosi" in result.stdout
    assert "source mosei/unaligned_50 (label family mosei" in result.stdout
