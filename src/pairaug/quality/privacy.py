"""The memorisation check (`privacy` stage): is any synthetic image a near-copy of a real train film?

For every synthetic image (every candidate of inter, intra and image_only, kept or not) its nearest
real *train* film in two spaces:

- embedding: 1 − cos(f_img(synthetic), f_img(train)) under the scorer (models/scorer), the space pruning
  judges images in;
- pixels: 1 − the normalised (Pearson) correlation of the two films at `pixel_size`, blind to brightness
  and contrast, so a re-windowed copy is still a copy.

A near-copy is closer to some train film than real films of *different patients* naturally are, in both
spaces: each threshold is the `quantile` of the nearest-train distances of the real *valid* films (split
by patient, so every valid film's nearest train film is another patient's). IntraAug edits a patient's
own film by design (`intra.init: inversion`), so for an intra image the films of its source patient are
left out of the search; its distance to its own source film is reported beside it (`source_*`).

Outputs: `data/privacy/images.parquet` (one row per synthetic image: nearest train pair and distance in
each space, `near_copy`, `kept`) — validate's suite reads `near_copy` as a per-pair fact and bounds the
share of near-copies among the kept pairs — `metrics/privacy.json` and `metrics/privacy_distances.png`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd

from pairaug.data.images import load_gray
from pairaug.data.schema import read_pairs
from pairaug.errors import InputError
from pairaug.io import atomic_path, write_parquet
from pairaug.measurement.images import resize_batch
from pairaug.models.checkpoints import folder_sha
from pairaug.models.scorer import Scorer
from pairaug.params import Params, Positive, Share

log = logging.getLogger(__name__)

SYNTHETIC_BRANCHES: tuple[str, ...] = ("inter", "intra", "image_only")
COLUMNS: tuple[str, ...] = ("pair_id", "branch", "source_pair_id", "image", "kept", "nn_embedding_pair_id",
                            "nn_embedding_distance", "nn_pixel_pair_id", "nn_pixel_distance",
                            "source_embedding_distance", "source_pixel_distance", "near_copy")


@dataclass
class PrivacyConfig(Params):
    # Near-copy thresholds: this quantile of the real valid films' nearest-train distances (per space).
    quantile: Annotated[float, Share] = 0.01
    # films compared at this size (the phantom's own; 64 suits 512 px RoentGen images)
    pixel_size: Annotated[int, Positive] = 32
    batch_size: Annotated[int, Positive] = 512  # images per scorer call, and query rows per similarity block


# ------------------------------------------------------------------------------------------- spaces


def pixel_vectors(images: np.ndarray, size: int) -> np.ndarray:
    """(N, size²) float32 rows with zero mean and unit norm: their dot product is the Pearson correlation
    (a flat image has a zero row: correlation 0 with everything)."""
    v = resize_batch(np.asarray(images, dtype=np.uint8), size).reshape(len(images), -1).astype(np.float32)
    v -= v.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


def nearest(query: np.ndarray, ref: np.ndarray, query_group: np.ndarray | None = None,
            ref_group: np.ndarray | None = None, block: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(index into `ref`, distance 1 − similarity) of each query row's most similar reference row, rows
    being unit vectors; a reference row of the query's own group (not None) is never its neighbour."""
    idx = np.zeros(len(query), dtype=np.int64)
    dist = np.full(len(query), np.nan)
    if not len(ref):
        return idx, dist
    for start in range(0, len(query), block):
        sims = query[start:start + block] @ ref.T
        if query_group is not None and ref_group is not None:
            q = query_group[start:start + block]
            sims[(q[:, None] == ref_group[None, :]) & pd.notna(q)[:, None]] = -np.inf
        best = np.argmax(sims, axis=1)
        top = sims[np.arange(len(best)), best]
        idx[start:start + block] = best
        dist[start:start + block] = np.where(np.isfinite(top), 1.0 - top, np.nan)
    return idx, np.clip(dist, 0.0, None)


# --------------------------------------------------------------------------------------------- check


@dataclass
class Sources:
    """What the check reads (the stage script names the paths: pairaug.layout)."""

    prepared: Path
    synthetic: Path  # <branch>/manifest.parquet
    pruned: Path
    scorer: Path


def _read(path: Path, what: str, stage: str) -> pd.DataFrame:
    if not path.exists():
        raise InputError(f"{what} not found (run `dvc repro {stage}`)", file=path)
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise InputError(f"cannot read Parquet: {e}", file=path) from None


def synthetic_images(synthetic: Path) -> pd.DataFrame:
    """Every generated image of the synthetic manifests, with its absolute path."""
    frames = []
    for branch in SYNTHETIC_BRANCHES:
        path = synthetic / branch / "manifest.parquet"
        m = _read(path, f"the {branch} manifest", f"{branch.replace('_', '-')}-generate")
        for col in ("pair_id", "source_pair_id", "image"):
            if col not in m.columns:
                raise InputError(f"missing column '{col}'", file=path, field=col)
        frames.append(m[["pair_id", "source_pair_id", "image"]].assign(
            branch=branch, path=[str(path.parent / rel) for rel in m["image"]]))
    return pd.concat(frames, ignore_index=True).sort_values("pair_id", kind="stable").reset_index(drop=True)


def check_memorisation(cfg: PrivacyConfig, scorer: Scorer, sources: Sources
                       ) -> tuple[pd.DataFrame, dict, dict[str, np.ndarray]]:
    """(the per-image table, metrics/privacy.json, the valid films' nearest-train distances per space) for
    every synthetic image; see the module doc."""
    src = sources
    real = read_pairs(src.prepared)
    root = Path(src.prepared).parent
    train = real[real["split"] == "train"].sort_values("pair_id").reset_index(drop=True)
    valid = real[real["split"] == "valid"].sort_values("pair_id").reset_index(drop=True)
    if train.empty or valid.empty:
        raise InputError("the memorisation check needs real train and valid films (the valid ones calibrate "
                         "the near-copy thresholds)", file=src.prepared, field="split")
    syn = synthetic_images(Path(src.synthetic))
    kept = set(_read(Path(src.pruned), "pruned pairs", "prune")["pair_id"])

    def films(paths: list[str]) -> np.ndarray:
        return np.stack([load_gray(p) for p in paths]) if paths else np.zeros((0, 1, 1), np.uint8)

    x_train, x_valid = films([str(root / r) for r in train["image"]]), films([str(root / r) for r in valid["image"]])
    x_syn = films(syn["path"].tolist())
    e_train, e_valid, e_syn = (scorer.encode_images(x) for x in (x_train, x_valid, x_syn))
    p_train, p_valid, p_syn = (pixel_vectors(x, cfg.pixel_size) for x in (x_train, x_valid, x_syn))

    # the natural distance between different patients: each valid film to its nearest train film
    _, valid_emb = nearest(e_valid, e_train, block=cfg.batch_size)
    _, valid_pix = nearest(p_valid, p_train, block=cfg.batch_size)
    thr_emb, thr_pix = float(np.quantile(valid_emb, cfg.quantile)), float(np.quantile(valid_pix, cfg.quantile))

    by_id = real.set_index("pair_id")
    train_patients = train["patient_id"].to_numpy(dtype=object)
    intra = (syn["branch"] == "intra").to_numpy()
    src_known = syn["source_pair_id"].isin(by_id.index).to_numpy()
    own_patient = np.where(intra & src_known, by_id["patient_id"].reindex(syn["source_pair_id"]).to_numpy(dtype=object),
                           None)
    ie, de = nearest(e_syn, e_train, own_patient, train_patients, cfg.batch_size)
    ip, dp = nearest(p_syn, p_train, own_patient, train_patients, cfg.batch_size)

    # intra: the distance to its own source film (close by design: the edit keeps the patient)
    train_pos = pd.Series(np.arange(len(train)), index=train["pair_id"])
    pos = train_pos.reindex(syn["source_pair_id"]).to_numpy()
    has_src = intra & ~np.isnan(pos)
    src_emb, src_pix = np.full(len(syn), np.nan), np.full(len(syn), np.nan)
    if has_src.any():
        k = pos[has_src].astype(np.int64)
        src_emb[has_src] = 1.0 - np.sum(e_syn[has_src] * e_train[k], axis=1)
        src_pix[has_src] = 1.0 - np.sum(p_syn[has_src] * p_train[k], axis=1)

    near = (de <= thr_emb) & (dp <= thr_pix)
    ids = train["pair_id"].to_numpy(dtype=object)
    table = pd.DataFrame({
        "pair_id": syn["pair_id"], "branch": syn["branch"], "source_pair_id": syn["source_pair_id"],
        "image": syn["image"], "kept": syn["pair_id"].isin(kept).to_numpy(),
        "nn_embedding_pair_id": np.where(np.isnan(de), None, ids[ie]), "nn_embedding_distance": de,
        "nn_pixel_pair_id": np.where(np.isnan(dp), None, ids[ip]), "nn_pixel_distance": dp,
        "source_embedding_distance": src_emb, "source_pixel_distance": np.clip(src_pix, 0.0, None),
        "near_copy": near,
    }, columns=list(COLUMNS))
    reference = {"embedding": valid_emb, "pixel": valid_pix}
    metrics = summarize(table, cfg, {"embedding": thr_emb, "pixel": thr_pix}, reference, folder_sha(Path(src.scorer)))
    return table, metrics, reference


def _q(values: np.ndarray) -> dict[str, float | None]:
    v = values[~np.isnan(values)]
    if not len(v):
        return {"min": None, "p01": None, "median": None}
    return {"min": round(float(v.min()), 6), "p01": round(float(np.quantile(v, 0.01)), 6),
            "median": round(float(np.median(v)), 6)}


def summarize(table: pd.DataFrame, cfg: PrivacyConfig, thresholds: dict[str, float],
              valid: dict[str, np.ndarray], scorer_sha: str) -> dict:
    """metrics/privacy.json: thresholds with how they were set, near-copies per branch (all / kept), the
    distance quantiles of the synthetic images and of the real valid films they are judged against."""
    branches = {}
    for branch in SYNTHETIC_BRANCHES:
        part = table[table["branch"] == branch]
        kept = part[part["kept"]]
        entry = {"images": len(part), "near_copies": int(part["near_copy"].sum()),
                 "kept": len(kept), "kept_near_copies": int(kept["near_copy"].sum()),
                 "kept_near_copy_share": round(float(kept["near_copy"].mean()), 6) if len(kept) else None,
                 "embedding_distance": _q(part["nn_embedding_distance"].to_numpy(dtype=float)),
                 "pixel_distance": _q(part["nn_pixel_distance"].to_numpy(dtype=float))}
        if branch == "intra":
            close = ((part["source_embedding_distance"] <= thresholds["embedding"])
                     & (part["source_pixel_distance"] <= thresholds["pixel"]))
            entry["own_source_film"] = {
                "embedding_distance": _q(part["source_embedding_distance"].to_numpy(dtype=float)),
                "pixel_distance": _q(part["source_pixel_distance"].to_numpy(dtype=float)),
                # disclosed, not gated: keeping the patient is what the edit is for
                "within_thresholds": int(close.sum()), "kept_within_thresholds": int((close & part["kept"]).sum()),
                "note": "an intra image is an edit of its source patient's film (left out of the near-copy "
                        "search): how close it stays to it, and how many are as close as a near-copy would be"}
        branches[branch] = entry
    kept = table[table["kept"]]
    copies = table[table["near_copy"]].sort_values(["nn_pixel_distance", "pair_id"]).head(10)
    return {
        "images": len(table), "near_copies": int(table["near_copy"].sum()),
        "near_copy_share": round(float(table["near_copy"].mean()), 6) if len(table) else None,
        "kept": len(kept), "kept_near_copies": int(kept["near_copy"].sum()),
        "kept_near_copy_share": round(float(kept["near_copy"].mean()), 6) if len(kept) else None,
        "thresholds": {
            "embedding": round(thresholds["embedding"], 6), "pixel": round(thresholds["pixel"], 6),
            "quantile": cfg.quantile, "pixel_size": cfg.pixel_size,
            "how": f"the {cfg.quantile} quantile of each real valid film's distance to its nearest real train "
                   "film (different patients: splits are by patient); a near-copy is at or below both",
        },
        "reference_valid_films": {"films": len(valid["pixel"]), "embedding_distance": _q(valid["embedding"]),
                                  "pixel_distance": _q(valid["pixel"])},
        "branches": branches,
        "scorer_sha": scorer_sha,
        "closest": [{"pair_id": r.pair_id, "branch": r.branch, "nn_pair_id": r.nn_pixel_pair_id,
                     "pixel_distance": round(float(r.nn_pixel_distance), 6),
                     "embedding_distance": round(float(r.nn_embedding_distance), 6), "kept": bool(r.kept)}
                    for r in copies.itertuples()],
    }


def near_copy_facts(pairs: pd.DataFrame, table_path: str | Path | None) -> pd.Series:
    """validate's per-pair fact `near_copy`: the privacy table's flag for each pair with a generated image;
    null for paraphrase pairs (the real film by design) and for pairs the check never saw (the suite
    requires a value for every generated image)."""
    flags: dict[str, bool] = {}
    if table_path is not None:
        table = _read(Path(table_path), "the memorisation check's table", "privacy")
        flags = dict(zip(table["pair_id"], table["near_copy"].astype(bool)))
    ids = pairs["pair_id"] if "pair_id" in pairs.columns else pd.Series([None] * len(pairs), index=pairs.index)
    return pd.Series(pd.array([flags.get(i) for i in ids], dtype="boolean"), index=pairs.index)


def write_outputs(table: pd.DataFrame, out_dir: str | Path) -> None:
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        write_parquet(table, tmp / "images.parquet")


def plot_distances(table: pd.DataFrame, valid: dict, metrics: dict, path: str | Path) -> None:
    """Histograms of the nearest-train distances (synthetic per branch, real valid films as the reference),
    one panel per space, the near-copy thresholds marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    for ax, space, col in ((axes[0], "pixel", "nn_pixel_distance"), (axes[1], "embedding", "nn_embedding_distance")):
        series = {b: table.loc[table["branch"] == b, col].dropna().to_numpy() for b in SYNTHETIC_BRANCHES}
        series["real valid"] = np.asarray(valid[space])
        values = np.concatenate([v for v in series.values() if len(v)]) if any(len(v) for v in series.values()) else [0, 1]
        bins = np.linspace(0.0, float(np.quantile(values, 0.99)) * 1.05 or 1.0, 40)
        for name, v in series.items():
            if len(v):
                ax.hist(np.clip(v, 0, bins[-1]), bins=bins, histtype="step", density=True, linewidth=1.3,
                        label=name, linestyle=":" if name == "real valid" else "-")
        ax.axvline(metrics["thresholds"][space], color="black", linestyle="--", linewidth=1, label="near-copy threshold")
        ax.set(xlabel=f"distance to the nearest real train film ({space})", ylabel="density")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"memorisation check: {metrics['near_copies']} near-copies of {metrics['images']} synthetic images",
                 fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})  # no version stamp: same bytes
    plt.close(fig)
