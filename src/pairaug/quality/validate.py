"""The `validate` stage's logic: pruned pairs + check columns → GX suite → data/validated (or stop)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pairaug.data.mixes import CONTROL_BRANCHES, REAL_DUP_MATCHES, pool_real_pairs, real_dup_pairs
from pairaug.data.schema import read_pairs
from pairaug.errors import InputError
from pairaug.hashing import file_digest
from pairaug.io import atomic_path, write_json, write_parquet
from pairaug.measurement.edit_readout import fit_readout_probe
from pairaug.measurement.pixel_probe import PixelProbe
from pairaug.quality.checks import derive_checks
from pairaug.quality.datasheet import DatasheetSources, write_datasheet
from pairaug.quality.gate import DATA_DOCS_INDEX, ValidateConfig, gate, run_suite, summary
from pairaug.quality.privacy import near_copy_facts

log = logging.getLogger(__name__)


def read_pruned(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise InputError("pruned pairs not found (run `dvc repro prune`)", file=path)
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise InputError(f"cannot read Parquet: {e}", file=path) from None


def branches_with_candidates(candidates: Path, pairs: pd.DataFrame) -> list[str]:
    """The branches prune scored candidates of (from its candidates.parquet; without one, the pairs' own)."""
    if not candidates.exists():
        return sorted(pairs["branch"].dropna().unique()) if "branch" in pairs.columns else []
    try:
        return sorted(pd.read_parquet(candidates, columns=["branch"])["branch"].dropna().unique())
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise InputError(f"cannot read Parquet: {e}", file=candidates) from None


def edit_readout(pairs: pd.DataFrame, pool: Path) -> tuple[PixelProbe, dict[str, float]] | None:
    """The probe that reads the intra pairs' changed findings, fit on the public pool's real films (never
    edited; the `judge` half of its patients, not the reader prune selected with); None when no intra
    pair is there to read."""
    if "branch" not in pairs.columns or not (pairs["branch"] == "intra").any():
        return None
    if not pool.exists():
        raise InputError("the public pool's pairs are not there (the intra pairs' change_read needs its films; "
                         "run `dvc repro prepare-pool`)", file=pool)
    return fit_readout_probe(pool, reader="judge")


def mix_manifest(pairs: pd.DataFrame, branches: list[str], controls: dict[str, pd.DataFrame] | None = None
                 ) -> pd.DataFrame:
    """A mix's pairs in a fixed order, replicate by replicate: its validated synthetic pairs and the rows of
    its control branches (`controls`: branch → rows); image paths relative to the validated folder."""
    parts = [pairs[pairs["branch"].isin(branches)], *[(controls or {})[b] for b in branches if b in CONTROL_BRANCHES]]
    rows = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else parts[0]
    return rows.sort_values(["replicate", "pair_id"], kind="stable").reset_index(drop=True)


def control_rows(mixes: dict[str, list[str]], pairs: pd.DataFrame, prepared: Path, pool: Path,
                 out_dir: Path, replicates: Sequence[int] = (0,)) -> dict[str, pd.DataFrame]:
    """The real-pair rows of the control branches the mixes use, a set per replicate (real_dup matches the
    count `pairaug` adds in that replicate), images relative to `out_dir`."""
    used = {b for branches in mixes.values() for b in branches}
    out: dict[str, pd.DataFrame] = {}
    if "real_dup" in used:
        real = read_pairs(prepared)
        train = real[real["split"] == "train"]
        matched = pairs[pairs["branch"].isin(mixes[REAL_DUP_MATCHES])]
        out["real_dup"] = _rebase(pd.concat([real_dup_pairs(train, int((matched["replicate"] == rep).sum()))
                                             .assign(replicate=rep) for rep in replicates], ignore_index=True),
                                  prepared.parent, out_dir)
    if "pool_real" in used:
        if not pool.exists():
            raise InputError("the public pool's pairs are not there (run `dvc repro prepare-pool`)", file=pool)
        pool_pairs = read_pairs(pool)
        rows = _rebase(pool_real_pairs(pool_pairs[pool_pairs["split"] == "train"]), pool.parent, out_dir)
        out["pool_real"] = pd.concat([rows.assign(replicate=rep) for rep in replicates], ignore_index=True)
    return out


def _rebase(rows: pd.DataFrame, root: Path, out_dir: Path) -> pd.DataFrame:
    """Image paths relative to `root` → relative to `out_dir`, with each file's sha256 (as synthetic rows have)."""
    files = [root / rel for rel in rows["image"]]
    shas = {f: file_digest(f) for f in sorted(set(files))}
    return rows.assign(image=[Path(os.path.relpath(f, out_dir)).as_posix() for f in files],
                       image_sha256=[shas[f] for f in files])


def validate_pairs(cfg: ValidateConfig, *, pruned: str | Path,
                   prepared: str | Path, out_dir: str | Path,
                   metrics_path: str | Path | None, gx_root: str | Path,
                   mixes: dict[str, list[str]] | None = None, pool: str | Path,
                   privacy: str | Path | None,
                   datasheet: DatasheetSources | None = None, replicates: Sequence[int] = (0,)) -> dict:
    """Run the gate; on success write `out_dir/{pairs.parquet,result.json}` and return the summary.

    `mixes` (name → branches, from `pretrain.mixes`) also get `out_dir/mixes/<name>.parquet`: the pairs
    each `pretrain@<name>` trains on, so a change that leaves a mix's pairs alone does not retrain it.

    On failure `out_dir` is not written (so `pretrain`, which depends on it, cannot run), the summary
    still goes to `metrics_path`, and QualityGateError names every failed expectation in one line.
    `out_dir` must sit at the same depth as the pruned pairs' folder: image paths stay valid unchanged.
    `privacy`: the memorisation check's table (the `near_copy` fact; None: no check ran, which the suite
    refuses for generated images). `datasheet`: also write the run's datasheet (pass or fail).
    """
    pruned, prepared, out_dir, pool = Path(pruned), Path(prepared), Path(out_dir), Path(pool)
    pairs = read_pruned(pruned)
    real = read_pairs(prepared)
    frame = derive_checks(pairs, pruned.parent, real, prepared.parent, edit_readout(pairs, pool))
    frame["near_copy"] = near_copy_facts(frame, privacy)
    result = run_suite(frame, gx_root, cfg, branches_with_candidates(pruned.parent / "candidates.parquet", pairs))
    info = summary(result, frame, cfg.examples)
    docs = str(Path(gx_root) / "gx" / DATA_DOCS_INDEX) if cfg.data_docs else None
    info["data_docs"] = docs
    if metrics_path:
        write_json(metrics_path, info)
    if datasheet is not None and not result.get("success"):
        write_datasheet(datasheet, info, result)  # it says what failed; data/validated stays unwritten
    gate(result, cfg.examples, docs)
    log.info("quality gate passed: %d expectations on %d pairs", info["expectations"], len(pairs))
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        write_parquet(pairs, tmp / "pairs.parquet")
        write_json(tmp / "result.json", result)
        controls = control_rows(mixes or {}, pairs, prepared, pool, out_dir, replicates)
        for name, branches in (mixes or {}).items():
            write_parquet(mix_manifest(pairs, branches, controls), tmp / "mixes" / f"{name}.parquet")
    if datasheet is not None:  # after data/validated: it records the mixes' md5s
        write_datasheet(datasheet, info, result)
    return info
