"""sha256 of input files: MMSA's published values, the builders' check, config.json, inspect."""

import hashlib
import json
import logging
import os
import re

import pytest
import tensorflow_datasets as tfds

from datasets import mmsa_builder
from midg_keras.config import Config
from midg_keras.data import checksums
from midg_keras.data.checksums import file_sha256
from midg_keras.data.inspect import describe_source
from midg_keras.data.pipeline import prepare_data
from midg_keras.data.sources import load_source
from tests.fake_mmsa import make_fake_mmsa, write_pickle
from tests.test_label_csv import _rows_of, _write_csv

# MMSA's README at commit a94e65d ("SHA-256 for feature files"), copied by hand.
PUBLISHED = {
    "MOSI/Processed/unaligned_50.pkl": "78e0f8b5ef8ff71558e7307848fc1fa929ecb078203f565ab22b9daab2e02524",
    "MOSI/Processed/aligned_50.pkl": "d3994fd25681f9c7ad6e9c6596a6fe9b4beb85ff7d478ba978b124139002e5f9",
    "MOSEI/Processed/unaligned_50.pkl": "ad8b23d50557045e7d47959ce6c5b955d8d983f2979c7d9b7b9226f6dd6fec1f",
    "MOSEI/Processed/aligned_50.pkl": "45eccfb748a87c80ecab9bfac29582e7b1466bf6605ff29d3b338a75120bf791",
    "SIMS/Processed/unaligned_39.pkl": "c9e20c13ec0454d98bb9c1e520e490c75146bfa2dfeeea78d84de047dbdd442f",
}  # fmt: skip


def _sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_every_stock_config_checks_the_published_sha256():
    table = {
        config.mmsa_path: config.sha256
        for configs in mmsa_builder.STOCK_CONFIGS.values()
        for config in configs
    }
    assert table == PUBLISHED


def test_file_sha256_streams_and_hashes_each_file_once(tmp_path, monkeypatch):
    monkeypatch.setattr(checksums, "_CHUNK_BYTES", 7)  # many chunks, a partial last one
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(100))
    assert file_sha256(path) == _sha256(path)

    opened = []
    real_open = open
    monkeypatch.setattr(
        "builtins.open", lambda *args, **kwargs: opened.append(args) or real_open(*args, **kwargs)
    )
    expected = _sha256(path)
    file_sha256(str(path))
    assert len(opened) == 1  # cached: only _sha256 opened it
    path.write_bytes(os.urandom(101))  # rewritten: new size and mtime
    assert file_sha256(path) == _sha256(path) != expected and len(opened) == 3


def _manual_mosi(tmp_path):
    manual = tmp_path / "manual"
    raw = make_fake_mmsa("mosi_unaligned", sizes=(3, 2, 2), dims={"text": 768})
    return manual, write_pickle(raw, manual / "unaligned_50.pkl")


def test_builder_warns_once_on_a_checksum_mismatch_and_records_the_sha256(tmp_path, caplog):
    manual, path = _manual_mosi(tmp_path)
    download_config = tfds.download.DownloadConfig(manual_dir=str(manual))
    with caplog.at_level(logging.WARNING, logger=mmsa_builder.__name__):
        for data_dir in ("a", "b"):  # two builds of one file: one warning
            builder = tfds.builder("mosi/unaligned_50", data_dir=str(tmp_path / data_dir))
            builder.download_and_prepare(download_config=download_config)
    warnings = [r.getMessage() for r in caplog.records if "sha256" in r.getMessage()]
    assert len(warnings) == 1
    published = PUBLISHED["MOSI/Processed/unaligned_50.pkl"]
    assert warnings[0].startswith(f"{path}: sha256 {_sha256(path)} is not the {published} ")
    assert mmsa_builder.MMSA_CHECKSUMS_URL in warnings[0] and "MMSA-FET" in warnings[0]

    reloaded = tfds.builder("mosi/unaligned_50", data_dir=str(tmp_path / "a"))
    assert reloaded.info.metadata["source_sha256"] == {os.path.abspath(path): _sha256(path)}
    source = load_source("mosi/unaligned_50", data_dir=str(tmp_path / "a"))
    assert source.input_sha256 == {os.path.abspath(path): _sha256(path)}


def test_builder_is_silent_when_the_file_is_the_published_one(tmp_path, caplog, monkeypatch):
    manual, path = _manual_mosi(tmp_path)
    builder = tfds.builder("mosi/unaligned_50", data_dir=str(tmp_path / "data"))
    monkeypatch.setattr(builder.builder_config, "sha256", _sha256(path))
    with caplog.at_level(logging.WARNING, logger=mmsa_builder.__name__):
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(manual))
        )
    assert not [r for r in caplog.records if "sha256" in r.getMessage()]


@pytest.fixture
def pickle_and_csv(tmp_path):
    raw = make_fake_mmsa("mosi_unaligned", sizes=(4, 2, 2))
    pickle_path = write_pickle(raw, tmp_path / "features.pkl")
    csv_path = _write_csv(tmp_path / "label.csv", _rows_of(raw))
    return pickle_path, csv_path


def test_config_json_records_the_sha256_of_every_input_file(pickle_and_csv, tmp_path):
    pickle_path, csv_path = pickle_and_csv
    target = write_pickle(make_fake_mmsa("mosi_aligned", sizes=(2, 2, 2)), tmp_path / "t.pkl")
    config = Config(source=f"pickle:{pickle_path}", target=f"pickle:{target}", label_csv=csv_path)
    values = json.loads(prepare_data(config.validate()).run_config_json(config))
    assert values["input_sha256"] == {
        path: _sha256(path) for path in (pickle_path, csv_path, target)
    }


def test_inspect_prints_the_sha256_of_each_input_file(pickle_and_csv):
    pickle_path, csv_path = pickle_and_csv
    text = describe_source(load_source(f"pickle:{pickle_path}", label_csv=csv_path))
    lines = [line.split() for line in text.splitlines() if re.match(r"\s+sha256 ", line)]
    assert lines == [["sha256", _sha256(p), p] for p in (pickle_path, csv_path)]
