"""absl flags for `train.py`, generated from `Config` so names, defaults and help agree."""

import dataclasses

from absl import flags

from midg_keras.config import GROUPS, Config, field_group

_DEFINE_BY_TYPE = {
    bool: flags.DEFINE_bool,
    int: flags.DEFINE_integer,
    float: flags.DEFINE_float,
    str: flags.DEFINE_string,
}

# Input paths given in a flagfile are resolved from the flagfile's own directory (SPEC §6);
# outputs (--workdir, --export_dir) stay relative to the current directory.
PATH_FLAGS = frozenset({"data_dir", "manual_dir", "source", "target"})
SOURCE_FLAGS = frozenset({"source", "target"})


def define_flags(flag_values=flags.FLAGS):
    """Defines one flag per `Config` field (idempotent); its help starts with its group."""
    for field in dataclasses.fields(Config):
        if field.name in flag_values:
            continue
        help_text = f"[{GROUPS[field_group(field.name)]}] {field.metadata['help']}"
        choices = field.metadata.get("choices")
        if choices:
            flags.DEFINE_enum(
                field.name, field.default, choices, help_text, flag_values=flag_values
            )
        else:
            _DEFINE_BY_TYPE[type(field.default)](
                field.name, field.default, help_text, flag_values=flag_values
            )


def config_from_flags(flag_values=flags.FLAGS) -> Config:
    values = {f.name: flag_values[f.name].value for f in dataclasses.fields(Config)}
    return Config(**values).validate()
