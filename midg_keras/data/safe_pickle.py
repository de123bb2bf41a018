"""Unpickling that cannot run code from the file: MMSA feature files need none.

A pickle names the globals (functions, classes) it calls while loading; plain `pickle.load`
imports and calls whatever a file names, e.g. `os.system`. MMSA and MMSA-FET files hold only
dicts, lists, tuples, strings, bytes, numbers and numpy arrays, whose pickles name a handful
of numpy and builtin globals. `load_pickle` allows exactly those and refuses any other global
with a `DataError` before it is imported, let alone called; `trust=True` is plain pickle.

Files written under numpy 1.x name `numpy.core.*`, under numpy 2.x `numpy._core.*`; both load
under either numpy, without numpy 2's deprecation warning for the old path.
"""

import _compat_pickle
import codecs
import importlib
import os
import pickle

import numpy as np

from midg_keras.data.errors import DataError

TRUST_FIX = (
    "if you trust this file, pass --trust_pickle (trust_pickle=True) to load it with plain "
    "pickle, which can run code from the file"
)
# The numpy package that holds `multiarray` and `numeric` under the installed numpy.
_NUMPY_CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"
_NUMPY_CORE_MODULES = ("numpy.core", "numpy._core")
# `module.name` of every global an MMSA file may name, with numpy core paths as `numpy._core`.
# Array and scalar reconstruction (all protocols; `_frombuffer` from protocol 5), dtypes, and
# the values pickle itself writes as calls of globals (sets, bytearrays, OrderedDict, complex,
# and below protocol 3 `bytes`: `_codecs.encode(str, "latin1")`, or `bytes()` when empty).
ALLOWED_GLOBALS = frozenset(
    {
        "numpy.ndarray",
        "numpy.dtype",
        "numpy._core.multiarray._reconstruct",
        "numpy._core.multiarray.scalar",
        "numpy._core.numeric._frombuffer",
        "builtins.bytes",
        "builtins.set",
        "builtins.frozenset",
        "builtins.bytearray",
        "builtins.complex",
        "collections.OrderedDict",
        "_codecs.encode",
    }
)


def load_pickle(path, trust=False, encoding="ASCII"):
    """Unpickles `path`, refusing globals outside `ALLOWED_GLOBALS` unless `trust`.

    Args:
        path: the pickle file.
        trust: plain pickle (any global, i.e. any code the file names).
        encoding: how Python 2 `str` objects decode (`latin1` for Python 2 numpy pickles).

    Raises:
        DataError: the file names a global that is not allowed (the message names it).
    """
    path = os.fspath(path)
    unpickler_class = _NumpyPathUnpickler if trust else _RestrictedUnpickler
    with open(path, "rb") as f:
        return unpickler_class(f, path, encoding=encoding).load()


def _canonical(module, name):
    """`module.name` with Python 2 names mapped to Python 3 and numpy core paths to `_core`."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    for core in _NUMPY_CORE_MODULES:
        if module == core or module.startswith(core + "."):
            module = "numpy._core" + module[len(core) :]
            module = module.replace("._multiarray_umath", ".multiarray")
    return module, name


def _latin1_encode(text, encoding):
    """`_codecs.encode` as protocol 0-2 pickles of `bytes` use it: latin1 only."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


def _empty_bytes():
    """`bytes` as protocol 0-2 pickles of `b""` call it: with no arguments."""
    return b""


class _NumpyPathUnpickler(pickle.Unpickler):
    """Plain unpickling, except that numpy core paths resolve to the installed numpy's."""

    def __init__(self, file, path, **kwargs):
        super().__init__(file, **kwargs)
        self.path = path

    def find_class(self, module, name):
        canonical_module, canonical_name = _canonical(module, name)
        if canonical_module.startswith("numpy._core"):
            real_module = _NUMPY_CORE + canonical_module[len("numpy._core") :]
            return getattr(importlib.import_module(real_module), canonical_name)
        return super().find_class(module, name)


class _RestrictedUnpickler(_NumpyPathUnpickler):
    """Refuses every global outside `ALLOWED_GLOBALS` before importing it."""

    def find_class(self, module, name):
        canonical = ".".join(_canonical(module, name))
        if canonical not in ALLOWED_GLOBALS:
            raise DataError(
                f"refused to unpickle the global {module}.{name}: MMSA feature files hold "
                "only dicts, lists, strings, numbers and numpy arrays, and loading this one "
                "could run code",
                file=self.path,
                fix=TRUST_FIX,
            )
        if canonical == "_codecs.encode":
            return _latin1_encode
        if canonical == "builtins.bytes":
            return _empty_bytes
        return super().find_class(module, name)
