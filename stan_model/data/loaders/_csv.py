"""Strict CSV reading shared by the public-dataset loaders.

Reading (:func:`read_csv`) is strict because a loader that guesses turns a damaged download into
a silently wrong training set. Every problem a user can cause raises :class:`LoaderError`, whose
message names the file, the column and/or the row, and says what to do.

Row numbers follow one convention everywhere: the header is row 0 and data rows count from 1, so
data row ``N`` is line ``N + 1`` of the file. Blank lines count as rows (a blank line in the middle
of a file is reported as a row with empty values), which keeps the numbers equal to line numbers
minus one.

The fast path reads the required columns straight into their types with ``pyarrow.csv``. Only
when that fails does the reader go back to locate the first bad row, so a clean multi-million-row
file is parsed once.
"""

from __future__ import annotations

import contextlib
import csv
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

log = logging.getLogger(__name__)

INT = pa.int64()
FLOAT = pa.float64()
STR = pa.string()


class LoaderError(ValueError):
    """A source file cannot be mapped into the raw-data contract; the message says where and why."""


# --------------------------------------------------------------------------------------------
# Strict CSV reading
# --------------------------------------------------------------------------------------------


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a file, else a LoaderError saying what the file is and where to get it."""
    if not path.is_file():
        raise LoaderError(f"{path}: file not found; {what}")
    return path


def read_header(path: Path) -> list[str]:
    """The column names on the first line of ``path`` (a UTF-8 BOM is dropped)."""
    with path.open("rb") as fh:
        first = fh.readline()
    if not first.strip():
        raise LoaderError(
            f"{path}: the file is empty or its first line is blank; expected a header line"
        )
    line = first.decode("utf-8-sig", errors="replace").rstrip("\r\n")
    return next(csv.reader([line]))


def require_columns(path: Path, header: Sequence[str], required: Sequence[str]) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        raise LoaderError(
            f"{path}: missing required column(s) {missing}; found {list(header)}. "
            "Use the file as released upstream (its header names every column)."
        )


def read_csv(path: Path, columns: Mapping[str, pa.DataType]) -> pa.Table:
    """Read ``columns`` (name -> int64, float64 or string) of the headered CSV at ``path``.

    Other columns may be present; they are split into fields (so a row with the wrong number of
    fields is still an error) but not converted. Numeric columns must hold a value on every row,
    and float columns a finite one; a file with no data rows is an error. Returns the columns in
    the order given.
    """
    header = read_header(path)
    require_columns(path, header, list(columns))
    try:
        table, bad_row = _parse(path, columns)
    except pa.ArrowInvalid as exc:
        # A value did not convert. Re-read everything as text (which cannot fail to convert)
        # to find the first offending row, or the malformed row that may have come first.
        table, bad_row = _parse(path, {name: STR for name in columns}, as_text=True)
        if bad_row is None:
            raise _conversion_error(path, table, columns, exc) from exc
    if bad_row is not None:
        raise _malformed_row_error(path, bad_row, len(header))
    if table.num_rows == 0:
        raise LoaderError(f"{path}: no data rows below the header; is the download complete?")
    table = table.select(list(columns))
    _check_present_and_finite(path, table, columns)
    log.info("read %s: %d rows", path, table.num_rows)
    return table


def _parse(
    path: Path,
    columns: Mapping[str, pa.DataType],
    as_text: bool = False,
) -> tuple[pa.Table, pacsv.InvalidRow | None]:
    """One pyarrow.csv pass; returns the table and the first malformed row seen (or None).

    ``as_text``: ``columns`` are all strings, so a failure is not about values but about the
    file itself, and becomes a LoaderError.
    """
    bad: list[pacsv.InvalidRow] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        bad.append(row)
        return "skip"  # keep going; the caller raises on the first one once parsing is done

    try:
        table = pacsv.read_csv(path, **_options(columns, on_invalid, use_threads=True))
    except pa.ArrowInvalid as exc:
        if as_text:  # even text would not parse (bad UTF-8, broken quoting)
            raise LoaderError(f"{path}: not readable as CSV text: {exc}") from exc
        raise
    if not bad:
        return table, None
    first = _first_invalid_row(path, columns, bad)
    return table, first


def _options(
    columns: Mapping[str, pa.DataType],
    on_invalid: Callable[[pacsv.InvalidRow], str],
    use_threads: bool,
) -> dict[str, object]:
    return {
        "read_options": pacsv.ReadOptions(use_threads=use_threads),
        # Blank lines stay rows so that table index + 1 is always the data row number.
        "parse_options": pacsv.ParseOptions(
            invalid_row_handler=on_invalid, ignore_empty_lines=False
        ),
        "convert_options": pacsv.ConvertOptions(
            include_columns=list(columns),
            column_types=dict(columns),
            null_values=[""],  # only an empty field is missing; "NA", "nan"... are bad values
            strings_can_be_null=False,
        ),
    }


def _first_invalid_row(
    path: Path, columns: Mapping[str, pa.DataType], seen: list[pacsv.InvalidRow]
) -> pacsv.InvalidRow:
    """The malformed row with the lowest line number.

    Threaded parsing does not know line numbers, so when they are missing the file is parsed
    again on one thread, stopping at the first malformed row (error path only).
    """
    if all(row.number is not None for row in seen):
        return min(seen, key=lambda row: row.number)
    first: list[pacsv.InvalidRow] = []

    def stop(row: pacsv.InvalidRow) -> str:
        first.append(row)
        return "error"

    with contextlib.suppress(pa.ArrowInvalid):  # raised because stop() said "error"
        pacsv.read_csv(path, **_options({c: STR for c in columns}, stop, use_threads=False))
    return first[0] if first else seen[0]


def _malformed_row_error(path: Path, row: pacsv.InvalidRow, n_header: int) -> LoaderError:
    where = f"row {row.number - 1}" if row.number is not None else "a row"
    text = row.text if len(row.text) <= 80 else row.text[:77] + "..."
    return LoaderError(
        f"{path}: {where} has {row.actual_columns} field(s) but the header has {n_header} "
        f"(row text: {text!r}). Fix that row's separators or quoting, or delete it "
        "(rows count from 1 after the header)."
    )


def _conversion_error(
    path: Path, text: pa.Table, columns: Mapping[str, pa.DataType], exc: Exception
) -> LoaderError:
    """Point at the earliest cell that did not convert to its column's type."""
    hits = []
    for name, typ in columns.items():
        if typ == STR:
            continue
        index = _first_unconvertible(text.column(name), typ)
        if index is not None:
            hits.append((index, name, typ))
    if not hits:  # pyarrow refused something its cast kernel accepts: pass its words on
        return LoaderError(f"{path}: a value did not convert ({exc}); fix it and reload")
    index, name, typ = min(hits, key=lambda hit: hit[0])
    value = text.column(name)[index].as_py()
    kind = "an integer" if pa.types.is_integer(typ) else "a number"
    return LoaderError(
        f"{path}: row {index + 1}, column '{name}': value {value!r} is not {kind}. "
        "Fix the value or delete the row (rows count from 1 after the header)."
    )


def _first_unconvertible(strings: pa.ChunkedArray, typ: pa.DataType) -> int | None:
    """Index of the first string that does not cast to ``typ``: bisection over slices.

    Empty strings are left to the missing-value check (the typed read accepts them as null).
    """
    arr = pc.utf8_trim_whitespace(strings.combine_chunks())  # the CSV reader trims too
    arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, STR), arr)

    def fails(lo: int, hi: int) -> bool:
        try:
            pc.cast(arr.slice(lo, hi - lo), typ)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return True
        return False

    lo, hi = 0, len(arr)
    if hi == 0 or not fails(lo, hi):
        return None
    while hi - lo > 1:  # invariant: the first failure lies in [lo, hi)
        mid = (lo + hi) // 2
        if fails(lo, mid):
            hi = mid
        else:
            lo = mid
    return lo


def _check_present_and_finite(
    path: Path, table: pa.Table, columns: Mapping[str, pa.DataType]
) -> None:
    for name, typ in columns.items():
        if typ == STR:
            continue
        col = table.column(name)
        if col.null_count:
            index = first_true(pc.is_null(col))
            raise LoaderError(
                f"{path}: row {index + 1}, column '{name}': empty value; every row needs a value "
                "here. Fill it in or delete the row (a blank line also counts as a row)."
            )
        if typ == FLOAT:
            check(path, table, name, pc.invert(pc.is_finite(col)), "is not a finite number")


# --------------------------------------------------------------------------------------------
# Value checks on a read table (row number = index + 1)
# --------------------------------------------------------------------------------------------


def first_true(mask: pa.Array | pa.ChunkedArray) -> int | None:
    """Index of the first True in ``mask`` (nulls count as False), or None."""
    index = pc.index(pc.fill_null(mask, False), True).as_py()
    return None if index < 0 else index


def check(path: Path, table: pa.Table, column: str, bad: pa.ChunkedArray, problem: str) -> None:
    """Raise for the first row where ``bad`` is True, quoting that row's value of ``column``."""
    index = first_true(bad)
    if index is not None:
        value = table.column(column)[index].as_py()
        raise LoaderError(
            f"{path}: row {index + 1}, column '{column}': value {value!r} {problem}. "
            "Fix the value or delete the row (rows count from 1 after the header)."
        )


def check_range(
    path: Path, table: pa.Table, column: str, lo: float, hi: float, meaning: str
) -> None:
    """Every value of ``column`` within [lo, hi]; ``meaning`` says what the column holds."""
    col = table.column(column)
    outside = pc.or_(pc.less(col, lo), pc.greater(col, hi))
    expected = f">= {lo}" if hi == float("inf") else f"from {lo} to {hi}"
    check(path, table, column, outside, f"is out of range: expected {expected} ({meaning})")


def check_binary(path: Path, table: pa.Table, column: str) -> None:
    col = table.column(column)
    check(
        path, table, column, pc.invert(pc.is_in(col, pa.array([0, 1], INT))), "is not a 0/1 label"
    )


def check_pattern(path: Path, table: pa.Table, column: str, regex: str, meaning: str) -> None:
    col = table.column(column)
    check(
        path,
        table,
        column,
        pc.invert(pc.match_substring_regex(col, regex)),
        f"does not look like {meaning}",
    )


def check_unique(path: Path, table: pa.Table, column: str) -> None:
    """Each value of ``column`` on one row only; names the first repeat's row."""
    values = table.column(column).to_numpy()
    order = np.argsort(values, kind="stable")
    repeats = order[1:][values[order][1:] == values[order][:-1]]
    if len(repeats):
        index = int(repeats.min())
        raise LoaderError(
            f"{path}: row {index + 1}, column '{column}': value {int(values[index])} appears on an "
            "earlier row too; each must appear once. Delete the duplicate row."
        )
