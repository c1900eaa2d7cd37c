"""The `validate` stage's logic: pruned pairs + check columns → GX suite → data/validated (or stop)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from pairaug.data.schema import read_pairs
from pairaug.errors import InputError
from pairaug.io import atomic_path, write_json, write_parquet
from pairaug.quality.checks import derive_checks
from pairaug.quality.gate import DATA_DOCS_INDEX, ValidateConfig, gate, run_suite, summary

log = logging.getLogger(__name__)


def read_pruned(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise InputError("pruned pairs not found (run `dvc repro prune`)", file=path)
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise InputError(f"cannot read Parquet: {e}", file=path) from None


def mix_manifest(pairs: pd.DataFrame, branches: list[str]) -> pd.DataFrame:
    """A mix's validated pairs in a fixed order (image paths stay relative to the validated folder)."""
    rows = pairs[pairs["branch"].isin(branches)]
    return rows.sort_values("pair_id", kind="stable").reset_index(drop=True)


def validate_pairs(cfg: ValidateConfig, *, pruned: str | Path = "data/pruned/pairs.parquet",
                   prepared: str | Path = "data/prepared/pairs.parquet", out_dir: str | Path = "data/validated",
                   metrics_path: str | Path | None = "metrics/validate.json", gx_root: str | Path = ".",
                   mixes: dict[str, list[str]] | None = None) -> dict:
    """Run the gate; on success write `out_dir/{pairs.parquet,result.json}` and return the summary.

    `mixes` (name → branches, from `pretrain.mixes`) also get `out_dir/mixes/<name>.parquet`: the pairs
    each `pretrain@<name>` trains on, so a change that leaves a mix's pairs alone does not retrain it.

    On failure `out_dir` is not written (so `pretrain`, which depends on it, cannot run), the summary
    still goes to `metrics_path`, and QualityGateError names every failed expectation in one line.
    `out_dir` must sit at the same depth as the pruned pairs' folder: image paths stay valid unchanged.
    """
    pruned, prepared, out_dir = Path(pruned), Path(prepared), Path(out_dir)
    pairs = read_pruned(pruned)
    real = read_pairs(prepared)
    frame = derive_checks(pairs, pruned.parent, real, prepared.parent)
    result = run_suite(frame, gx_root, cfg)
    info = summary(result, frame, cfg.examples)
    docs = str(Path(gx_root) / "gx" / DATA_DOCS_INDEX) if cfg.data_docs else None
    info["data_docs"] = docs
    if metrics_path:
        write_json(metrics_path, info)
    gate(result, cfg.examples, docs)
    log.info("quality gate passed: %d expectations on %d pairs", info["expectations"], len(pairs))
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        write_parquet(pairs, tmp / "pairs.parquet")
        write_json(tmp / "result.json", result)
        for name, branches in (mixes or {}).items():
            write_parquet(mix_manifest(pairs, branches), tmp / "mixes" / f"{name}.parquet")
    return info
