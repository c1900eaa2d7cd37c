"""The `evaluate@mix` stage's logic: zero-shot and linear-probe AUCs of every seed's model of a mix,
and the per-test-image scores behind them (what the report's patient bootstrap resamples)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pairaug.data.schema import COMPETITION_LABELS, LABELS, read_pairs
from pairaug.evaluate.label_sets import LabelSetConfig, load_label_set
from pairaug.measurement.encoder import ImageEncoding, VisionLanguageModel
from pairaug.measurement.images import load_split_images
from pairaug.measurement.linear_probe import linear_probe
from pairaug.measurement.scores import SCORE_COLUMNS, ZEROSHOT_KIND, probe_kind
from pairaug.measurement.zeroshot import (
    ZeroShotPrompts,
    auc_per_label,
    class_embeddings,
    roc_points,
    zero_shot_probs,
)
from pairaug.params import Params


@dataclass
class EvaluateConfig(Params):
    prompts: ZeroShotPrompts = field(default_factory=ZeroShotPrompts)
    probe_fractions: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])
    probe_draws: int = 5  # repeated draws of the small fractions, averaged
    batch_size: int = 128  # images per vision-tower call (CPU: ~1.5x the images/s of 512)
    # Label-only sets scored besides the test split (CheXpert, NIH): name → where and how to read it.
    label_sets: dict[str, LabelSetConfig] = field(default_factory=dict)


def binary_targets(df: pd.DataFrame, labels: list[str]) -> dict[str, np.ndarray]:
    """Ground truth for AUC: positive = 1; negative, uncertain or unmentioned = 0."""
    return {label: (df[label].fillna(0).to_numpy() == 1) for label in labels}


def evaluable_labels(df: pd.DataFrame) -> list[str]:
    return [label for label in LABELS if label != "No Finding" and (df[label] == 1).any() and (df[label] != 1).any()]


def evaluate_model(vlp: VisionLanguageModel, cfg: EvaluateConfig, splits: dict[str, tuple[torch.Tensor, pd.DataFrame]],
                   seed: int, label_sets: dict[str, tuple[torch.Tensor, pd.DataFrame]] | None = None,
                   ) -> tuple[dict, list[dict], pd.DataFrame]:
    """Zero-shot and linear-probe AUCs on the test split (and each label set); ROC rows and per-image
    scores (`score_rows`) of the test split."""
    encoded = {name: vlp.encode(imgs) for name, (imgs, _) in splits.items()}  # each image through the tower once
    test = score_set(vlp, cfg, splits, encoded, encoded["test"], splits["test"][1], seed)
    result = test.result
    for name, (images, rows) in (label_sets or {}).items():
        result.setdefault("label_sets", {})[name] = score_set(vlp, cfg, splits, encoded, vlp.encode(images), rows,
                                                              seed).result
    return result, roc_points(test.probs, test.targets, test.labels), score_rows(splits["test"][1], test)


@dataclass
class SetScores:
    """One evaluation set's AUCs (`result`) and the per-image scores behind them."""
    result: dict
    labels: list[str]
    targets: dict[str, np.ndarray]
    probs: np.ndarray  # (N, labels) zero-shot probabilities
    probe_scores: dict[str, dict[str, np.ndarray]]  # fraction → label → (N,) probe decision score


def score_set(vlp: VisionLanguageModel, cfg: EvaluateConfig, splits: dict[str, tuple[torch.Tensor, pd.DataFrame]],
              encoded: dict[str, ImageEncoding], images: ImageEncoding, rows: pd.DataFrame, seed: int) -> SetScores:
    """One evaluation set: zero-shot AUCs, and probe AUCs of heads trained on the prepared train split."""
    labels = evaluable_labels(rows)
    targets = binary_targets(rows, labels)
    pos, neg = class_embeddings(vlp.encode_texts, labels, cfg.prompts.positive, cfg.prompts.negative)
    probs = zero_shot_probs(images.embeddings, pos, neg)
    zs = auc_per_label(probs, targets, labels)
    competition = [zs[k] for k in COMPETITION_LABELS if zs.get(k) is not None]
    probe = linear_probe(encoded["train"].features, binary_targets(splits["train"][1], labels), encoded["valid"].features,
                         binary_targets(splits["valid"][1], labels), images.features, targets, labels,
                         cfg.probe_fractions, seed, cfg.probe_draws)
    probe_means = {frac: _mean([v for k, v in aucs.items() if k in COMPETITION_LABELS])
                   for frac, aucs in probe.auc.items()}
    result = {"zeroshot": {"auc": zs, "mean_auc": _mean(competition)},
              "linear_probe": {"auc": probe.auc, "mean_auc": probe_means}}
    return SetScores(result, labels, targets, probs, probe.scores)


def score_rows(rows: pd.DataFrame, scored: SetScores) -> pd.DataFrame:
    """The set's rows of the scores table (`pairaug.measurement.scores`; all but `seed`), per kind and
    label in the set's row order."""
    kinds = {ZEROSHOT_KIND: {label: scored.probs[:, j] for j, label in enumerate(scored.labels)},
             **{probe_kind(frac): per_label for frac, per_label in scored.probe_scores.items()}}
    parts = [pd.DataFrame({"kind": kind, "label": label, "pair_id": rows["pair_id"].to_numpy(),
                           "patient_id": rows["patient_id"].to_numpy(), "y": scored.targets[label].astype(np.int8),
                           "score": np.asarray(score, dtype=np.float64)})
             for kind, per_label in kinds.items() for label, score in per_label.items()]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=SCORE_COLUMNS[1:])


def load_splits(prepared: str | Path) -> dict[str, tuple[torch.Tensor, pd.DataFrame]]:
    prepared = Path(prepared)
    pairs = read_pairs(prepared)
    return {split: (load_split_images(part, prepared.parent), part)
            for split, part in ((s, pairs[pairs["split"] == s]) for s in ("train", "valid", "test"))}


def evaluate_mix(mix_dir: str | Path, cfg: EvaluateConfig, prepared: str | Path, seed: int
                 ) -> tuple[dict, list[dict], pd.DataFrame]:
    """Evaluate every seed-<r>/ model (one per replicate) under `mix_dir`: the results per replicate with
    mean ± std over them, the ROC rows, and the per-test-image scores table (`pairaug.measurement.scores`)."""
    splits = load_splits(prepared)
    size = int(splits["test"][0].shape[-1])  # label sets get the prepared images' size
    label_sets = {name: load_label_set(set_cfg, size) for name, set_cfg in cfg.label_sets.items()}
    per_seed, roc, scores = {}, [], []
    for folder in sorted(Path(mix_dir).glob("seed-*")):
        model_seed = folder.name.removeprefix("seed-")
        # The probe's draws of the small fractions are the replicate's own, as its training seed is.
        probe_seed = seed * 1000 + int(model_seed) if model_seed.isdigit() else seed
        result, rows, seed_scores = evaluate_model(VisionLanguageModel(folder, cfg.batch_size), cfg, splits,
                                                   probe_seed, label_sets)
        per_seed[model_seed] = result
        roc += [{**r, "seed": model_seed} for r in rows]
        scores.append(seed_scores.assign(seed=model_seed)[SCORE_COLUMNS])
    table = pd.concat(scores, ignore_index=True) if scores else pd.DataFrame(columns=SCORE_COLUMNS)
    return {"seeds": per_seed, "summary": summarise(per_seed)}, roc, table


def summarise(per_seed: dict[str, dict]) -> dict:
    """Mean and std over seeds of every number in the per-seed results (same structure)."""
    def walk(items: list) -> object:
        first = items[0]
        if isinstance(first, dict):
            return {k: walk([it.get(k) for it in items]) for k in first}
        values = [v for v in items if isinstance(v, (int, float)) and v is not None]
        if not values:
            return None
        return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                "n": len(values)}
    return walk(list(per_seed.values())) if per_seed else {}


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None
