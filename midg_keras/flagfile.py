"""`--flagfile` expansion with paths relative to the flagfile that holds them.

absl opens a nested `--flagfile=PATH` relative to the current directory, so
`configs/mosi_to_mosei.flags` could not include `--flagfile=base.flags` next to it
unless every run starts in `configs/`. `expand_flagfiles` inlines every flagfile before
absl sees the arguments and resolves, relative to the including flagfile's folder:

* nested `--flagfile=` paths;
* the values of flags named in `path_flags` (`--workdir=runs/x` in `configs/a.flags`
  becomes `--workdir=/abs/configs/runs/x`); for data-source flags (`source_flags`,
  comma-separated `<builder>[/<config>]` or `pickle:PATH[@family]`, parsed by
  `SourceSpec`) only the PATH of the `pickle:` items is a path, and for folder-map flags
  (`folder_map_flags`, `--manual_dirs=mosi=../MOSI,mosei=/data/MOSEI`) each FOLDER is.

Paths on the command line itself stay relative to the current directory, as usual.
Absolute paths, `~` paths and URLs (`gs://...`) are kept. File syntax is absl's: one
argument per line (surrounding spaces stripped), blank lines and lines starting with `#`
or `//` ignored, later flags override earlier ones (order is kept). Unlike absl, a cycle
or an empty `--flagfile=` is an error (absl warns and skips), and an indented comment
line is skipped too (absl would pass it on as an argument).
"""

import os
import re

from absl import flags

from midg_keras.data.errors import DataError
from midg_keras.data.sources import parse_sources

DATA_SOURCE_FLAGS = frozenset({"source", "target"})
FOLDER_MAP_FLAGS = frozenset({"manual_dirs"})

_FLAGFILE_NAMES = ("--flagfile", "-flagfile")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class FlagfileError(flags.Error, ValueError):
    """A flagfile that cannot be read or includes itself; absl's app.run prints it as one line."""


def _flagfile_argument(arg):
    """The path of a `--flagfile=PATH` argument, or None when `arg` is something else."""
    for name in _FLAGFILE_NAMES:
        if arg.startswith(name + "="):
            return arg[len(name) + 1 :].strip()
    return None


def _resolve_path(value, base_dir):
    if not value or _URL.match(value):
        return value
    value = os.path.expanduser(value)
    if os.path.isabs(value):
        return value
    return os.path.normpath(os.path.join(base_dir, value))


def _resolve_data_sources(flag, value, base_dir):
    """Resolves the PATH of each `pickle:PATH[@family]` item; builder names stay as they are."""
    specs = parse_sources(value, flag)
    return ",".join(str(spec.with_path(_resolve_path(spec.path, base_dir))) for spec in specs)


def _resolve_folder_map(value, base_dir):
    """Resolves FOLDER in each `name=FOLDER` item."""
    pairs = (item.strip().partition("=") for item in value.split(",") if item.strip())
    return ",".join(
        f"{name}{equals}{_resolve_path(folder, base_dir)}" for name, equals, folder in pairs
    )


def _resolve_flag_line(arg, base_dir, path_flags, source_flags, folder_map_flags):
    match = re.match(r"^(--?)([A-Za-z0-9_.-]+)=(.*)$", arg, flags=re.DOTALL)
    if not match or match.group(2) not in path_flags:
        return arg
    dashes, name, value = match.groups()
    if name in source_flags:
        value = _resolve_data_sources(name, value, base_dir)
    elif name in folder_map_flags:
        value = _resolve_folder_map(value, base_dir)
    else:
        value = _resolve_path(value, base_dir)
    return f"{dashes}{name}={value}"


def _read_flagfile(written, path, stack, flag_kinds, included_from):
    """The arguments in flagfile `path` (`written` as in the including line), expanded."""
    real_path = os.path.realpath(path)
    if real_path in stack:
        chain = " -> ".join(stack + [real_path])
        raise FlagfileError(f"Flagfile cycle: {chain}. Remove one of these --flagfile lines.")
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.readlines()
    except OSError as error:
        resolved = "" if written == path else f" (resolved to {path!r})"
        raise FlagfileError(
            f"Cannot read flagfile {written!r}{resolved}, included from {included_from}: "
            f"{error.strerror or error}. Nested --flagfile paths are relative to the "
            "including flagfile's folder."
        ) from None
    base_dir = os.path.dirname(os.path.abspath(path))
    stack = stack + [real_path]
    expanded = []
    for line_number, line in enumerate(lines, start=1):
        arg = line.strip()
        if not arg or arg.startswith("#") or arg.startswith("//"):
            continue
        nested = _flagfile_argument(arg)
        if arg in _FLAGFILE_NAMES or nested == "":
            raise FlagfileError(f"{path}:{line_number}: --flagfile needs a path: --flagfile=PATH.")
        if nested is not None:
            expanded.extend(
                _read_flagfile(
                    nested,
                    _resolve_path(nested, base_dir),
                    stack,
                    flag_kinds,
                    f"{path}:{line_number}",
                )
            )
        else:
            try:
                expanded.append(_resolve_flag_line(arg, base_dir, *flag_kinds))
            except DataError as error:
                raise FlagfileError(f"{path}:{line_number}: {error}") from None
    return expanded


def expand_flagfiles(
    argv,
    path_flags=frozenset(),
    source_flags=DATA_SOURCE_FLAGS,
    folder_map_flags=FOLDER_MAP_FLAGS,
):
    """Replaces every `--flagfile` argument by the flags it holds, recursively.

    Args:
        argv: command-line arguments (sys.argv, with or without the program name).
            Both `--flagfile=PATH` and `--flagfile PATH` are read; PATH is relative to
            the current directory. Nothing after a bare `--` is touched.
        path_flags: names of flags whose values, inside a flagfile, are paths relative
            to that flagfile's folder.
        source_flags: the subset of `path_flags` holding comma-separated data sources,
            where only `pickle:PATH[@family]` items are paths.
        folder_map_flags: the subset of `path_flags` holding comma-separated `name=FOLDER`
            items, where each FOLDER is a path.

    Returns:
        a new argv without `--flagfile`, in order, ready for absl's `FLAGS(argv)`.

    Raises:
        FlagfileError: a flagfile is missing or unreadable (naming the file that
            included it), includes itself, a `--flagfile` has no path, or a data source
            in it is malformed (naming the file and line).

    Example:
        configs/mosi.flags holds `--flagfile=common.flags` and `--workdir=../runs/mosi`;
        from any directory, expand_flagfiles(["train.py", "--flagfile=configs/mosi.flags"],
        {"workdir"}) returns ["train.py", <lines of configs/common.flags>,
        "--workdir=<repo>/runs/mosi"].
    """
    flag_kinds = (frozenset(path_flags), frozenset(source_flags), frozenset(folder_map_flags))
    expanded = []
    args = list(argv)
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            expanded.extend(args[index - 1 :])
            break
        if arg in _FLAGFILE_NAMES:
            if index >= len(args):
                raise FlagfileError(f"{arg} with no path: use {arg}=PATH.")
            path = args[index]
            index += 1
        else:
            path = _flagfile_argument(arg)
            if path is None:
                expanded.append(arg)
                continue
        if not path:
            raise FlagfileError(f"{arg!r}: --flagfile needs a path: --flagfile=PATH.")
        expanded.extend(
            _read_flagfile(path, os.path.expanduser(path), [], flag_kinds, "the command line")
        )
    return expanded
