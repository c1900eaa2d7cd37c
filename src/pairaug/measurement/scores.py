"""The per-test-image scores table: what `evaluate@<mix>` writes and the report's bootstrap reads.

One row per (model seed, kind, label, test image): `kind` is the zero-shot probability ("zeroshot")
or a linear probe's decision score at one train fraction ("probe 10%"; a fraction drawn several
times holds the mean score over its draws), `y` the binary target (1 positive; negative, uncertain
or unmentioned 0), `pair_id` / `patient_id` the image and its patient.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pairaug.errors import InputError

SCORE_COLUMNS = ["seed", "kind", "label", "pair_id", "patient_id", "y", "score"]
ZEROSHOT_KIND = "zeroshot"
_PROBE_PREFIX = "probe "


def probe_kind(fraction: str) -> str:
    """The `kind` of a probe fraction: "10%" → "probe 10%"."""
    return f"{_PROBE_PREFIX}{fraction}"


def kind_order(kind: str) -> tuple[int, float]:
    """Sort key: zero-shot first, then the probe fractions in increasing size."""
    if kind == ZEROSHOT_KIND:
        return (0, 0.0)
    try:
        return (1, float(kind.removeprefix(_PROBE_PREFIX).removesuffix("%")))
    except ValueError:
        return (2, 0.0)


def read_scores(path: str | Path) -> pd.DataFrame:
    """A scores table, checked for its columns and values (InputError naming the file and field)."""
    path = Path(path)
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported with its path
        raise InputError(f"cannot read scores table: {type(e).__name__}: {e}", file=path) from None
    missing = [c for c in SCORE_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"scores table lacks column(s) {missing}", file=path, field=missing[0])
    bad_y = ~df["y"].isin([0, 1])
    if bad_y.any():
        raise InputError(f"target must be 0 or 1, got {df['y'][bad_y].iloc[0]!r}", file=path,
                         row=int(bad_y.to_numpy().nonzero()[0][0]), field="y")
    unknown = sorted({k for k in df["kind"].unique() if kind_order(k)[0] == 2})
    if unknown:
        raise InputError(f"unknown score kind {unknown[0]!r}", file=path, field="kind")
    return df[SCORE_COLUMNS]
