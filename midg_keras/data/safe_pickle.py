"""Unpickling that cannot run code from the file: MMSA feature files need none.

A pickle names the globals (functions, classes) it calls while loading; plain `pickle.load`
imports and calls whatever a file names, e.g. `os.system`. MMSA and MMSA-FET files hold only
dicts, lists, tuples, strings, bytes, numbers and numpy arrays, whose pickles name a handful
of numpy and builtin globals. `load_pickle` allows exactly those and refuses any other global
with a `DataError` before it is imported, let alone called; `trust=True` is plain pickle.

An allowlist of globals is not enough on its own: numpy's reconstructors trust their
arguments. `numpy.ndarray(shape, object, buffer=b"...")`, or an object dtype whose pickled
state claims it holds no Python objects, makes numpy read raw bytes from the file as object
pointers (a crash, or worse). So the restricted unpickler also refuses calls of
`numpy.ndarray`, `__new__`-style and Python 2 instance opcodes (MMSA pickles use none), state
for anything but arrays and dtypes, and dtype state other than that of a plain dtype (no
structured or datetime dtypes: MMSA files have none). It is the pure-Python unpickler, whose
opcodes can be overridden; for the stock pickle protocols (2 and 4) it is as fast as the C one.

Files written under numpy 1.x name `numpy.core.*`, under numpy 2.x `numpy._core.*`; both load
under either numpy, without numpy 2's deprecation warning for the old path.
"""

import _compat_pickle
import codecs
import importlib
import math
import os
import pickle
import struct

import numpy as np

from midg_keras.data.errors import DataError

TRUST_FIX = (
    "if you trust this file, pass --trust_pickle (trust_pickle=True) to load it with plain "
    "pickle, which can run code from the file"
)
# The numpy package that holds `multiarray` and `numeric` under the installed numpy.
_NUMPY_CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"
_NUMPY_CORE_MODULES = ("numpy.core", "numpy._core")
# `module.name` of every global an MMSA file may name, with numpy core paths as `numpy._core`:
# array and scalar reconstruction (all protocols; `_frombuffer` from protocol 5), dtypes, and
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
    """Unpickles `path`, refusing what MMSA files do not need unless `trust`.

    Args:
        path: the pickle file.
        trust: plain pickle (any global, i.e. any code the file names).
        encoding: how Python 2 `str` objects decode (`latin1` for Python 2 numpy pickles).

    Raises:
        DataError: the file names a global, or builds an object, that is not allowed (the
            message names it).
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        if trust:
            return _NumpyPathUnpickler(f, path, encoding=encoding).load()
        return _RestrictedUnpickler(_BoundedReader(f), path, encoding=encoding).load()


class _BoundedReader:
    """A binary file whose reads never ask for more than it has left.

    A corrupt length field in a pickle then reads as a truncated file instead of making
    Python allocate up to 2**64 bytes (a `MemoryError`, not a `DataError`).
    """

    def __init__(self, file):
        self.file = file
        self.size = os.fstat(file.fileno()).st_size
        self.remaining = self.size - file.tell()

    def _count(self, data):
        self.remaining -= len(data)
        return data

    def read(self, size=-1):
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        return self._count(self.file.read(size))

    def readline(self):
        return self._count(self.file.readline())

    def readinto(self, buffer):
        count = self.file.readinto(memoryview(buffer)[: self.remaining])
        self.remaining -= count
        return count


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


def _resolve(module, name):
    """The object `module.name` names (`module` canonical), under the installed numpy."""
    if module.startswith("numpy._core"):
        module = _NUMPY_CORE + module[len("numpy._core") :]
    return getattr(importlib.import_module(module), name)


class _Refused(pickle.UnpicklingError):
    """A call of an allowed global with arguments MMSA pickles never pass."""


def _latin1_encode(text, encoding):
    """`_codecs.encode` as protocol 0-2 pickles of `bytes` use it: latin1 only."""
    if not isinstance(encoding, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise _Refused(f"_codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


def _empty_bytes():
    """`bytes` as protocol 0-2 pickles of `b""` call it: with no arguments."""
    return b""


def _plain_dtype(spec, align=False, copy=False):
    """`numpy.dtype` as pickles call it: from a type string such as `f4`, `O8` or `U3`."""
    if not isinstance(spec, str):
        raise _Refused(f"numpy.dtype of a {type(spec).__name__}")
    return np.dtype(spec, align, copy)


def _array_state_problem(state):
    """What is wrong with an ndarray's pickled state, or None.

    numpy's `ndarray.__setstate__` does not check an object array's list against its shape
    (a shorter list is read past its end), so both layouts are checked here: a list of one
    object per element, or the raw bytes of every element.
    """
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        return "is not (version, shape, dtype, is_fortran, data)"
    shape, dtype, _, data = state[-4:]
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
        return f"has shape {shape!r}"
    if not isinstance(dtype, np.dtype):
        return f"has dtype {dtype!r}"
    count = math.prod(shape)
    if dtype.hasobject:
        if not isinstance(data, list) or len(data) != count:
            return f"holds {type(data).__name__} data for {count} objects"
    elif not isinstance(data, (bytes, bytearray, str)) or len(data) != count * dtype.itemsize:
        return f"holds {type(data).__name__} data for {count} values of {dtype.itemsize} bytes"
    return None


def _is_plain_dtype_state(dtype, state):
    """`state` is what a plain dtype of `dtype`'s type pickles, in any byte order."""
    reference = np.dtype(dtype.str).__reduce__()[2]
    if not isinstance(state, tuple) or len(state) != len(reference):
        return False
    try:
        return state[1] in ("<", ">", "|", "=") and state[:1] + state[2:] == (
            reference[:1] + reference[2:]
        )
    except (TypeError, ValueError):  # elements that do not compare to a bool
        return False


class _NumpyPathUnpickler(pickle.Unpickler):
    """Plain unpickling, except that numpy core paths resolve to the installed numpy's."""

    def __init__(self, file, path, **kwargs):
        super().__init__(file, **kwargs)
        self.path = path

    def find_class(self, module, name):
        canonical_module, canonical_name = _canonical(module, name)
        if canonical_module.startswith("numpy._core"):
            return _resolve(canonical_module, canonical_name)
        return super().find_class(module, name)


class _RestrictedUnpickler(pickle._Unpickler):
    """Loads only what MMSA files hold; anything else is a `DataError` naming it."""

    dispatch = pickle._Unpickler.dispatch.copy()
    _WRAPPED = {
        "_codecs.encode": _latin1_encode,
        "builtins.bytes": _empty_bytes,
        "numpy.dtype": _plain_dtype,
    }

    def __init__(self, reader, path, **kwargs):
        super().__init__(reader, **kwargs)
        self.reader = reader
        self.path = path

    def refuse(self, what):
        raise DataError(
            f"refused to unpickle {what}: MMSA feature files hold only dicts, lists, strings, "
            "numbers and numpy arrays, and loading this one could run code",
            file=self.path,
            fix=TRUST_FIX,
        )

    def find_class(self, module, name):
        canonical = ".".join(_canonical(module, name))
        if canonical not in ALLOWED_GLOBALS:
            self.refuse(f"the global {module}.{name}")
        return self._WRAPPED.get(canonical) or _resolve(*canonical.rsplit(".", 1))

    def load_reduce(self):
        if self.stack[-2] is np.ndarray:  # pickles name it only as `_reconstruct`'s argument
            self.refuse("a call of numpy.ndarray")
        try:
            super().load_reduce()
        except _Refused as error:
            self.refuse(str(error))

    def load_build(self):
        instance, state = self.stack[-2], self.stack[-1]
        if isinstance(instance, np.dtype):
            if not _is_plain_dtype_state(instance, state):
                self.refuse(f"the state {state!r} of a numpy dtype")
        elif isinstance(instance, np.ndarray):
            problem = _array_state_problem(state)
            if problem:
                self.refuse(f"the state of a numpy array, which {problem}")
        else:
            self.refuse(f"state for a {type(instance).__name__}")
        super().load_build()

    def load_bytearray8(self):
        """As pickle's, but a length beyond the file's size is not allocated first."""
        (size,) = struct.unpack("<Q", self.read(8))
        if size > self.reader.size:
            raise pickle.UnpicklingError("pickle data was truncated")
        data = bytearray(size)
        self.readinto(data)
        self.append(data)

    def load_newobj(self):
        self.refuse(f"a __new__ of {self.stack[-2]!r}")

    def load_newobj_ex(self):
        self.refuse(f"a __new__ of {self.stack[-3]!r}")

    def _instantiate(self, klass, args):
        self.refuse(f"a Python 2 instance of {klass!r}")

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
