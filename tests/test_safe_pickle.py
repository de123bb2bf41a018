"""Unpickling MMSA files cannot run code from them: every reader refuses foreign globals.

The malicious files here would create a file when unpickled; each test proves it was not
created and that the one-line `DataError` names the refused global and `--trust_pickle`.
Real layouts still load: numpy 2 pickles of every protocol, numpy 1.x module paths and
Python 2 (latin1) pickles.
"""

import collections
import io
import os
import pathlib
import pickle
import struct
import warnings

import numpy as np
import pytest
import tensorflow_datasets as tfds
from numpy._core.numeric import _frombuffer  # numpy >= 2, as requirements.txt pins

from midg_keras import flags as midg_flags
from midg_keras.config import Config, field_group
from midg_keras.data.errors import DataError
from midg_keras.data.mmsa import load_mmsa_pickle
from midg_keras.data.pipeline import open_source
from midg_keras.data.safe_pickle import load_pickle
from midg_keras.data.sources import load_source
from tests.fake_mmsa import LAYOUTS, make_fake_mmsa, write_pickle
from tests.test_cli import run_cli

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


class _Touch:
    """Unpickles as `pathlib.Path(target).touch()`."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.target),))


class _System:
    """Unpickles as `os.system("touch target")`."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def _evil_file(tmp_path, payload, protocol=pickle.HIGHEST_PROTOCOL, name="evil.pkl"):
    """A valid fake MOSI file carrying `payload` as an extra key of its train split."""
    raw = make_fake_mmsa("mosi_unaligned", sizes=(3, 2, 2))
    raw["train"]["annotations"] = payload
    path = tmp_path / name
    path.write_bytes(pickle.dumps(raw, protocol=protocol))
    return str(path)


def _refusal(call):
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and message.startswith("DataError: ")
    assert "Fix: if you trust this file, pass --trust_pickle" in message
    return message


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("payload", [_Touch, _System])
def test_payload_is_refused_before_it_runs(payload, protocol, tmp_path):
    target = tmp_path / "pwned"
    path = _evil_file(tmp_path, payload(target), protocol)
    message = _refusal(lambda: load_mmsa_pickle(path))
    assert not target.exists()
    assert message.startswith(f"DataError: {path}: refused to unpickle the global ")
    refused = message.split("the global ")[1].split(":")[0]
    if payload is _System:
        assert refused == f"{os.system.__module__}.system"
    elif protocol >= 4:  # names the method itself
        assert refused == "pathlib.Path.touch"
    else:  # `getattr(pathlib.Path, "touch")`, under its Python 2 name below protocol 3
        assert refused == ("__builtin__" if protocol < 3 else "builtins") + ".getattr"


def test_global_is_refused_before_its_module_is_imported(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "side_effect_module.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef run(): pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "imports.pkl"
    path.write_bytes(b"cside_effect_module\nrun\n(tR.")  # protocol 0: run()
    message = _refusal(lambda: load_mmsa_pickle(path))
    assert "the global side_effect_module.run" in message
    assert not marker.exists()


def test_numpy_is_not_allowed_wholesale(tmp_path):
    # numpy.testing runs code strings; only numpy's array and dtype globals are allowed.
    path = tmp_path / "numpy_exec.pkl"
    path.write_bytes(b"cnumpy.testing._private.utils\nrunstring\n(Vpass\n(dtR.")
    message = _refusal(lambda: load_mmsa_pickle(path))
    assert "the global numpy.testing._private.utils.runstring" in message


def test_codecs_encode_is_limited_to_latin1(tmp_path):
    path = tmp_path / "codec.pkl"
    path.write_bytes(b"c_codecs\nencode\n(Vx\nVrot13\ntR.")
    message = _refusal(lambda: load_mmsa_pickle(path))
    assert "refused to unpickle _codecs.encode with encoding 'rot13'" in message


class _Reduce:
    """Unpickles as `function(*args)`."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _dtype_with_state(dtype, **changes):
    """A copy of `dtype` whose pickled state differs as `changes` says (by field index)."""
    tampered = np.dtype(dtype, copy=True)
    state = list(dtype.__reduce__()[2])
    for index, value in changes.items():
        state[int(index[1:])] = value
    tampered.__setstate__(tuple(state))
    return tampered


# Pickles of allowed globals only that would make numpy read raw bytes as object pointers
# (each crashed the interpreter before the restricted unpickler refused them).
@pytest.mark.parametrize(
    "payload, refused",
    [
        pytest.param(
            _Reduce(np.ndarray, (1,), np.dtype("O"), b"A" * 8),
            "a call of numpy.ndarray",
            id="ndarray_over_a_buffer",
        ),
        pytest.param(
            _Reduce(_frombuffer, b"A" * 8, _dtype_with_state(np.dtype("O"), f7=0), (1,), "C"),
            "the state (3, '|', None, None, None, -1, -1, 0) of a numpy dtype",
            id="object_dtype_claiming_no_objects",
        ),
        pytest.param(
            np.zeros(1, dtype=[("a", "O")]),
            "the state (3, '|', None, ('a',), {'a': (dtype('O'), 0)}, 8, 1, 27) of a numpy dtype",
            id="structured_dtype",
        ),
    ],
)
def test_numpy_reconstructors_are_not_given_raw_pointers(payload, refused, tmp_path):
    path = tmp_path / "pointers.pkl"
    path.write_bytes(pickle.dumps({"train": payload}, protocol=2))
    assert f"refused to unpickle {refused}" in _refusal(lambda: load_mmsa_pickle(path))


def test_object_array_state_must_hold_one_object_per_element(tmp_path):
    # numpy 2.4 reads past the end of a list shorter than the shape (a crash).
    data = pickle.dumps({"train": np.array(["a", "b"], dtype=object)}, protocol=2)
    assert data.count(b"K\x01K\x02\x85") == 1  # state (version 1, shape (2,), ...)
    path = tmp_path / "short_list.pkl"
    path.write_bytes(data.replace(b"K\x01K\x02\x85", b"K\x01KW\x85"))  # shape (87,)
    message = _refusal(lambda: load_mmsa_pickle(path))
    assert "the state of a numpy array, which holds list data for 87 objects" in message


def test_corrupt_length_is_a_truncated_file_not_a_memory_error(tmp_path):
    path = tmp_path / "huge.pkl"
    path.write_bytes(b"\x80\x05\x96" + struct.pack("<Q", 2**62) + b".")  # BYTEARRAY8
    with pytest.raises(DataError, match="is truncated or not a pickle"):
        load_mmsa_pickle(path)
    path.write_bytes(b"\x80\x04\x95" + struct.pack("<Q", 2**62) + b".")  # FRAME
    with pytest.raises(DataError, match="is truncated or not a pickle"):
        load_mmsa_pickle(path)


@pytest.mark.parametrize(
    "data, refused",
    [
        (b"\x80\x02cnumpy\nndarray\nK\x01\x85\x81.", "a __new__ of <class 'numpy.ndarray'>"),
        (b"(inumpy\nndarray\n.", "a Python 2 instance of <class 'numpy.ndarray'>"),
        (b"\x80\x02ccollections\nOrderedDict\n)R}b.", "state for a OrderedDict"),
        (b"\x80\x02cnumpy\ndtype\n]\x85R.", "numpy.dtype of a list"),
    ],
    ids=["newobj", "python2_instance", "object_state", "dtype_from_a_list"],
)
def test_opcodes_mmsa_files_never_use_are_refused(data, refused, tmp_path):
    path = tmp_path / "opcodes.pkl"
    path.write_bytes(data)
    assert f"refused to unpickle {refused}" in _refusal(lambda: load_mmsa_pickle(path))


def test_trust_pickle_loads_with_plain_pickle(tmp_path):
    target = tmp_path / "pwned"
    path = _evil_file(tmp_path, _Touch(target))
    splits = load_mmsa_pickle(path, trust_pickle=True)
    assert target.exists() and len(splits["train"]) == 3


def test_pickle_source_refuses_and_trust_pickle_flows_through_the_config(tmp_path):
    target = tmp_path / "pwned"
    path = _evil_file(tmp_path, _Touch(target))
    message = _refusal(lambda: load_source(f"pickle:{path}"))
    assert "the global pathlib.Path.touch" in message and not target.exists()
    open_source(f"pickle:{path}", Config(source=f"pickle:{path}", trust_pickle=True))
    assert target.exists()


def test_builder_refuses_manual_file_and_takes_trust_pickle(tmp_path):
    target = tmp_path / "pwned"
    manual = tmp_path / "manual"
    manual.mkdir()
    raw = make_fake_mmsa("mosi_unaligned", sizes=(3, 2, 2), dims={"text": 768})
    raw["train"]["annotations"] = _Touch(target)
    write_pickle(raw, manual / "unaligned_50.pkl")
    download_config = tfds.download.DownloadConfig(manual_dir=str(manual))

    builder = tfds.builder("mosi/unaligned_50", data_dir=str(tmp_path / "a"))
    message = _refusal(lambda: builder.download_and_prepare(download_config=download_config))
    assert "unaligned_50.pkl: refused to unpickle the global pathlib.Path.touch" in message
    assert not target.exists()

    config = Config(source="mosi/unaligned_50", data_dir=str(tmp_path / "b"))
    config = config.replace(manual_dir=str(manual), trust_pickle=True)
    source = open_source("mosi/unaligned_50", config)
    assert target.exists() and source.num_examples["train"] == 3


def test_inspect_exits_2_naming_the_global_and_creates_nothing(tmp_path):
    target = tmp_path / "pwned"
    path = _evil_file(tmp_path, _System(target))
    result = run_cli("--mode=inspect", f"--source=pickle:{path}")
    assert result.returncode == 2, result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and f"global {os.system.__module__}.system" in error[0]
    assert "--trust_pickle" in error[0]
    assert not target.exists()


def test_trust_pickle_is_a_documented_data_flag():
    assert field_group("trust_pickle") == "data" and Config().trust_pickle is False
    from absl import flags

    flag_values = flags.FlagValues()
    midg_flags.define_flags(flag_values)
    data_help = flag_values.module_help(midg_flags.group_module_name("data"))
    assert "--[no]trust_pickle" in data_help and "plain pickle" in data_help


# ---------------------------------------------------------------- real layouts load


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_and_protocol_loads(layout, protocol, tmp_path):
    raw = make_fake_mmsa(layout, sizes=(3, 2, 2))
    path = tmp_path / "features.pkl"
    path.write_bytes(pickle.dumps(raw, protocol=protocol))
    family = "sims" if layout.startswith("sims") else "mosi"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        splits = load_mmsa_pickle(path, family=family)
    np.testing.assert_array_equal(splits["test"].vision, raw["test"]["vision"].astype(np.float32))


def test_scalars_dtypes_and_containers_load(tmp_path):
    values = {
        "scalars": [np.float32(1.5), np.int64(3), np.bool_(True), np.str_("s")],
        "dtypes": [np.dtype("f4"), np.dtype("O"), np.dtype(">i8"), np.dtype("<U3")],
        "arrays": [np.arange(4.0).reshape(2, 2)[:, ::-1], np.array(["ab"]), np.zeros(0)],
        "containers": [{1, 2}, frozenset([3]), bytearray(b"x"), 1 + 2j, b"\xff", b""],
        "ordered": collections.OrderedDict(b=1, a=2),
    }
    path = tmp_path / "values.pkl"
    for protocol in PROTOCOLS:
        path.write_bytes(pickle.dumps(values, protocol=protocol))
        assert repr(load_pickle(path)) == repr(values)


def _as_numpy1(data):
    """A protocol 0-2 pickle as numpy 1.x writes it: `numpy.core.multiarray` paths."""
    assert b"cnumpy._core.multiarray\n" in data
    return data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


class _Python2Pickler(pickle._Pickler):
    """Writes `bytes` as Python 2 `str` (BINSTRING), as Python 2 numpy array data was."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_str(self, obj):
        size = len(obj)
        if size < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([size]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", size) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str


def test_numpy1_paths_load_without_deprecation_warning(tmp_path):
    raw = make_fake_mmsa("mosi_unaligned", sizes=(3, 2, 2))
    path = tmp_path / "numpy1.pkl"
    path.write_bytes(_as_numpy1(pickle.dumps(raw, protocol=2)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        splits = load_mmsa_pickle(path)
        trusted = load_mmsa_pickle(path, trust_pickle=True)
    np.testing.assert_array_equal(splits["train"].text, raw["train"]["text"])
    np.testing.assert_array_equal(trusted["train"].text, raw["train"]["text"])


def test_python2_latin1_pickle_loads(tmp_path):
    raw = make_fake_mmsa("mosi_unaligned", sizes=(3, 2, 2))
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(raw)
    data = _as_numpy1(buffer.getvalue())
    assert b"_codecs" not in data
    path = tmp_path / "python2.pkl"
    path.write_bytes(data)
    with pytest.raises(UnicodeDecodeError):  # its array bytes are not ASCII
        load_pickle(path)
    splits = load_mmsa_pickle(path)
    np.testing.assert_array_equal(splits["train"].vision, raw["train"]["vision"])
