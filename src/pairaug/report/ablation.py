"""The `report` stage's logic: the ablation table over mixes with bootstrap CIs, and the verdict
PairAug vs each baseline from paired bootstrap differences.

Input: each mix's per-test-image scores, `data/eval/<mix>/scores.parquet` (`evaluate@<mix>`), per
model seed, kind (zero-shot probability; linear-probe decision score at each train fraction), label
and test image. Every figure is an AUC (per label, and the mean over the five CheXpert competition
labels) recomputed from these scores; for a probe fraction drawn several times it is the AUC of the
draw-averaged score, which can differ a little from `metrics/eval`'s mean of the draws' AUCs.

Statistics (`report` params `bootstrap_resamples`, `ci`, `reference_mixes`; the shared `seed`):

- **Replicates.** Each mix has one model per replicate seed (`replicates`): replicate r is a full rerun
  of everything the method draws on the same data and priors (generation noise, IntraAug candidates,
  pruning's τ draw, the training seed, the probe draws). The figure is the mean over replicates of the
  full-split AUC.
- **Resampling: replicates and test patients together** (a two-level bootstrap, `stats.two_level`). A
  resample draws as many replicates as there are, with replacement, and as many test patients, with
  replacement (all of a drawn patient's images come along: images of one patient are not independent);
  its figure is the mean over the drawn replicates of each one's AUC on the drawn patients. With a
  handful of replicates the bootstrap of them alone is too narrow, so their deviations are scaled to
  Student's t with R − 1 degrees of freedom first (`stats.replicate_inflation`). The resamples are drawn
  once, from `seed`, and shared by every mix, kind and label, and replicate r of one mix is paired with
  replicate r of another (same seed, same synthetic draw): every comparison is paired. The spread of
  the replicates is reported beside the CI (`replicate_sd`).
- **The mean over labels** is taken on each resample (over the competition labels this kind scores
  on every replicate); a resample where some label has no positive or no negative patient is undefined
  and left out (`resamples` counts those used).
- **PairAug vs each baseline**: on each resample, PairAug's figure minus the baseline's; the delta
  is the full-split difference, the CI the percentile interval of the resampled differences, the
  p-value two-sided from the resampled differences (`stats.bootstrap_p`), Holm-corrected over the
  baselines compared on that measure (zero-shot mean, and each probe fraction's mean). Mixes in
  `reference_mixes` (e.g. `pool_real`) are reported, not compared. A verdict says "beats" / "loses
  to" only when the paired CI excludes 0 on that side and the Holm p is below 1 − ci; otherwise
  "no difference shown".
- **Where a rerun lands** (`rerun_interval`, beside each verdict): the band that holds, with
  probability at least `ci`, all of a measure's differences rerun with as many new replicate seeds on
  the same data (`stats.rerun_half_width`: a t prediction band, the replicate × mix residual variance
  pooled over PairAug and the baselines, Bonferroni over the baselines). The CI is for the true
  difference; a rerun's own estimate carries replicate noise too, so about one rerun in six lands
  outside a 95 % CI even when the CI is right. `pairaug replicate` holds each run against both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
from annotated_types import Gt, Lt

from pairaug.data.schema import COMPETITION_LABELS
from pairaug.errors import InputError
from pairaug.measurement.scores import ZEROSHOT_KIND, kind_order, read_scores
from pairaug.params import Params, Positive
from pairaug.report.stats import (
    bootstrap_p,
    holm,
    patient_resamples,
    percentile_ci,
    replicate_inflation,
    replicate_resamples,
    rerun_half_width,
    two_level,
    verdict,
    weighted_auc,
)
from pairaug.templates import render

PAIRAUG = "pairaug"
COVERAGE = ("each CI resamples, together, the replicates (each one a rerun of everything the method draws — "
            "generation noise, IntraAug candidates, pruning's τ draw, the training seed, the probe draws — on the "
            "same data and priors; their deviations scaled to Student's t with R − 1 degrees of freedom) and the "
            "test patients; it does not cover a redrawn dataset (another `seed`: new patients, pool and priors)")


@dataclass
class ReportConfig(Params):
    tsne_per_set: Annotated[int, Positive] = 300  # points per set (real, inter, intra) in the t-SNE
    gallery_pairs: Annotated[int, Positive] = 24  # pairs per branch in each gallery
    # resamples of the test patients behind every CI and p-value
    bootstrap_resamples: Annotated[int, Positive] = 1000
    ci: Annotated[float, Gt(0), Lt(1)] = 0.95  # coverage of the CIs; verdicts need Holm p < 1 - ci
    reference_mixes: list[str] = field(default_factory=lambda: ["pool_real"])  # reported, never compared


@dataclass
class Measure:
    """One figure of one mix: its full-split value, its value on each resample, and per replicate."""
    value: float
    resampled: np.ndarray  # (resamples,), NaN where undefined
    seed_values: list[float]  # per replicate, on the full split


def scores_path(eval_dir: str | Path, mix: str) -> Path:
    return Path(eval_dir) / mix / "scores.parquet"


def load_scores(eval_dir: str | Path, mixes: list[str]) -> dict[str, pd.DataFrame]:
    """The scores table of each mix that has a non-empty one (otherwise the mix is missing: no model
    of it was evaluated)."""
    tables = {mix: read_scores(scores_path(eval_dir, mix)) for mix in mixes if scores_path(eval_dir, mix).exists()}
    return {mix: df for mix, df in tables.items() if len(df)}


@dataclass
class EvalImages:
    """The test images every mix was scored on: ids, patient ids, and each one's patient column in the counts."""
    pair_ids: pd.Index
    patient_ids: np.ndarray
    patient_of_image: np.ndarray
    n_patients: int


def eval_images(scores: dict[str, pd.DataFrame], eval_dir: str | Path) -> EvalImages:
    """The test images and their patients, from the first mix's table."""
    first_mix = next(iter(scores))
    images = scores[first_mix][["pair_id", "patient_id"]].drop_duplicates().sort_values("pair_id")
    if images["pair_id"].duplicated().any():
        dup = images["pair_id"][images["pair_id"].duplicated()].iloc[0]
        raise InputError(f"test image {dup!r} has two patient ids", file=scores_path(eval_dir, first_mix),
                         field="patient_id")
    patient_ids = images["patient_id"].to_numpy(dtype=str)
    patients, codes = np.unique(patient_ids, return_inverse=True)
    return EvalImages(pd.Index(images["pair_id"].to_numpy(dtype=str)), patient_ids, codes, len(patients))


def attach_images(df: pd.DataFrame, images: EvalImages, path: Path) -> pd.DataFrame:
    """`df` with each row's `image` (index into `images`), checked: every (seed, kind, label) scores
    each test image once, with the same patient as the first mix, or paired resamples would not pair
    (an InputError names the table)."""
    image = images.pair_ids.get_indexer(df["pair_id"].to_numpy(dtype=str))
    group = df.groupby(["seed", "kind", "label"], sort=False).ngroup().to_numpy()
    n = len(images.pair_ids)
    if (image < 0).any() or len(df) != (group.max() + 1) * n or (np.bincount(group * n + image) != 1).any():
        raise InputError("its test images differ from the first mix's (evaluate every mix on the same prepared "
                         "data)", file=path, field="pair_id")
    moved = images.patient_ids[image] != df["patient_id"].to_numpy(dtype=str)
    if moved.any():
        raise InputError(f"image {df['pair_id'].iloc[int(np.argmax(moved))]!r} has another patient than in the "
                         "first mix's table", file=path, row=int(np.argmax(moved)), field="patient_id")
    return df.assign(image=image)


@dataclass
class Resamples:
    """The two-level resamples every mix shares: patient counts (row 0 all ones: the full split) and the
    replicates' weights, with the inflation of their deviations."""
    patients: np.ndarray  # (1 + resamples, patients)
    replicates: np.ndarray  # (resamples, replicates)
    inflation: float


def mix_measures(df: pd.DataFrame, images: EvalImages, draws: Resamples) -> dict[str, dict]:
    """{kind: {"labels": {label: Measure}, "mean": Measure or None}} for one mix's scores (with `image`)."""
    per_label: dict[str, dict[str, list[np.ndarray]]] = {}
    for (kind, label, _seed), part in df.groupby(["kind", "label", "seed"], sort=True):
        patient = images.patient_of_image[part["image"].to_numpy()]
        auc = weighted_auc(part["score"].to_numpy(), part["y"].to_numpy(), patient, draws.patients)
        per_label.setdefault(kind, {}).setdefault(label, []).append(auc)
    out: dict[str, dict] = {}
    for kind in sorted(per_label, key=kind_order):
        labels = {label: _measure(np.stack(reps), draws) for label, reps in sorted(per_label[kind].items())}
        # The mean over the competition labels this kind scores on every replicate.
        comp = [labels[lb] for lb in COMPETITION_LABELS if lb in labels and math.isfinite(labels[lb].value)]
        mean = None
        if comp:
            mean = Measure(float(np.mean([m.value for m in comp])), np.mean([m.resampled for m in comp], axis=0),
                           [float(v) for v in np.mean([m.seed_values for m in comp], axis=0)])
        out[kind] = {"labels": labels, "mean": mean}
    return out


def _measure(per_replicate: np.ndarray, draws: Resamples) -> Measure:
    """(replicates, 1 + resamples) AUCs → the replicate mean on the full split and on each two-level resample."""
    if len(per_replicate) != draws.replicates.shape[1]:
        raise ValueError("a figure is missing for some replicate")  # attach_images checks the tables first
    resampled = two_level(per_replicate[:, 1:], draws.replicates, draws.inflation)
    return Measure(float(per_replicate[:, 0].mean()), resampled, [float(v) for v in per_replicate[:, 0]])


def _summary(m: Measure | None, ci: float) -> dict | None:
    if m is None or not math.isfinite(m.value):
        return None
    interval = percentile_ci(m.resampled, ci)
    if interval:  # the t-scaled replicate deviations can reach past an AUC's range
        interval = (max(0.0, interval[0]), min(1.0, interval[1]))
    return {"auc": m.value, "ci": list(interval) if interval else None,
            "replicate_sd": float(np.std(m.seed_values, ddof=1)) if len(m.seed_values) > 1 else None,
            "resamples": int(np.isfinite(m.resampled).sum())}


def compare(measures: dict[str, dict], baselines: list[str], ci: float) -> list[dict]:
    """PairAug minus each baseline on the same resamples, per kind's label mean; Holm over the baselines."""
    rows = []
    ours = measures[PAIRAUG]
    for kind in sorted(ours, key=kind_order):
        family, columns = [], []
        a = ours[kind]["mean"]
        for mix in baselines:
            b = measures[mix].get(kind, {}).get("mean")
            if a is None or b is None or not (math.isfinite(a.value) and math.isfinite(b.value)):
                continue
            diff = a.resampled - b.resampled
            interval = percentile_ci(diff, ci)
            family.append({"measure": kind, "baseline": mix, "delta": a.value - b.value,
                           "ci": list(interval) if interval else None, "p_value": bootstrap_p(diff),
                           "resamples": int(np.isfinite(diff).sum())})
            columns.append(b.seed_values)
        rerun = rerun_half_width(np.array([a.seed_values, *columns]).T, ci) if family else None
        for row, p_holm in zip(family, holm([r["p_value"] for r in family])):
            row["p_holm"] = p_holm
            row["verdict"] = verdict(tuple(row["ci"]) if row["ci"] else None, p_holm, 1 - ci)
            row["rerun_interval"] = None if rerun is None else [row["delta"] - rerun, row["delta"] + rerun]
        rows += family
    return rows


def ablation(scores: dict[str, pd.DataFrame], cfg: ReportConfig, seed: int, eval_dir: str | Path = "") -> dict:
    """The table (per mix, per kind: mean and per-label AUC with CI) and the verdict rows."""
    if not scores:
        return {"table": {}, "verdicts": [], "test_images": 0, "test_patients": 0}
    images = eval_images(scores, eval_dir)
    reps = same_replicates(scores, eval_dir)
    rng = np.random.default_rng(seed)
    counts = patient_resamples(images.n_patients, cfg.bootstrap_resamples, rng)
    # Row 0: every patient once (the full split's figure), computed in the same pass as the resamples.
    weights = np.ascontiguousarray(np.vstack([np.ones(images.n_patients), counts]).T).T
    draws = Resamples(weights, replicate_resamples(len(reps), cfg.bootstrap_resamples, rng),
                      replicate_inflation(len(reps), cfg.ci))
    measures = {mix: mix_measures(attach_images(df, images, scores_path(eval_dir, mix)), images, draws)
                for mix, df in scores.items()}
    table = {}
    for mix, kinds in measures.items():
        table[mix] = {"role": ("method" if mix == PAIRAUG else "reference" if mix in cfg.reference_mixes
                               else "baseline"),
                      "seeds": sorted(scores[mix]["seed"].unique().tolist(), key=_seed_key),
                      **{kind: {"mean": _summary(k["mean"], cfg.ci),
                                "labels": {lb: _summary(m, cfg.ci) for lb, m in k["labels"].items()}}
                         for kind, k in kinds.items()}}
    baselines = [m for m, row in table.items() if row["role"] == "baseline"]
    verdict_rows = compare(measures, baselines, cfg.ci) if PAIRAUG in measures else []
    return {"table": table, "verdicts": verdict_rows, "test_images": len(images.pair_ids),
            "test_patients": images.n_patients}


def same_replicates(scores: dict[str, pd.DataFrame], eval_dir: str | Path) -> list[str]:
    """The replicate seeds every mix was evaluated on (the same in all, or replicate r would not pair)."""
    first = next(iter(scores))
    reps = sorted(scores[first]["seed"].astype(str).unique().tolist(), key=_seed_key)
    for mix, df in scores.items():
        other = sorted(df["seed"].astype(str).unique().tolist(), key=_seed_key)
        if other != reps:
            raise InputError(f"its replicates {other} differ from {first}'s {reps} (rerun `dvc repro`: every mix "
                             "trains on the same `replicates`)", file=scores_path(eval_dir, mix), field="seed")
    return reps


def _seed_key(seed: str) -> tuple[int, str]:
    return (int(seed), "") if str(seed).isdigit() else (1 << 30, str(seed))


def _cell(s: dict | None) -> str:
    if s is None:
        return "–"
    return f"{s['auc']:.3f} [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}]" if s["ci"] else f"{s['auc']:.3f}"


def _p(p: float | None) -> str:
    return "–" if p is None else f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


SHORT = {"Atelectasis": "Atel.", "Cardiomegaly": "Cardio.", "Consolidation": "Consol.", "Edema": "Edema",
         "Pleural Effusion": "Effusion"}


def ablation_markdown(report: dict, cfg: ReportConfig, missing: list[str]) -> str:
    """metrics/ablation.md (report/templates/ablation.md): the table, then PairAug against each baseline."""
    table = report["table"]
    kinds = sorted({k for row in table.values() for k in row if k not in ("role", "seeds")}, key=kind_order)
    probes = [k for k in kinds if k != ZEROSHOT_KIND]
    mixes = []
    for mix, row in table.items():
        zs = row.get(ZEROSHOT_KIND, {"mean": None, "labels": {}})
        sd = zs["mean"]["replicate_sd"] if zs["mean"] and zs["mean"]["replicate_sd"] is not None else None
        name = f"`{mix}`" + (" (reference)" if row["role"] == "reference" else "")
        mixes.append([name, _cell(zs["mean"]), "–" if sd is None else f"{sd:.3f}",
                      *[_cell(zs["labels"].get(lb)) for lb in COMPETITION_LABELS],
                      *[_cell(row.get(k, {}).get("mean")) for k in probes]])
    return render("pairaug.report", "ablation.md", filters={"p": _p, "num": format}, report=report, cfg=cfg,
                  reps=sorted({len(row["seeds"]) for row in table.values()}), pct=f"{cfg.ci * 100:g}%",
                  coverage=COVERAGE, labels=[SHORT[lb] for lb in COMPETITION_LABELS], probes=probes, mixes=mixes,
                  missing=missing, verdicts=report["verdicts"])


def write_report(mixes: list[str], cfg: ReportConfig, seed: int, eval_dir: str | Path, out_md: str | Path,
                 out_json: str | Path, scores: dict[str, pd.DataFrame] | None = None) -> dict:
    """Gather data/eval/<mix>/scores.parquet into the ablation table and verdicts (Markdown + JSON);
    `scores`: those tables already loaded (`load_scores`)."""
    from pairaug.io import atomic_path, write_json

    scores = load_scores(eval_dir, mixes) if scores is None else scores
    missing = [m for m in mixes if m not in scores]
    report = ablation(scores, cfg, seed, eval_dir)
    settings = {"bootstrap_resamples": cfg.bootstrap_resamples, "ci": cfg.ci, "seed": seed,
                "reference_mixes": cfg.reference_mixes, "resampling_unit": "replicate and test patient",
                "coverage": COVERAGE}
    md = ablation_markdown(report, cfg, missing)  # before any write: a failure leaves both files as they were
    write_json(out_json, {**report, "missing_mixes": missing, "settings": settings})
    with atomic_path(out_md) as tmp:
        tmp.write_text(md)
    return report
