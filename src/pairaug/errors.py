"""Errors a user can act on: each names what was wrong and where."""

from __future__ import annotations


class PairaugError(Exception):
    """Base class for errors reported to the user as one clear line (no traceback)."""


class InputError(PairaugError):
    """Bad input data: names the file, and where known the row (or, for a text file a person edits, the
    line as an editor counts it) and the field."""

    def __init__(self, message: str, *, file: object = None, row: object = None, field: str | None = None,
                 line: int | None = None):
        self.file, self.row, self.field, self.line = file, row, field, line
        where = []
        if file is not None:
            where.append(f"file {file}")
        if line is not None:
            where.append(f"line {line}")
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)


class ParamError(PairaugError):
    """A bad value in params.yaml: names the dotted key."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"params.yaml: {key}: {message}")


class QualityGateError(PairaugError):
    """Synthetic pairs failed the Great Expectations suite."""
