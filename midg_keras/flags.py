"""absl flags for `train.py`, generated from `Config` so names, defaults and help agree."""

import dataclasses

from absl import flags

from midg_keras.config import GROUPS, Config, group_fields

_DEFINE_BY_TYPE = {
    bool: flags.DEFINE_bool,
    int: flags.DEFINE_integer,
    float: flags.DEFINE_float,
    str: flags.DEFINE_string,
}

# Input paths given in a flagfile are resolved from the flagfile's own directory
# (docs/design.md §7); outputs (--workdir, --export_dir) stay relative to the current directory.
PATH_FLAGS = frozenset({"data_dir", "manual_dir", "manual_dirs", "source", "target", "label_csv"})
SOURCE_FLAGS = frozenset({"source", "target"})


def flag_groups() -> dict[str, tuple]:
    """Group name -> names of its `Config` fields, both in `Config` order."""
    return {group: group_fields(group) for group in GROUPS}


def group_module_name(group: str) -> str:
    """The name absl files a group's flags under (its heading in `--helpshort`/`--helpfull`)."""
    return f"midg_keras flags: {group}"


def define_flags(flag_values=flags.FLAGS):
    """Defines one flag per `Config` field (idempotent), filed under its group."""
    fields = {f.name: f for f in dataclasses.fields(Config)}
    for group, names in flag_groups().items():
        for name in names:
            if name in flag_values:
                continue
            field = fields[name]
            choices = field.metadata.get("choices")
            define = _DEFINE_BY_TYPE[type(field.default)]
            args = (field.name, field.default)
            if choices:
                define, args = flags.DEFINE_enum, (field.name, field.default, choices)
            define(
                *args,
                f"[{GROUPS[group]}] {field.metadata['help']}",
                flag_values=flag_values,
                module_name=group_module_name(group),
            )


def short_help(flag_values=flags.FLAGS) -> str:
    """The project's flags only, one block per group (what `train.py --helpshort` prints)."""
    return "".join(
        flag_values.module_help(group_module_name(group)) + "\n" for group in flag_groups()
    )


def config_from_flags(flag_values=flags.FLAGS) -> Config:
    values = {f.name: flag_values[f.name].value for f in dataclasses.fields(Config)}
    return Config(**values).validate()
