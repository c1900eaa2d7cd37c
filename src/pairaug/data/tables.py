"""Reading the CSV files of real datasets with errors that name the file, row and field."""

from __future__ import annotations

import codecs
import csv
import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from pairaug.errors import InputError


def read_csv(path: str | Path, required: tuple[str, ...] | list[str] = (), **kwargs) -> pd.DataFrame:
    """Read a UTF-8 CSV (plain or .gz) as strings; check required columns are present and it has a data row."""
    path = Path(path)
    if not path.exists():
        raise InputError("CSV file not found", file=path)
    raw = _read_bytes(path)
    # The decoder counts offsets after a BOM; strip it so the error location counts the same bytes.
    raw = raw.removeprefix(codecs.BOM_UTF8)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        row, field = _locate_byte(raw, e.start)
        raise InputError(f"not valid UTF-8 (byte 0x{raw[e.start]:02x}); save the file as UTF-8", file=path,
                         row=row, field=field) from None
    try:
        # index_col=False and ParserWarning as an error: by default pandas silently turns the extra leading
        # fields of a first data row longer than the header into an index, shifting every column (a report
        # with an unquoted comma would become the image path).
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, index_col=False, **kwargs)
    except (pd.errors.ParserError, pd.errors.ParserWarning, pd.errors.EmptyDataError) as e:
        long_row = _first_long_row(text)
        if long_row is not None:
            row, n, n_header = long_row
            raise InputError(f"row has {n} fields but the header has {n_header} (quote fields that contain commas)",
                             file=path, row=row) from None
        raise InputError(f"cannot parse CSV: {' '.join(str(e).split())}", file=path) from None
    for col in required:
        if col not in df.columns:
            raise InputError(f"missing required column '{col}' (has: {', '.join(map(str, df.columns))})",
                             file=path, field=col)
    if df.empty:
        # Said here, where the file is known: downstream it was only "produced no pairs", naming nothing.
        raise InputError("no data rows (only a header)", file=path)
    return df


def _read_bytes(path: Path) -> bytes:
    if path.suffix == ".gz":
        import gzip

        with gzip.open(path, "rb") as f:
            return f.read()
    return path.read_bytes()


def _records(text: str) -> Iterator[list[str]]:
    """CSV records as pandas counts them: quoted newlines stay inside a record, blank lines are skipped."""
    return (r for r in csv.reader(io.StringIO(text, newline="")) if r)


def _first_long_row(text: str) -> tuple[int, int, int] | None:
    """(data row, fields, header fields) of the first record with more fields than the header."""
    records = _records(text)
    n_header = len(next(records, []))
    for i, rec in enumerate(records):
        if len(rec) > n_header:
            return i, len(rec), n_header
    return None


def _locate_byte(raw: bytes, offset: int) -> tuple[int | None, str | None]:
    """The data row (0-based, header excluded) and column holding byte `offset`.

    Parsed as CSV rather than by counting newlines: reports often hold quoted line breaks.
    """
    count, last = 0, []
    for rec in _records(raw[:offset].decode("utf-8", "replace") + "x"):
        count, last = count + 1, rec
    header = next(_records(raw[: 1 << 20].decode("utf-8", "replace")), [])
    col = len(last) - 1
    field = header[col] if 0 <= col < len(header) else None
    return (count - 2 if count >= 2 else None), field


def cell(df: pd.DataFrame, row: int, col: str) -> str:
    value = df.iat[row, df.columns.get_loc(col)]
    return "" if value is None else str(value).strip()
