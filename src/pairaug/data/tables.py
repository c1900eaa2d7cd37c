"""Reading the CSV files of real datasets with errors that name the file, row and field."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from pairaug.errors import InputError


def read_csv(path: str | Path, required: tuple[str, ...] | list[str] = (), **kwargs) -> pd.DataFrame:
    """Read a UTF-8 CSV (plain or .gz) as strings; check required columns are present."""
    path = Path(path)
    if not path.exists():
        raise InputError("CSV file not found", file=path)
    raw = _read_bytes(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        row, field = _locate_byte(raw, e.start)
        raise InputError(f"not valid UTF-8 (byte 0x{raw[e.start]:02x}); save the file as UTF-8", file=path,
                         row=row, field=field) from None
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise InputError(f"cannot parse CSV: {e}", file=path) from None
    for col in required:
        if col not in df.columns:
            raise InputError(f"missing required column '{col}' (has: {', '.join(map(str, df.columns))})",
                             file=path, field=col)
    return df


def _read_bytes(path: Path) -> bytes:
    if path.suffix == ".gz":
        import gzip

        with gzip.open(path, "rb") as f:
            return f.read()
    return path.read_bytes()


def _locate_byte(raw: bytes, offset: int) -> tuple[int | None, str | None]:
    """The data row (0-based, header excluded) and column holding byte `offset`."""
    line_start = raw.rfind(b"\n", 0, offset) + 1
    line_no = raw.count(b"\n", 0, line_start)
    header = next(csv.reader([raw.split(b"\n", 1)[0].decode("utf-8", "replace")]), [])
    prefix = raw[line_start:offset].decode("utf-8", "replace")
    col = len(next(csv.reader([prefix + "x"]), [""])) - 1
    field = header[col] if 0 <= col < len(header) else None
    return (line_no - 1 if line_no >= 1 else None), field


def cell(df: pd.DataFrame, row: int, col: str) -> str:
    value = df.iat[row, df.columns.get_loc(col)]
    return "" if value is None else str(value).strip()
