"""The candidates: every generated manifest and the paraphrases, joined to their source pair and labels."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pairaug.data.schema import LABELS, read_pairs
from pairaug.errors import InputError
from pairaug.hashing import file_digest, stable_hash
from pairaug.prune.columns import MANIFEST_REQUIRED, REWRITE_TASK, SYNTHETIC_BRANCHES


@dataclass
class Sources:
    """Where the candidates come from (the stage script names the paths: pairaug.layout)."""

    prepared: Path
    rewritten_dir: Path
    synthetic_dir: Path
    decisions: Path
    pool: Path  # the films the select probe reading intra edits is fit on


def read_manifest(path: Path, branch: str) -> pd.DataFrame:
    if not path.exists():
        stage = branch.replace("_", "-") + "-generate"
        raise InputError(f"{branch} manifest not found (run `dvc repro {stage}`)", file=path)
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise InputError(f"cannot read Parquet: {e}", file=path) from None
    for col in MANIFEST_REQUIRED:
        if col not in df.columns:
            raise InputError(f"missing required column '{col}'", file=path, field=col)
        bad = df[col].isna()
        if bad.any():
            raise InputError(f"empty {col}", file=path, row=int(np.flatnonzero(bad)[0]), field=col)
    if "branch" in df.columns:
        other = df["branch"] != branch
        if other.any():
            row = int(np.flatnonzero(other)[0])
            raise InputError(f"branch {df['branch'].iloc[row]!r} in the {branch} manifest", file=path, row=row,
                             field="branch")
    return df.reset_index(drop=True)


def read_rewritten_labels(path: Path) -> pd.DataFrame:
    """The `ok` rows of a rewrite output, keyed by (source_pair_id, report), with the new report's labels."""
    if not path.exists():
        raise InputError("rewritten reports not found (run `dvc repro rewrite`)", file=path)
    df = pd.read_parquet(path)
    for col in ("source_pair_id", "report_new", "status", *LABELS):
        if col not in df.columns:
            raise InputError(f"missing column '{col}'", file=path, field=col)
    ok = df[df["status"] == "ok"].rename(columns={"report_new": "report"})
    return ok[["source_pair_id", "report", *LABELS]].drop_duplicates(["source_pair_id", "report"]).reset_index(drop=True)


def _attach_source(df: pd.DataFrame, real: pd.DataFrame, file: Path) -> pd.DataFrame:
    """Add the source pair's patient, report and real image (absolute) to each candidate."""
    missing = ~df["source_pair_id"].isin(real.index)
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise InputError(f"source_pair_id {df['source_pair_id'].iloc[row]!r} is not a pair of data/prepared",
                         file=file, row=row, field="source_pair_id")
    src = real.loc[df["source_pair_id"].to_numpy()]
    df["patient_id"] = src["patient_id"].to_numpy()
    df["source_report"] = src["report"].to_numpy()
    df["real_image"] = src["real_image"].to_numpy()
    return df


def _attach_labels(df: pd.DataFrame, labels: pd.DataFrame, file: Path, manifest: Path) -> pd.DataFrame:
    """The labels of each candidate's report, from the rewrite output that produced it."""
    merged = df.merge(labels, on=["source_pair_id", "report"], how="left", indicator=True, validate="many_to_one")
    missing = (merged["_merge"] != "both").to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise InputError(f"report of pair {df['pair_id'].iloc[row]!r} not found among the ok rows of {file} "
                         "(synthetic data older than the rewrite output? rerun the generate stage)",
                         file=manifest, row=row, field="report")
    return merged.drop(columns="_merge")


def abs_path(path: str | Path) -> str:
    """An absolute path without resolving symlinks (DVC may link data files into its cache)."""
    return os.path.abspath(path)


def load_candidates(sources: Sources, replicates: Sequence[int] = (0,)) -> pd.DataFrame:
    """Every candidate of every branch and replicate: ids, texts, absolute image paths (`image_abs`,
    `real_image`), labels. Generated branches carry their replicate; each replicate has its own copy of
    the paraphrase pairs (the rewrite draws nothing per replicate, pruning's τ does)."""
    real = read_pairs(sources.prepared)
    real_root = sources.prepared.parent
    real = real.assign(real_image=[abs_path(real_root / p) for p in real["image"]]).set_index("pair_id")
    frames = []
    for branch in SYNTHETIC_BRANCHES:
        path = sources.synthetic_dir / branch / "manifest.parquet"
        man = read_manifest(path, branch)
        if "replicate" not in man.columns:
            raise InputError("missing required column 'replicate' (rerun the generate stage)", file=path,
                             field="replicate")
        other = ~man["replicate"].isin(list(replicates))
        if other.any():
            row = int(np.flatnonzero(other)[0])
            raise InputError(f"replicate {man['replicate'].iloc[row]} is not in `replicates` {list(replicates)} "
                             "(rerun the generate stage)", file=path, row=row, field="replicate")
        df = pd.DataFrame({"pair_id": man["pair_id"].astype(str), "branch": branch,
                           "replicate": man["replicate"].astype("int64"),
                           "source_pair_id": man["source_pair_id"].astype(str), "report": man["report"].astype(str),
                           "image_abs": [abs_path(path.parent / p) for p in man["image"]],
                           "image_sha256": man["image_sha256"].astype(str)})
        df = _attach_source(df, real, path)
        if branch == "image_only":  # the original report: the source pair's own labels
            df = df.join(real[list(LABELS)], on="source_pair_id")
        else:
            labels_file = sources.rewritten_dir / f"{REWRITE_TASK[branch]}.parquet"
            df = _attach_labels(df, read_rewritten_labels(labels_file), labels_file, path)
        frames.append(df)
    # The text-only baseline: the real train image with its paraphrased report.
    para_file = sources.rewritten_dir / "paraphrase.parquet"
    para = read_rewritten_labels(para_file)
    para = pd.concat([para.assign(branch="paraphrase", replicate=rep,
                                  pair_id=[stable_hash("paraphrase", s, r, rep)
                                           for s, r in zip(para["source_pair_id"], para["report"])])
                      for rep in replicates], ignore_index=True)
    para = _attach_source(para, real, para_file)
    para["image_abs"] = para["real_image"]
    shas = {p: file_digest(p) for p in sorted(set(para["image_abs"]))}
    para["image_sha256"] = para["image_abs"].map(shas)
    frames.append(para)
    out = pd.concat(frames, ignore_index=True)
    dup = out["pair_id"].duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise InputError(f"pair_id {out['pair_id'].iloc[row]!r} appears twice among the candidates",
                         file=sources.synthetic_dir / out['branch'].iloc[row], field="pair_id")
    for label in LABELS:
        out[label] = out[label].astype("Int8")
    return out
