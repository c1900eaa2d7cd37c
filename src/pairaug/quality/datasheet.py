"""A datasheet per run ("Datasheets for Datasets", Gebru et al.): `metrics/datasheet.md` + `.json`, written
by the `validate` stage (so it exists before any model trains, and `pretrain` logs it with every model).

It documents the synthetic pairs a run produced and what was done to them: counts per branch before and
after pruning and review, the rewrite prompts and their hashes, the models and their fingerprints, every
threshold and how it was set, label prevalence real vs synthetic, the memorisation figures, the quality
gate's result. Everything is read from the stages' outputs; no time stamp or commit goes in, so the same
inputs give the same bytes (the MLflow run holds the commit).

Review: prune's candidates table is the record. Any column whose name starts with `review` counts as a
review record (non-null and non-empty = reviewed, its values tallied); with none, 0 pairs were reviewed. Reasons
(`reason`) are tallied per branch whatever they are, so a review's rejections show there too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pairaug.data.schema import LABELS
from pairaug.hashing import file_digest
from pairaug.io import atomic_path, write_json
from pairaug.templates import render as render_template

BRANCHES: tuple[str, ...] = ("inter", "intra", "image_only", "paraphrase")
GENERATED: tuple[str, ...] = ("inter", "intra", "image_only")
TASK_OF_BRANCH = {"inter": "inter", "intra": "intra", "paraphrase": "paraphrase"}  # data/rewritten/<task>


@dataclass
class DatasheetSources:
    """What the datasheet reads and where it goes (the stage script names the paths: pairaug.layout)."""

    prepared: Path
    rewritten: Path
    synthetic: Path
    candidates: Path
    prune_metrics: Path
    privacy_metrics: Path
    validated: Path
    markdown: Path  # the outputs
    json: Path
    # task → {"text", "sha"}: the instruction `rewrite.prompts` resolves to, and its hash (rewrite's prompt_sha)
    prompts: dict[str, dict[str, str]] = field(default_factory=dict)


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _share(values: pd.Series) -> float | None:
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return round(float((v == 1).mean()), 4) if len(v) else None  # not mentioned (null) counts as absent


def reason_kind(reason: object) -> str:
    """A reason without its numbers, so reasons tally by kind ("s_a 0.41 <= tau 0.77" → "s_a <= tau")."""
    if not isinstance(reason, str):
        return "none"
    return re.sub(r"\s+", " ", re.sub(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])", "", reason)).replace(" ;", ";").strip() or "none"


def counts(candidates: pd.DataFrame, validated: pd.DataFrame | None) -> dict:
    """Per branch: candidates, kept (after pruning and review), reviewed, review decisions, reasons, validated."""
    review_cols = [c for c in candidates.columns if c.lower().startswith("review")]
    out = {}
    for branch in BRANCHES:
        part = candidates[candidates["branch"] == branch]
        # prune's `review` column holds "" for a pair nobody reviewed (review/decisions.csv, `pairaug review`)
        reviewed = (part[review_cols[0]].notna() & (part[review_cols[0]].astype(str) != "")) if review_cols \
            else pd.Series(False, index=part.index)
        entry = {
            "candidates": len(part),
            "kept": int(part["kept"].sum()) if "kept" in part.columns else 0,
            "reviewed": int(reviewed.sum()),
            "review_decisions": {str(k): int(v) for k, v in part.loc[reviewed, review_cols[0]].value_counts()
                                 .sort_index().items()} if review_cols else {},
            "reasons": {str(k): int(v) for k, v in part["reason"].map(reason_kind).value_counts().sort_index().items()}
            if "reason" in part.columns else {},
            "validated": int((validated["branch"] == branch).sum()) if validated is not None else 0,
        }
        out[branch] = entry
    return {"branches": out, "review_column": review_cols[0] if review_cols else None}


def prompts(rewritten: Path, texts: dict[str, dict[str, str]]) -> dict:
    """Per rewrite task: backend, model, the prompt hash(es) its rows record, and the text when the one
    params resolve to now hashes to what the rows record (else the text is not known here: None)."""
    out = {}
    for task in ("inter", "intra", "paraphrase"):
        path = rewritten / f"{task}.parquet"
        if not path.exists():
            continue
        df = pd.read_parquet(path)

        def values(col: str, frame: pd.DataFrame = df) -> list:
            return sorted(frame[col].dropna().unique().tolist()) if col in frame.columns else []

        shas = values("prompt_sha")
        given = texts.get(task) or {}
        text = given.get("text") if given.get("sha") in shas else None
        # prompt_uri: the version in MLflow's Prompt Registry (none when the rewrite ran with tracking off)
        out[task] = {"prompt_sha": shas, "prompt_uri": values("prompt_uri"), "text": text,
                     "backend": values("backend"), "model": values("model"),
                     "rows": len(df), "ok": int((df["status"] == "ok").sum()) if "status" in df.columns else len(df)}
    return out


def models(synthetic: Path, privacy: dict, prompt_info: dict) -> dict:
    """The generator's fingerprint and sampling per generated branch, the scorer's, the rewriter's."""
    gen = {}
    for branch in GENERATED:
        path = synthetic / branch / "manifest.parquet"
        if not path.exists():
            continue
        m = pd.read_parquet(path)

        def values(col: str, frame: pd.DataFrame = m) -> list:
            if col not in frame.columns:
                return []
            return sorted({_plain(v) for v in frame[col].tolist() if not _missing(v)}, key=str)

        gen[branch] = {"generator_sha": values("generator_sha"), "steps": values("steps"),
                       "guidance": values("guidance"), "eta": values("eta"), "inversion": values("inversion")}
    rewriters = sorted({f"{b} / {m}" for p in prompt_info.values() for b in p["backend"] for m in p["model"]})
    return {"generator": gen, "scorer_sha": privacy.get("scorer_sha"), "rewriter": rewriters}


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def prevalence(prepared: Path, validated: pd.DataFrame | None, candidates: pd.DataFrame) -> dict:
    """Share of positive (1) per label: the real train pairs vs each branch's kept pairs."""
    real = pd.read_parquet(prepared)
    train = real[real["split"] == "train"]
    kept = validated if validated is not None else candidates[candidates["kept"].astype(bool)]
    out = {"real_train": {lb: _share(train[lb]) for lb in LABELS if lb in train.columns}, "pairs": {"real_train": len(train)}}
    for branch in BRANCHES:
        part = kept[kept["branch"] == branch]
        out[branch] = {lb: _share(part[lb]) if len(part) else None for lb in LABELS if lb in part.columns}
        out["pairs"][branch] = len(part)
    return out


def thresholds(prune_metrics: dict, privacy: dict, gx_result: dict) -> dict:
    tau = prune_metrics.get("tau") or {}
    intra = (prune_metrics.get("branches") or {}).get("intra") or {}
    params = prune_metrics.get("params") or {}
    bound = None
    for r in gx_result.get("results", []):
        kw = (r.get("expectation_config") or {}).get("kwargs") or {}
        if kw.get("column") == "near_copy" and "value_set" in kw:
            bound = round(1 - float(kw.get("mostly") or 1.0), 6)
    return {
        "tau": {"value": tau.get("tau"), "how": tau.get("source"), "quantile": tau.get("quantile"),
                "branches": ["inter", "image_only", "paraphrase"]},
        "intra": {k: intra.get(k) for k in ("thr_s1", "thr_s2", "thr_s3")} | {
            "how": f"mean of S_k over the intra candidates / {params.get('intra_scale')} - "
                   f"{params.get('intra_lambda')} (prune.intra_scale, prune.intra_lambda)"},
        "near_copy": privacy.get("thresholds") or {},
        "near_copy_share_bound": bound,
    }


def build(src: DatasheetSources, validate_info: dict, gx_result: dict) -> dict:
    """The datasheet as a dict (metrics/datasheet.json); `validate_info` is metrics/validate.json's summary."""
    candidates = pd.read_parquet(src.candidates)
    passed = bool(validate_info.get("success"))
    pairs_file = src.validated / "pairs.parquet"
    validated = pd.read_parquet(pairs_file) if passed and pairs_file.exists() else None
    privacy = _json(src.privacy_metrics)
    prompt_info = prompts(src.rewritten, src.prompts)
    mixes = {}
    if passed:
        mixes = {p.stem: file_digest(p, "md5") for p in sorted((src.validated / "mixes").glob("*.parquet"))}
    return {
        "title": "Synthetic chest X-ray / report pairs (PairAug)",
        "counts": counts(candidates, validated),
        "prompts": prompt_info,
        "models": models(src.synthetic, privacy, prompt_info),
        "thresholds": thresholds(_json(src.prune_metrics), privacy, gx_result),
        "label_prevalence": prevalence(src.prepared, validated, candidates),
        "memorisation": {k: privacy.get(k) for k in ("images", "near_copies", "near_copy_share", "kept",
                                                     "kept_near_copies", "kept_near_copy_share",
                                                     "reference_valid_films", "branches")},
        "quality_gate": {k: validate_info.get(k) for k in ("success", "suite", "expectations", "failed", "rows",
                                                           "failures")},
        # what each mix's manifest hashed to: pretrain logs this datasheet only with models trained on them
        "validated": {"pairs_md5": file_digest(pairs_file, "md5") if validated is not None else None, "mixes": mixes},
    }


# ------------------------------------------------------------------------------------------ markdown


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v) or "–"
    return str(v)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def render(sheet: dict) -> str:
    """metrics/datasheet.md from the sheet (quality/templates/datasheet.md)."""
    return render_template("pairaug.quality", "datasheet.md", filters={"fmt": _fmt, "pct": _pct}, sheet=sheet, c=sheet["counts"], m=sheet["models"],
                           t=sheet["thresholds"], nc=sheet["thresholds"]["near_copy"],
                           mem=sheet["memorisation"], gate=sheet["quality_gate"], prev=sheet["label_prevalence"],
                           cols=["real_train", *BRANCHES],
                           reviewed=sum(e["reviewed"] for e in sheet["counts"]["branches"].values()))


def write_datasheet(src: DatasheetSources, validate_info: dict, gx_result: dict) -> dict:
    sheet = build(src, validate_info, gx_result)
    write_json(src.json, sheet)
    with atomic_path(src.markdown) as tmp:
        tmp.write_text(render(sheet))
    return sheet
