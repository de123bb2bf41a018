"""Reader of MMSA `label.csv` files, and the join of their labels with feature files.

The layout is MMSA's (and MMSA-FET's input):
`video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode`. Columns may come
in any order and extra columns (`start`, `end`, ...) are ignored; `text` may be absent
(SIMS v2 label files) and `label_T/A/V` may be empty (MOSI, MOSEI). Clip ids are kept as
written (`0001` stays `0001`), so ids match the features' `"<video>$_$<clip>"`.
"""

import csv
import dataclasses
import os

import numpy as np

from midg_keras.constants import LABEL_SCALE, SPLITS
from midg_keras.data.errors import DataError
from midg_keras.data.mmsa import SplitArrays

REQUIRED_COLUMNS = ("video_id", "clip_id", "label", "mode")
# csv column -> example key of the unimodal label.
UNIMODAL_COLUMNS = {"label_T": "label_t", "label_A": "label_a", "label_V": "label_v"}
# `mode` value -> split name.
MODES = {"train": "train", "valid": "validation", "validation": "validation", "test": "test"}
_EXAMPLES_SHOWN = 3
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclasses.dataclass
class LabelSplit:
    """The rows of one split of a label.csv, in file order.

    Attributes:
        ids: "<video>$_$<clip>" per row.
        labels: (N,) float32 sentiment.
        texts: transcript per row, or None when the csv has no `text` column.
        unimodal_labels: `label_t/a/v` -> (N,) float32 for the columns that are filled.
    """

    ids: list[str]
    labels: np.ndarray
    texts: list[str] | None
    unimodal_labels: dict[str, np.ndarray]

    def __len__(self):
        return len(self.ids)


def read_label_csv(path, family=None, skip_modes=()) -> dict[str, LabelSplit]:
    """Reads an MMSA label.csv into `{"train", "validation", "test"}` -> `LabelSplit`.

    Args:
        path: the csv file.
        family: if given (`mosi`, `mosei`, `sims`), labels outside its range are an error.
        skip_modes: `mode` values whose rows are dropped (e.g. `("none",)` for rows in no
            standard fold); any other mode than train/valid/test is an error.

    Raises:
        DataError: missing file or column, non-numeric or NaN label, unknown mode,
            duplicate id, unimodal labels filled for some rows only, label out of range.

    Example:
        >>> splits = read_label_csv("MOSI/label.csv", family="mosi")
        >>> len(splits["train"]), splits["train"].ids[0]
        (1284, '03bSnISJMiM$_$11')
    """
    path = os.fspath(path)
    if family is not None and family not in LABEL_SCALE:
        raise DataError(
            f"unknown label family {family!r}", file=path, fix="use 'mosi', 'mosei' or 'sims'"
        )
    if not os.path.isfile(path):
        raise DataError("file not found", file=path, fix="check the path of the label.csv")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return _parse(csv.reader(f), path, family, set(skip_modes))
    except UnicodeDecodeError as error:
        raise DataError(
            f"is not UTF-8 text ({error.reason} at byte {error.start})",
            file=path,
            fix="save the csv as UTF-8",
        ) from None
    except csv.Error as error:
        raise DataError(f"is not a valid csv ({error})", file=path, fix="repair the csv") from None


def _parse(reader, path, family, skip_modes):
    header = next(reader, None)
    if not header:
        raise DataError("is empty (no header row)", file=path, fix="write the MMSA header row")
    header = [name.strip() for name in header]
    for column in REQUIRED_COLUMNS:
        if column not in header:
            raise DataError(
                f"missing column (the header has {', '.join(header)})",
                file=path,
                key=column,
                fix="write the MMSA columns video_id,clip_id,text,label,label_T,label_A,"
                "label_V,annotation,mode",
            )
    col = {name: i for i, name in enumerate(header)}
    unimodal_columns = [c for c in UNIMODAL_COLUMNS if c in col]
    rows = {
        split: {"ids": [], "labels": [], "texts": [], "unimodal": [], "lines": []}
        for split in SPLITS
    }
    seen = {}
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue  # blank line
        if len(cells) < len(header):
            raise DataError(
                f"has {len(cells)} fields, the header has {len(header)}",
                file=path,
                sample=f"line {line}",
                fix="quote fields that contain commas",
            )
        sample_id = f"{cells[col['video_id']].strip()}$_${cells[col['clip_id']].strip()}"
        where = f"line {line} (id {sample_id!r})"
        mode = cells[col["mode"]].strip()
        if mode in skip_modes:
            continue
        if mode not in MODES:
            raise DataError(
                f"unknown mode {mode!r}",
                file=path,
                key="mode",
                sample=where,
                fix="use train, valid or test"
                + (f", or drop these rows with skip_modes=({mode!r},)" if mode else ""),
            )
        if sample_id in seen:
            raise DataError(
                f"duplicate id, first on line {seen[sample_id]}",
                file=path,
                key="clip_id",
                sample=where,
                fix="keep one row per clip",
            )
        seen[sample_id] = line
        split = rows[MODES[mode]]
        split["ids"].append(sample_id)
        split["lines"].append(line)
        split["labels"].append(_number(cells[col["label"]], "label", path, where, family))
        if "text" in col:
            split["texts"].append(cells[col["text"]])
        split["unimodal"].append(
            [
                _number(cells[col[c]], c, path, where, family) if cells[col[c]].strip() else None
                for c in unimodal_columns
            ]
        )
    filled = _filled_unimodal_columns(rows, unimodal_columns, path)
    result = {}
    for name, split in rows.items():
        result[name] = LabelSplit(
            ids=split["ids"],
            labels=np.asarray(split["labels"], dtype=np.float32),
            texts=split["texts"] if "text" in col else None,
            unimodal_labels={
                UNIMODAL_COLUMNS[c]: np.asarray(
                    [values[j] for values in split["unimodal"]], dtype=np.float32
                )
                for j, c in enumerate(unimodal_columns)
                if c in filled
            },
        )
    return result


def _number(cell, column, path, where, family):
    try:
        value = float(cell)
    except ValueError:
        raise DataError(
            f"{cell.strip()!r} is not a number",
            file=path,
            key=column,
            sample=where,
            fix="write the label as a number such as -1.2",
        ) from None
    if not abs(value) <= _FLOAT32_MAX:  # NaN, inf, or inf once stored as float32
        raise DataError(
            f"label is {value:g}",
            file=path,
            key=column,
            sample=where,
            fix="fill in the label or drop the row",
        )
    if family is not None and abs(value) > LABEL_SCALE[family] + 1e-5:
        bound = LABEL_SCALE[family]
        raise DataError(
            f"label {value:g} is outside [-{bound:g}, {bound:g}], the range of the assumed "
            f"family {family!r}",
            file=path,
            key=column,
            sample=where,
            fix="name the right family (`@mosi`/`@mosei` for [-3, 3], `@sims` for [-1, 1]) "
            "or correct the label",
        )
    return value


def _filled_unimodal_columns(rows, unimodal_columns, path):
    """Columns filled on every row; a column filled on some rows only is an error."""
    filled = []
    for j, column in enumerate(unimodal_columns):
        empty = [
            (split["lines"][i], split["ids"][i])
            for split in rows.values()
            for i, values in enumerate(split["unimodal"])
            if values[j] is None
        ]
        total = sum(len(split["ids"]) for split in rows.values())
        if not empty:
            filled.append(column)
        elif len(empty) < total:
            line, sample_id = min(empty)
            raise DataError(
                f"empty on {len(empty)} of {total} rows",
                file=path,
                key=column,
                sample=f"line {line} (id {sample_id!r})",
                fix=f"fill {column} on every row, or leave it empty on all rows",
            )
    return filled


def join_label_csv(
    splits: dict[str, SplitArrays],
    csv_path,
    family=None,
    skip_modes=(),
    allow_extra_rows=False,
) -> dict[str, SplitArrays]:
    """Replaces the labels of feature splits by those of a label.csv, matched by id.

    Features keep their order and arrays (nothing is copied); `label` comes from the csv,
    and `raw_text` / `unimodal_labels` too where the csv has them.

    Args:
        splits: `{"train", "validation", "test"}` -> `SplitArrays` (from `load_mmsa_pickle`).
        csv_path: the label.csv.
        family: checks the csv labels against this family's range.
        skip_modes: see `read_label_csv`.
        allow_extra_rows: accept csv rows whose ids have no features (e.g. clips MMSA
            dropped); ids of features missing from the csv are always an error.

    Raises:
        DataError: any error of `read_label_csv`, or ids that differ between the features
            and the csv for a split (with counts and a few of the ids).
    """
    table = read_label_csv(csv_path, family=family, skip_modes=skip_modes)
    csv_split_of = {sample_id: name for name, rows in table.items() for sample_id in rows.ids}
    joined = {}
    for name, arrays in splits.items():
        rows = table[name]
        index = {sample_id: i for i, sample_id in enumerate(rows.ids)}
        missing = [sample_id for sample_id in arrays.ids if sample_id not in index]
        feature_ids = set(arrays.ids)
        extra = [] if allow_extra_rows else [s for s in rows.ids if s not in feature_ids]
        if missing or extra:
            raise _id_mismatch(csv_path, name, missing, extra, csv_split_of, allow_extra_rows)
        order = np.asarray([index[sample_id] for sample_id in arrays.ids], dtype=np.int64)
        joined[name] = dataclasses.replace(
            arrays,
            label=rows.labels[order],
            raw_text=arrays.raw_text if rows.texts is None else [rows.texts[i] for i in order],
            unimodal_labels={key: values[order] for key, values in rows.unimodal_labels.items()}
            or arrays.unimodal_labels,
        )
    return joined


def _id_mismatch(csv_path, split, missing, extra, csv_split_of, allow_extra_rows):
    parts = []
    if missing:
        shown = []
        for sample_id in missing[:_EXAMPLES_SHOWN]:
            other = csv_split_of.get(sample_id)
            shown.append(f"{sample_id!r}" + (f" [in the csv's {other!r} split]" if other else ""))
        parts.append(f"{len(missing)} feature ids are not in the csv (e.g. {', '.join(shown)})")
    if extra:
        shown = ", ".join(repr(sample_id) for sample_id in extra[:_EXAMPLES_SHOWN])
        parts.append(f"{len(extra)} csv ids have no features (e.g. {shown})")
    fix = "use the label.csv of the same dataset and version as the feature file"
    if extra and not missing and not allow_extra_rows:
        fix += ", or allow csv rows without features (allow_extra_rows=True)"
    return DataError("; ".join(parts), file=csv_path, split=split, key="id", fix=fix)
