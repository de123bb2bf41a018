"""The one error type for bad input data."""

import re


class DataError(ValueError):
    """Bad input data, reported as one actionable line.

    `str()` names where the problem is and how to fix it, e.g.
    `DataError: /x/a.pkl: split 'train', key 'audio', sample 12: contains NaN. Fix: clean
    the file or pass --nan_to_num.` The parts are also kept as attributes so callers can
    act on them.

    Args:
        message: what is wrong.
        file: path of the offending file.
        split: split name as the file spells it.
        key: key (or csv column) inside the split.
        sample: offending sample: an index, or text such as `12 (id 'abc$_$3')`.
        fix: what the user can do about it.
    """

    def __init__(self, message, *, file=None, split=None, key=None, sample=None, fix=None):
        self.message = message
        self.file = None if file is None else str(file)
        self.split = split
        self.key = key
        self.sample = sample
        self.fix = fix
        super().__init__(self._format())

    def _format(self):
        where = []
        if self.split is not None:
            where.append(f"split {self.split!r}")
        if self.key is not None:
            where.append(f"key {self.key!r}")
        if self.sample is not None:
            where.append(f"sample {self.sample}")
        line = "DataError: "
        if self.file is not None:
            line += f"{self.file}: "
        if where:
            line += ", ".join(where) + ": "
        line += str(self.message).rstrip(".") + "."
        if self.fix:
            line += f" Fix: {str(self.fix).rstrip('.')}."
        return re.sub(r"\s*[\r\n]+\s*", " ", line)

    def __str__(self):
        return self._format()
