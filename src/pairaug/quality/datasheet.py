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
    c, t, mem, gate = sheet["counts"], sheet["thresholds"], sheet["memorisation"], sheet["quality_gate"]
    lines = [f"# Datasheet: {sheet['title']}", "",
             "Written by the `validate` stage from the run's outputs (src/pairaug/quality/datasheet.py); the JSON "
             "beside it holds the same figures.", "",
             "## 1. Motivation and composition", "",
             "Synthetic image-report pairs that expand a scarce set of real chest X-ray / report pairs for "
             "vision-language pretraining (PairAug). `inter`: a rewritten report with a new image drawn from it (a "
             "new, fictitious patient); `intra`: a report rewritten as this patient's change, with the patient's film "
             "edited to match; `image_only`: a new image drawn from the original report; `paraphrase`: the real film "
             "with a paraphrased report. No synthetic image shows a real patient, except that an `intra` image is an "
             "edit of its source patient's film (section 7).", "",
             "## 2. Counts per branch", "",
             "| branch | candidates | kept (after pruning and review) | reviewed | validated | reasons |",
             "|---|---|---|---|---|---|"]
    for b, e in c["branches"].items():
        reasons = ", ".join(f"{k} {v}" for k, v in e["reasons"].items()) or "–"
        lines.append(f"| {b} | {e['candidates']} | {e['kept']} | {e['reviewed']} | {e['validated']} | {reasons} |")
    reviewed = sum(e["reviewed"] for e in c["branches"].values())
    lines += ["", f"Review: {reviewed} pairs reviewed" + (f" (column `{c['review_column']}` of data/pruned/candidates."
                                                           "parquet)" if c["review_column"] else
                                                           " (no review recorded in data/pruned/candidates.parquet)")
              + ".", "", "## 3. Prompts", "", "| task | backend / model | prompt hash | registry URI | rows ok | instruction |",
              "|---|---|---|---|---|---|"]
    for task, p in sheet["prompts"].items():
        text = (p["text"] or "–").replace("|", "\\|")
        lines.append(f"| {task} | {_fmt(p['backend'])} / {_fmt(p['model'])} | {_fmt(p['prompt_sha'])} | "
                     f"{_fmt(p.get('prompt_uri') or [])} | {p['ok']} of {p['rows']} | {text} |")
    m = sheet["models"]
    lines += ["", "## 4. Models and fingerprints", "",
              f"- rewriter: {_fmt(m['rewriter'])}", f"- scorer (pruning, memorisation check): `{_fmt(m['scorer_sha'])}`",
              "", "| branch | generator fingerprint | steps | guidance | η | inversion |", "|---|---|---|---|---|---|"]
    for b, g in m["generator"].items():
        lines.append(f"| {b} | `{_fmt(g['generator_sha'])}` | {_fmt(g['steps'])} | {_fmt(g['guidance'])} | "
                     f"{_fmt(g['eta'])} | {_fmt(g['inversion'])} |")
    nc = t["near_copy"]
    lines += ["", "## 5. Thresholds and how they were set", "",
              "| threshold | value | how it was set |", "|---|---|---|",
              f"| τ (S_a, inter / image_only / paraphrase) | {_fmt(t['tau']['value'])} | {_fmt(t['tau']['how'])}"
              f"{', quantile ' + _fmt(t['tau']['quantile']) if t['tau']['quantile'] is not None else ''} |"]
    for k in ("thr_s1", "thr_s2", "thr_s3"):
        lines.append(f"| intra {k.removeprefix('thr_').upper()} | {_fmt(t['intra'].get(k))} | {t['intra']['how']} |")
    lines += [f"| near-copy, pixel distance | {_fmt(nc.get('pixel'))} | {_fmt(nc.get('how'))} |",
              f"| near-copy, embedding distance | {_fmt(nc.get('embedding'))} | the same, under the scorer |",
              f"| near-copies allowed among kept pairs | {_pct(t['near_copy_share_bound'])} | validate's GX suite "
              "(gx/expectations/pruned_pairs.json, column near_copy) |",
              "", "## 6. Label prevalence, real vs synthetic", "",
              "Share of pairs whose report states the label as present (1), real train pairs vs each branch's kept "
              "pairs.", ""]
    prev = sheet["label_prevalence"]
    cols = ["real_train", *BRANCHES]
    lines += ["| label | " + " | ".join(f"{k} ({prev['pairs'].get(k, 0)})" for k in cols) + " |",
              "|---|" + "---|" * len(cols)]
    for lb in prev["real_train"]:
        lines.append(f"| {lb} | " + " | ".join(_pct(prev.get(k, {}).get(lb)) for k in cols) + " |")
    lines += ["", "## 7. Memorisation", ""]
    if mem.get("images") is None:
        lines.append("The memorisation check did not run (metrics/privacy.json is missing).")
    else:
        ref = mem.get("reference_valid_films") or {}
        lines += [f"{mem['near_copies']} of {mem['images']} synthetic images are near-copies of a real train film "
                  f"({_pct(mem['near_copy_share'])}); among the {mem['kept']} kept: {mem['kept_near_copies']} "
                  f"({_pct(mem['kept_near_copy_share'])}). Reference: {ref.get('films')} real valid films, median "
                  f"distance to their nearest train film {_fmt((ref.get('pixel_distance') or {}).get('median'))} "
                  f"(pixels), {_fmt((ref.get('embedding_distance') or {}).get('median'))} (embedding).", "",
                  "| branch | images | near-copies | kept | kept near-copies | median pixel distance | median "
                  "embedding distance |", "|---|---|---|---|---|---|---|"]
        for b, e in (mem.get("branches") or {}).items():
            lines.append(f"| {b} | {e['images']} | {e['near_copies']} | {e['kept']} | {e['kept_near_copies']} | "
                         f"{_fmt(e['pixel_distance']['median'])} | {_fmt(e['embedding_distance']['median'])} |")
        own = ((mem.get("branches") or {}).get("intra") or {}).get("own_source_film")
        if own:
            lines += ["", f"`intra` images are edits of their source patient's film, which the search leaves out: "
                          f"their median distance to it is {_fmt(own['pixel_distance']['median'])} (pixels), "
                          f"{_fmt(own['embedding_distance']['median'])} (embedding), and {own['within_thresholds']} "
                          f"({own['kept_within_thresholds']} kept) are as close to it as a near-copy would be. Treat "
                          "them as derived from, and identifying, that patient."]
    lines += ["", "## 8. Quality gate", "",
              f"Great Expectations suite `{gate.get('suite')}`: {'passed' if gate.get('success') else 'FAILED'}, "
              f"{gate.get('expectations')} expectations on {gate.get('rows')} pairs, {gate.get('failed')} failed."]
    lines += [f"- {f}" for f in gate.get("failures") or []]
    lines += ["", "## 9. Distribution and provenance", "",
              "Every generated PNG carries its provenance in PNG text chunks (synthetic, pair id, branch, source pair, "
              "prompt hash, generator fingerprint, seed, steps, guidance, η, inversion, package version): "
              "`pairaug inspect IMAGE` prints them, `pairaug audit` checks them against the manifest. The images derive "
              "from real patients' reports (and, for `intra`, films): share them only where the source data's use "
              "agreement allows.", ""]
    return "\n".join(lines)


def write_datasheet(src: DatasheetSources, validate_info: dict, gx_result: dict) -> dict:
    sheet = build(src, validate_info, gx_result)
    write_json(src.json, sheet)
    with atomic_path(src.markdown) as tmp:
        tmp.write_text(render(sheet))
    return sheet
