"""`--flagfile` expansion: nesting, paths relative to the flagfile, clear errors."""

import os

import pytest
from absl import flags

from midg_keras.flagfile import FlagfileError, expand_flagfiles

PATH_FLAGS = {"workdir", "data_dir", "manual_dir", "export_dir", "source", "target"}


def _write(path, *lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def configs(tmp_path, monkeypatch):
    """configs/exp.flags includes configs/base/common.flags; the CWD is elsewhere."""
    _write(
        tmp_path / "configs/base/common.flags",
        "# shared settings",
        "// another comment style",
        "",
        "--epochs=3",
        "--workdir=../../runs/common",
        "   --manual_dir=mmsa  ",
    )
    _write(
        tmp_path / "configs/exp.flags",
        "--flagfile=base/common.flags",
        "--epochs=5",
        "--source=mosi/unaligned_50,pickle:data/x.pkl@sims,pickle:we@ird/y.pkl",
        "--target=pickle:../t.pkl",
        "--data_dir=/abs/tfds",
        "--export_dir=gs://bucket/export",
        "--workdir=",
        "--batch_size=16",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return tmp_path


def test_nested_flagfiles_resolve_paths_from_their_own_folder(configs):
    argv = ["train.py", "--flagfile=../configs/exp.flags", "--workdir=rel/run", "--epochs=7"]
    expanded = expand_flagfiles(argv, PATH_FLAGS)
    assert expanded == [
        "train.py",
        "--epochs=3",
        f"--workdir={configs / 'runs/common'}",
        f"--manual_dir={configs / 'configs/base/mmsa'}",
        "--epochs=5",
        f"--source=mosi/unaligned_50,pickle:{configs / 'configs/data/x.pkl'}@sims,"
        f"pickle:{configs / 'configs/we@ird/y.pkl'}",
        f"--target=pickle:{configs / 't.pkl'}",
        "--data_dir=/abs/tfds",
        "--export_dir=gs://bucket/export",
        "--workdir=",
        "--batch_size=16",
        "--workdir=rel/run",  # command-line paths stay relative to the CWD
        "--epochs=7",
    ]


def test_later_flags_win_when_absl_parses_the_result(configs):
    flag_values = flags.FlagValues()
    flags.DEFINE_integer("epochs", 1, "", flag_values=flag_values)
    flags.DEFINE_integer("batch_size", 1, "", flag_values=flag_values)
    for name in PATH_FLAGS:
        flags.DEFINE_string(name, "", "", flag_values=flag_values)
    flag_values(expand_flagfiles(["train.py", "--flagfile", "../configs/exp.flags"], PATH_FLAGS))
    assert flag_values.epochs == 5  # exp.flags' 5 comes after common.flags' 3
    assert flag_values.workdir == ""  # the later empty value overrides
    assert flag_values.manual_dir == os.path.join(configs, "configs", "base", "mmsa")


def test_absl_alone_resolves_nested_flagfiles_from_the_cwd(configs):
    # The pitfall this module exists for (docs/design.md §11): absl cannot find base/common.flags.
    flag_values = flags.FlagValues()
    flags.DEFINE_integer("epochs", 1, "", flag_values=flag_values)
    with pytest.raises(flags.CantOpenFlagFileError):
        flag_values(["train.py", "--flagfile=../configs/exp.flags"])


def test_cycle_is_an_error_naming_the_chain(tmp_path):
    _write(tmp_path / "a.flags", "--epochs=1", "--flagfile=sub/b.flags")
    _write(tmp_path / "sub/b.flags", "--flagfile=../a.flags")
    with pytest.raises(FlagfileError, match=r"cycle: .*a\.flags -> .*b\.flags -> .*a\.flags"):
        expand_flagfiles([f"--flagfile={tmp_path / 'a.flags'}"])


def test_missing_nested_flagfile_names_the_including_file_and_line(tmp_path):
    _write(tmp_path / "a.flags", "# header", "--flagfile=missing.flags")
    message = r"'missing.flags' \(resolved to .*/missing.flags'\), included from .*a\.flags:2:"
    with pytest.raises(FlagfileError, match=message):
        expand_flagfiles([f"--flagfile={tmp_path / 'a.flags'}"])


def test_missing_top_level_flagfile_and_empty_paths(tmp_path):
    with pytest.raises(FlagfileError, match="nope.flags.*command line"):
        expand_flagfiles([f"--flagfile={tmp_path / 'nope.flags'}"])
    with pytest.raises(FlagfileError, match="needs a path"):
        expand_flagfiles(["--flagfile="])
    with pytest.raises(FlagfileError, match="no path"):
        expand_flagfiles(["train.py", "--flagfile"])
    _write(tmp_path / "a.flags", "--flagfile=")
    with pytest.raises(FlagfileError, match=r"a\.flags:1: --flagfile needs a path"):
        expand_flagfiles([f"-flagfile={tmp_path / 'a.flags'}"])


def test_nothing_after_double_dash_is_expanded(tmp_path):
    _write(tmp_path / "a.flags", "--epochs=2")
    argv = [f"--flagfile={tmp_path / 'a.flags'}", "--", f"--flagfile={tmp_path / 'a.flags'}"]
    assert expand_flagfiles(argv) == ["--epochs=2", "--", f"--flagfile={tmp_path / 'a.flags'}"]


def test_flagfile_error_is_an_absl_flags_error():
    # absl's app.run reports flags.Error as one line instead of a traceback.
    assert issubclass(FlagfileError, flags.Error)


def test_train_py_resolves_label_csv_and_several_targets_from_the_flagfile(tmp_path):
    from midg_keras import flags as midg_flags

    _write(
        tmp_path / "configs/run.flags",
        "--source=pickle:data/mosi.pkl",
        "--label_csv=data/label.csv",
        "--target=pickle:data/mosi.pkl,mosei/unaligned_50,pickle:../sims.pkl@sims",
    )
    expanded = expand_flagfiles(
        [f"--flagfile={tmp_path / 'configs/run.flags'}"],
        path_flags=midg_flags.PATH_FLAGS,
        source_flags=midg_flags.SOURCE_FLAGS,
    )
    data = tmp_path / "configs/data"
    assert expanded == [
        f"--source=pickle:{data / 'mosi.pkl'}",
        f"--label_csv={data / 'label.csv'}",
        f"--target=pickle:{data / 'mosi.pkl'},mosei/unaligned_50,pickle:{tmp_path / 'sims.pkl'}@sims",
    ]
