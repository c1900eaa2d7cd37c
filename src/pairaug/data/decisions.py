"""Review decisions on synthetic pairs: `review/decisions.csv`, the one file `pairaug review` writes and
`prune` reads (so both go through this module, a layer below them).

One row per reviewed pair: `pair_id, image_sha256, decision, reviewer, time, note`; `decision` is
`accept`, `reject` or `flag`; `image_sha256` is the hash of the image the reviewer saw, so a decision
about an image that was regenerated since is *stale* (prune reports it and leaves the pair to its
scores). The file is small, git-tracked text: rows sorted by pair id, `\\n` line ends, so a review
shows up in `git diff` line by line and the same decisions give the same bytes.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from pairaug.errors import InputError
from pairaug.io import atomic_path

DECISION_COLUMNS: tuple[str, ...] = ("pair_id", "image_sha256", "decision", "reviewer", "time", "note")
VERDICTS: tuple[str, ...] = ("accept", "reject", "flag")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def empty_decisions() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=str) for c in (*DECISION_COLUMNS, "line")}).astype({"line": int})


def read_decisions(path: str | Path, known_pairs: Collection[str] | None = None) -> pd.DataFrame:
    """The decisions in `path` with each row's `line` (as an editor counts it); no file: none.

    Refused, naming the line and field: a missing column, a row with the wrong number of fields, an
    empty pair id, an unknown verdict, a malformed sha256, a second row for one pair, and (when
    `known_pairs` is given) a pair id that is not a candidate of this workspace."""
    path = Path(path)
    if not path.exists():
        return empty_decisions()
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"not valid UTF-8 (byte {e.start})", file=path) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise InputError(f"empty file: the first line must be the header {','.join(DECISION_COLUMNS)}", file=path,
                         line=1)
    for col in DECISION_COLUMNS:
        if col not in header:
            raise InputError(f"missing column '{col}' (has: {', '.join(header)})", file=path, line=1, field=col)
    at = {c: header.index(c) for c in DECISION_COLUMNS}
    rows, first_line = [], {}
    line = reader.line_num + 1  # where the next record starts (a quoted note may span lines)
    for rec in reader:
        start, line = line, reader.line_num + 1
        if not rec:
            continue
        if len(rec) != len(header):
            raise InputError(f"{len(rec)} fields but the header has {len(header)} (quote a note that holds commas)",
                             file=path, line=start)
        row = {c: rec[i].strip() if c != "note" else rec[i] for c, i in at.items()}
        _check_row(row, path, start)
        pid = row["pair_id"]
        if pid in first_line:
            raise InputError(f"duplicate decision for pair {pid!r} (first on line {first_line[pid]})", file=path,
                             line=start, field="pair_id")
        if known_pairs is not None and pid not in known_pairs:
            raise InputError(f"unknown pair id {pid!r}: not a candidate of data/pruned/candidates.parquet",
                             file=path, line=start, field="pair_id")
        first_line[pid] = start
        rows.append({**row, "line": start})
    return pd.DataFrame(rows, columns=[*DECISION_COLUMNS, "line"]) if rows else empty_decisions()


def _check_row(row: dict[str, str], path: Path, line: int | None) -> None:
    if not row["pair_id"]:
        raise InputError("empty pair id", file=path, line=line, field="pair_id")
    if row["decision"] not in VERDICTS:
        raise InputError(f"decision must be one of {', '.join(VERDICTS)}, got {row['decision']!r}", file=path,
                         line=line, field="decision")
    if not _SHA256.fullmatch(row["image_sha256"]):
        raise InputError(f"image_sha256 must be 64 lower-case hex digits, got {row['image_sha256']!r}", file=path,
                         line=line, field="image_sha256")


def write_decisions(path: str | Path, decisions: pd.DataFrame) -> None:
    """Write all decisions atomically, sorted by pair id (the same decisions give the same bytes)."""
    rows = decisions.sort_values("pair_id", kind="stable")
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(DECISION_COLUMNS)
        for rec in rows[list(DECISION_COLUMNS)].itertuples(index=False):
            writer.writerow(["" if pd.isna(v) else str(v) for v in rec])


def record_decision(path: str | Path, pair_id: str, image_sha256: str, decision: str | None, reviewer: str,
                    note: str = "", known_pairs: Collection[str] | None = None,
                    now: datetime | None = None) -> dict[str, str] | None:
    """Set (or with `decision=None`, withdraw) one pair's decision and rewrite the file at once.

    Returns the row written (None when withdrawn). The file is read and checked first, so a hand edit
    that broke it is reported instead of being overwritten."""
    current = read_decisions(path, known_pairs)
    rest = current[current["pair_id"] != pair_id]
    if decision is None:
        write_decisions(path, rest)
        return None
    stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    row = {"pair_id": pair_id, "image_sha256": image_sha256, "decision": decision, "reviewer": reviewer,
           "time": stamp, "note": " ".join(note.split())}  # one line per decision: a readable git diff
    _check_row(row, Path(path), None)
    write_decisions(path, pd.concat([rest, pd.DataFrame([row])], ignore_index=True))
    return row
