"""`--flagfile` expansion with paths relative to the flagfile that holds them.

absl opens a nested `--flagfile=PATH` relative to the current directory, so
`configs/mosi_to_mosei.flags` could not include `--flagfile=base.flags` next to it
unless every run starts in `configs/`. `expand_flagfiles` inlines every flagfile before
absl sees the arguments and resolves, relative to the including flagfile's folder:

* nested `--flagfile=` paths;
* the values of flags named in `path_flags` (`--workdir=runs/x` in `configs/a.flags`
  becomes `--workdir=/abs/configs/runs/x`); for data-source flags (`source_flags`,
  comma-separated `<builder>/<config>` or `pickle:PATH[@family]`) only the PATH of the
  `pickle:` items is a path.

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

DATA_SOURCE_FLAGS = frozenset({"source", "target"})

_FLAGFILE_NAMES = ("--flagfile", "-flagfile")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_FAMILY_SUFFIX = re.compile(r"^[A-Za-z0-9_]+$")
_PICKLE_PREFIX = "pickle:"


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


def _resolve_data_source(item, base_dir):
    """Resolves the PATH of `pickle:PATH[@family]`; builder names are returned unchanged."""
    if not item.startswith(_PICKLE_PREFIX):
        return item
    path, at, family = item[len(_PICKLE_PREFIX) :].rpartition("@")
    if not (at and _FAMILY_SUFFIX.match(family)):
        path, family = item[len(_PICKLE_PREFIX) :], ""
    suffix = f"@{family}" if family else ""
    return f"{_PICKLE_PREFIX}{_resolve_path(path, base_dir)}{suffix}"


def _resolve_flag_line(arg, base_dir, path_flags, source_flags):
    match = re.match(r"^(--?)([A-Za-z0-9_.-]+)=(.*)$", arg, flags=re.DOTALL)
    if not match or match.group(2) not in path_flags:
        return arg
    dashes, name, value = match.groups()
    if name in source_flags:
        value = ",".join(_resolve_data_source(item.strip(), base_dir) for item in value.split(","))
    else:
        value = _resolve_path(value, base_dir)
    return f"{dashes}{name}={value}"


def _read_flagfile(written, path, stack, path_flags, source_flags, included_from):
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
                    path_flags,
                    source_flags,
                    f"{path}:{line_number}",
                )
            )
        else:
            expanded.append(_resolve_flag_line(arg, base_dir, path_flags, source_flags))
    return expanded


def expand_flagfiles(argv, path_flags=frozenset(), source_flags=DATA_SOURCE_FLAGS):
    """Replaces every `--flagfile` argument by the flags it holds, recursively.

    Args:
        argv: command-line arguments (sys.argv, with or without the program name).
            Both `--flagfile=PATH` and `--flagfile PATH` are read; PATH is relative to
            the current directory. Nothing after a bare `--` is touched.
        path_flags: names of flags whose values, inside a flagfile, are paths relative
            to that flagfile's folder.
        source_flags: the subset of `path_flags` holding comma-separated data sources,
            where only `pickle:PATH[@family]` items are paths.

    Returns:
        a new argv without `--flagfile`, in order, ready for absl's `FLAGS(argv)`.

    Raises:
        FlagfileError: a flagfile is missing or unreadable (naming the file that
            included it), includes itself, or a `--flagfile` has no path.

    Example:
        configs/mosi.flags holds `--flagfile=common.flags` and `--workdir=../runs/mosi`;
        from any directory, expand_flagfiles(["train.py", "--flagfile=configs/mosi.flags"],
        {"workdir"}) returns ["train.py", <lines of configs/common.flags>,
        "--workdir=<repo>/runs/mosi"].
    """
    path_flags = frozenset(path_flags)
    source_flags = frozenset(source_flags)
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
            _read_flagfile(
                path, os.path.expanduser(path), [], path_flags, source_flags, "the command line"
            )
        )
    return expanded
