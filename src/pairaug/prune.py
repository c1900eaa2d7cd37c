"""The `prune` stage's logic (PairAug step 4): score every synthetic candidate pair, keep the aligned ones.

Branches and their scores (all cosines between the scorer's embeddings, `f_img` / `f_txt`):

- `inter`, `image_only`, `paraphrase`: S_a = cos(f_img(x̃), f_txt(ỹ)); keep iff S_a > τ. τ is calibrated on
  the scorer in use (PairAug's 0.3 is on MedCLIP's scale; an embedded scorer's unrelated pairs average
  ≈ 0.4): the `prune.inter_tau_quantile` quantile of S_a over *mismatched* real valid pairs (each valid
  film with another film's report), so a kept pair aligns better than that share of unrelated pairings
  on any scorer. `prune.inter_tau` fixes τ by hand instead. The baselines go through the same rule so
  every augmentation mix is pruned alike. `paraphrase` pairs are the real train image with its
  paraphrased report (the text-only baseline).
- `intra` (x' edited image, y' its report, x / y the REAL image and report of the source pair):
  S1 = cos(f_img(x'), f_txt(y')), S2 = cos(f_img(x'), f_img(x)),
  S3 = cos(f_img(x') − f_img(x), f_txt(y') − f_txt(y)); keep iff S_k > μ_k / s − λ for k = 1, 2, 3,
  with μ_k the mean of S_k over all intra candidates (PairAug's code: s = 1.0, λ = 0.003). Each report has
  `intra.candidates` edits; of those that pass, the `prune.intra_per_report` best are kept (the others:
  reason "outranked"): by S1 + S2 + S3 (PairAug's ranking), or with `prune.intra_rank: change` by
  `change_read` first. The scorer's cosines barely see whether x' draws the change (on the default run
  S2 correlates about −0.5 with it), so `change_read` reads it: the share of the findings y' changed that the
  `select` pixel probe (fit on half of the public pool's patients, measurement/edit_readout.py) reads in
  x' as y' states them; with `prune.intra_min_change_read` a candidate below it is not kept.

Every distinct image and text is encoded once (one real image serves a paraphrase and an intra
candidate, one real report several intra candidates), in batches, in a fixed (sorted) order so a rerun
gives the same bytes. Outputs: `candidates.parquet` (every candidate with its scores, thresholds,
`kept` and `reason`) and `pairs.parquet` (the kept pairs of all branches in one schema; image paths
relative to the output folder).

Review decisions (`review/decisions.csv`, written by `pairaug review`) come last: a rejected pair is never
kept whatever its scores (and an intra candidate rejected leaves its report's place to the next best);
an accepted one keeps its score decision unless `prune.review.accepted_override` keeps it regardless. A
decision whose image sha256 is not the candidate's any more is stale: ignored, and listed in
metrics/prune.json and a log line. Each pair's applied decision is its `review` column.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pairaug.data.decisions import read_decisions
from pairaug.data.images import load_gray
from pairaug.data.schema import LABELS, read_pairs
from pairaug.errors import InputError, ParamError
from pairaug.hashing import file_digest, seed_from, stable_hash
from pairaug.io import atomic_path, write_parquet
from pairaug.measurement.edit_readout import fit_readout_probe, reads_new
from pairaug.models.scorer import Scorer
from pairaug.params import in_range, positive

log = logging.getLogger(__name__)

BRANCHES: tuple[str, ...] = ("inter", "intra", "image_only", "paraphrase")
SYNTHETIC_BRANCHES: tuple[str, ...] = ("inter", "intra", "image_only")  # branches with a generated manifest
ALIGNMENT_BRANCHES: tuple[str, ...] = ("inter", "image_only", "paraphrase")  # kept by S_a > τ
REWRITE_TASK = {"inter": "inter", "intra": "intra", "paraphrase": "paraphrase"}  # branch → data/rewritten/<task>
SCORES: tuple[str, ...] = ("s_a", "s1", "s2", "s3")
THRESHOLDS: tuple[str, ...] = ("tau", "thr_s1", "thr_s2", "thr_s3")  # the threshold each score must exceed
TEXT_COLUMNS: tuple[str, ...] = ("pair_id", "branch", "source_pair_id", "patient_id", "report", "source_report",
                                 "image", "image_sha256")
# change_read: intra only, the select probe's reading of the change (NaN: no readable finding changed)
PAIR_COLUMNS: tuple[str, ...] = (*TEXT_COLUMNS, "replicate", *SCORES, *THRESHOLDS, "change_read", *LABELS,
                                 "review")  # review: the decision applied
CANDIDATE_COLUMNS: tuple[str, ...] = (*PAIR_COLUMNS, "kept", "reason")
INTRA_RANKS: tuple[str, ...] = ("scores", "change")
MANIFEST_REQUIRED: tuple[str, ...] = ("pair_id", "source_pair_id", "report", "image", "image_sha256")


@dataclass
class ReviewConfig:
    accepted_override: bool = False  # true: a pair accepted in review is kept whatever its scores


@dataclass
class PruneConfig:
    inter_tau: float | None = None  # a fixed S_a threshold; null: calibrated (inter_tau_quantile)
    inter_tau_quantile: float = 0.9  # τ = this quantile of S_a over mismatched real valid pairs
    intra_scale: float = 1.0  # s in S_k > μ_k / s − λ
    intra_lambda: float = 0.003  # λ in S_k > μ_k / s − λ
    intra_per_report: int = 1  # of a report's candidates that pass, keep this many (the best by intra_rank)
    intra_rank: str = "scores"  # scores: S1 + S2 + S3 (PairAug); change: change_read, then S1 + S2 + S3
    intra_min_change_read: float | None = None  # keep an intra candidate only if change_read >= this; null: off
    batch_size: int = 512  # images / texts per scorer call
    review: ReviewConfig = field(default_factory=ReviewConfig)  # how review/decisions.csv is applied

    def validate(self, prefix: str) -> None:
        if self.inter_tau is not None:
            in_range(prefix, "inter_tau", self.inter_tau, -1.0, 1.0)
        in_range(prefix, "inter_tau_quantile", self.inter_tau_quantile, 0.0, 1.0)
        positive(prefix, intra_scale=self.intra_scale, batch_size=self.batch_size,
                 intra_per_report=self.intra_per_report)
        if self.intra_rank not in INTRA_RANKS:
            raise ParamError(f"{prefix}.intra_rank", f"must be one of {', '.join(INTRA_RANKS)}, got {self.intra_rank!r}")
        if self.intra_min_change_read is not None:
            in_range(prefix, "intra_min_change_read", self.intra_min_change_read, 0.0, 1.0)
        if not np.isfinite(self.intra_lambda):
            raise ParamError(f"{prefix}.intra_lambda", f"must be a finite number, got {self.intra_lambda!r}")


# ------------------------------------------------------------------------------------------- scores


def cosine_rows(a: np.ndarray, b: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Row-wise cosine similarity in float64 (0 where a row is the zero vector, as torch's cosine_similarity)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    num = np.einsum("ij,ij->i", a, b)
    den = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), eps)
    return np.clip(num / den, -1.0, 1.0)  # rounding can take |cos| a hair past 1


def alignment_scores(img: np.ndarray, txt: np.ndarray) -> np.ndarray:
    """S_a = cos(f_img(x), f_txt(y)) per row."""
    return cosine_rows(img, txt)


def intra_scores(img_new: np.ndarray, txt_new: np.ndarray, img_src: np.ndarray,
                 txt_src: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S1, S2, S3) per row: pair alignment, same patient, and the image changed as the report changed."""
    img_new, txt_new = _unit(img_new), _unit(txt_new)
    img_src, txt_src = _unit(img_src), _unit(txt_src)
    return (cosine_rows(img_new, txt_new), cosine_rows(img_new, img_src),
            cosine_rows(img_new - img_src, txt_new - txt_src))


def _unit(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows (the scorer's embeddings already are; this makes the scores scale-free)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def intra_thresholds(s1: np.ndarray, s2: np.ndarray, s3: np.ndarray, scale: float, lam: float) -> np.ndarray:
    """[μ_1 / s − λ, μ_2 / s − λ, μ_3 / s − λ] with μ_k the mean of S_k over all intra candidates."""
    if len(s1) == 0:
        return np.full(3, np.nan)
    return np.array([np.mean(s) / scale - lam for s in (s1, s2, s3)], dtype=np.float64)


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation with no fixed point: one cycle through a random order (n >= 2)."""
    order = np.random.default_rng(seed).permutation(n)
    other = np.empty(n, dtype=int)
    other[order] = np.roll(order, 1)
    return other


def calibrate_tau(scorer: Scorer, images: list[str], reports: list[str], quantile: float, seed: int,
                  batch_size: int = 512, source: str | Path | None = None) -> dict:
    """τ from the scorer's own scale: the `quantile` of cos(f_img(x_i), f_txt(y_π(i))) over real pairs with
    a derangement π (every film meets another film's report), next to the matched pairs' figures."""
    if len(images) < 2:
        raise InputError("prune: at least 2 real valid pairs are needed to calibrate inter_tau "
                         "(or set prune.inter_tau)", file=source, field="split")
    other = derangement(len(images), seed)
    img = np.concatenate([scorer.encode_images(images[s:s + batch_size]) for s in range(0, len(images), batch_size)])
    txt = np.concatenate([scorer.encode_texts(reports[s:s + batch_size]) for s in range(0, len(reports), batch_size)])
    matched, mismatched = alignment_scores(img, txt), alignment_scores(img, txt[other])
    tau = float(np.quantile(mismatched, quantile))
    return {"tau": tau, "quantile": quantile, "pairs": len(images), "mismatched_mean": float(mismatched.mean()),
            "matched_mean": float(matched.mean()), "matched_above_tau": float((matched > tau).mean()),
            "source": "valid split, each film with another film's report"}


# ----------------------------------------------------------------------------------------- candidates


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


def _abs(path: str | Path) -> str:
    """An absolute path without resolving symlinks (DVC may link data files into its cache)."""
    return os.path.abspath(path)


def load_candidates(sources: Sources, replicates: Sequence[int] = (0,)) -> pd.DataFrame:
    """Every candidate of every branch and replicate: ids, texts, absolute image paths (`image_abs`,
    `real_image`), labels. Generated branches carry their replicate; each replicate has its own copy of
    the paraphrase pairs (the rewrite draws nothing per replicate, pruning's τ does)."""
    real = read_pairs(sources.prepared)
    real_root = sources.prepared.parent
    real = real.assign(real_image=[_abs(real_root / p) for p in real["image"]]).set_index("pair_id")
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
                           "image_abs": [_abs(path.parent / p) for p in man["image"]],
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


# ----------------------------------------------------------------------------------------- scoring


def encode_unique(scorer: Scorer, images: list[str], texts: list[str], batch_size: int,
                  progress: bool = True) -> tuple[dict[str, int], np.ndarray, dict[str, int], np.ndarray]:
    """Encode each distinct image path and text once, in sorted order: (index, embeddings) per modality."""
    img_keys = sorted(set(images))
    txt_keys = sorted(set(texts))
    bar = tqdm(total=len(img_keys) + len(txt_keys), desc="prune-score", unit="item", disable=None if progress else True)
    with bar:
        img = _encode_in_chunks(scorer.encode_images, img_keys, batch_size, bar)
        txt = _encode_in_chunks(scorer.encode_texts, txt_keys, batch_size, bar)
    return {k: i for i, k in enumerate(img_keys)}, img, {k: i for i, k in enumerate(txt_keys)}, txt


def _encode_in_chunks(encode, items: list, batch_size: int, bar: tqdm) -> np.ndarray:
    out = []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        out.append(np.asarray(encode(chunk), dtype=np.float32))
        bar.update(len(chunk))
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def review_decisions(cands: pd.DataFrame, path: Path) -> tuple[pd.Series, dict]:
    """The decisions of `path` that apply (pair id → verdict), and what the metrics say about them.

    A decision naming a pair that is not a candidate is an error (InputError naming its line); one whose
    image sha256 is not the candidate's is stale: left out, listed and logged."""
    decisions = read_decisions(path, known_pairs=set(cands["pair_id"]))
    current = cands.set_index("pair_id")["image_sha256"]
    stale = decisions["image_sha256"].to_numpy() != current.reindex(decisions["pair_id"]).to_numpy()
    live = decisions[~stale]
    info: dict = {"file": str(path), "decisions": len(decisions),
                  "applied": {v: int((live["decision"] == v).sum()) for v in ("accept", "reject", "flag")},
                  "stale": [{"pair_id": r.pair_id, "line": int(r.line), "decision": r.decision}
                            for r in decisions[stale].itertuples()]}
    if info["stale"]:
        log.warning("prune: %d stale review decision(s) ignored, their image changed since the review: %s",
                    len(info["stale"]), ", ".join(f"{path} line {d['line']} ({d['decision']} {d['pair_id']})"
                                                  for d in info["stale"]))
    if len(live):
        log.info("prune: review decisions applied from %s: %s", path,
                 ", ".join(f"{n} {v}" for v, n in info["applied"].items()))
    return live.set_index("pair_id")["decision"], info


def score_candidates(cands: pd.DataFrame, scorer: Scorer, cfg: PruneConfig, tau: float,
                     progress: bool = True, review: pd.Series | None = None) -> pd.DataFrame:
    """Add scores, thresholds, `kept`, `reason` and `review` to the candidates (see the module docstring);
    `review`: pair id → the review verdict to apply (from `review_decisions`)."""
    df = cands.copy()
    intra = (df["branch"] == "intra").to_numpy()
    images = df["image_abs"].tolist() + df.loc[intra, "real_image"].tolist()
    texts = df["report"].tolist() + df.loc[intra, "source_report"].tolist()
    img_ix, img, txt_ix, txt = encode_unique(scorer, images, texts, cfg.batch_size, progress)

    def emb(table: np.ndarray, index: dict[str, int], keys: pd.Series) -> np.ndarray:
        return table[[index[k] for k in keys]] if len(keys) else np.zeros((0, table.shape[1]), table.dtype)

    for col in (*SCORES, *THRESHOLDS):
        df[col] = np.nan
    align = ~intra
    sub = df[align]
    df.loc[align, "s_a"] = alignment_scores(emb(img, img_ix, sub["image_abs"]), emb(txt, txt_ix, sub["report"]))
    df.loc[align, "tau"] = tau
    sub = df[intra]
    s1, s2, s3 = intra_scores(emb(img, img_ix, sub["image_abs"]), emb(txt, txt_ix, sub["report"]),
                              emb(img, img_ix, sub["real_image"]), emb(txt, txt_ix, sub["source_report"]))
    thr = intra_thresholds(s1, s2, s3, cfg.intra_scale, cfg.intra_lambda)
    for k, (name, values) in enumerate((("s1", s1), ("s2", s2), ("s3", s3))):
        df.loc[intra, name] = values
        df.loc[intra, f"thr_{name}"] = thr[k]
    kept = np.ones(len(df), dtype=bool)
    reasons: list[list[str]] = [[] for _ in range(len(df))]
    for score, threshold in zip(SCORES, THRESHOLDS):
        has = df[score].notna().to_numpy()
        below = has & ~(df[score].to_numpy() > df[threshold].to_numpy())
        kept &= ~below
        for i in np.flatnonzero(below):
            reasons[i].append(f"{score} {df[score].iat[i]:.4f} <= {threshold} {df[threshold].iat[i]:.4f}")
    if "change_read" not in df.columns:
        df["change_read"] = np.nan
    if cfg.intra_min_change_read is not None:
        read = df["change_read"].to_numpy(dtype=float)
        low = intra & ~(read >= cfg.intra_min_change_read)  # NaN: no finding the probe reads changed
        kept &= ~low
        for i in np.flatnonzero(low):
            reasons[i].append("change_read n/a: no changed finding the probe reads" if np.isnan(read[i]) else
                              f"change_read {read[i]:.2f} < intra_min_change_read {cfg.intra_min_change_read}")
    verdict = (df["pair_id"].map(review) if review is not None else pd.Series(np.nan, index=df.index))
    verdict = verdict.fillna("").astype(str).to_numpy()
    rejected = verdict == "reject"
    forced = (verdict == "accept") & cfg.review.accepted_override
    # A rejected intra candidate does not outrank the others of its report: the next best takes its place.
    outranked = _outranked(df, kept & ~rejected, cfg.intra_per_report, cfg.intra_rank)
    for i in np.flatnonzero(outranked):
        reasons[i].append(f"outranked: {cfg.intra_per_report} better candidate(s) of its report passed")
    by_scores = kept & ~outranked & ~rejected
    for i in np.flatnonzero(rejected):
        reasons[i].append("rejected in review")
    df["kept"] = by_scores | forced
    df["reason"] = ["kept" if k and not r else f"kept: accepted in review over {'; '.join(r)}" if k
                    else "; ".join(r) for k, r in zip(df["kept"], reasons)]
    df["review"] = verdict
    return df


def change_reads(cands: pd.DataFrame, prepared: Path, pool: Path) -> np.ndarray:
    """Per candidate, the share of the findings its report changed that the `select` probe (fit on the
    pool's films, never edited) reads in the intra image as the report states them; NaN for other branches."""
    out = np.full(len(cands), np.nan)
    rows = np.flatnonzero((cands["branch"] == "intra").to_numpy())
    if not len(rows):
        return out
    if not pool.exists():
        raise InputError("the public pool's pairs are not there (intra selection reads the change with a probe fit "
                         "on its films; run `dvc repro prepare-pool`)", file=pool)
    probe, thresholds = fit_readout_probe(pool, reader="select")
    sub = cands.iloc[rows]
    source_labels = read_pairs(prepared).set_index("pair_id").loc[sub["source_pair_id"], list(LABELS)]
    edited = np.stack([load_gray(path) for path in sub["image_abs"]])
    out[rows] = reads_new(probe, thresholds, edited, source_labels.reset_index(drop=True),
                          sub.reset_index(drop=True))[1]
    return out


def _outranked(df: pd.DataFrame, passed: np.ndarray, per_report: int, rank_by: str = "scores") -> np.ndarray:
    """Intra candidates that passed but are not among the `per_report` best of their report: by S1 + S2 + S3,
    or (rank_by "change") by change_read first."""
    out = np.zeros(len(df), dtype=bool)
    rows = np.flatnonzero(passed & (df["branch"] == "intra").to_numpy())
    if not len(rows):
        return out
    sub = df.iloc[rows]
    read = sub["change_read"].fillna(-1.0) if rank_by == "change" else 0.0
    rank = (sub.assign(_read=read, _total=sub["s1"] + sub["s2"] + sub["s3"])
            .sort_values(["source_pair_id", "report", "_read", "_total", "pair_id"],
                         ascending=[True, True, False, False, True])
            .groupby(["source_pair_id", "report"], sort=False).cumcount())
    out[rows] = (rank.reindex(sub.index) >= per_report).to_numpy()
    return out


# ---------------------------------------------------------------------------------------- outputs


def finalize(scored: pd.DataFrame, out_dir: Path) -> pd.DataFrame:
    """Candidates in the output schema: image paths relative to `out_dir`, fixed column order and dtypes."""
    df = scored.copy()
    if "change_read" not in df.columns:  # scored without the change reader
        df["change_read"] = np.nan
    base = _abs(out_dir)
    df["image"] = [Path(os.path.relpath(p, base)).as_posix() for p in df["image_abs"]]
    df = df.sort_values(["branch", "replicate", "pair_id"], key=_branch_order).reset_index(drop=True)
    df = df[list(CANDIDATE_COLUMNS)]
    for col in (*TEXT_COLUMNS, "reason", "review"):
        df[col] = df[col].astype(str)
    for col in (*SCORES, *THRESHOLDS, "change_read"):
        df[col] = df[col].astype("float64")
    df["replicate"] = df["replicate"].astype("int64")
    df["kept"] = df["kept"].astype(bool)
    return df


def _branch_order(col: pd.Series) -> pd.Series:
    return col.map(BRANCHES.index) if col.name == "branch" else col


def summarize(candidates: pd.DataFrame, cfg: PruneConfig, tau: dict, review: dict | None = None) -> dict:
    """metrics/prune.json: kept / total per branch, score means, thresholds (τ with how it was set), and
    the review decisions applied (stale ones listed)."""
    out: dict = {"branches": {}, "tau": tau,
                 "params": {"inter_tau": cfg.inter_tau, "inter_tau_quantile": cfg.inter_tau_quantile,
                            "intra_scale": cfg.intra_scale, "intra_lambda": cfg.intra_lambda,
                            "intra_per_report": cfg.intra_per_report, "intra_rank": cfg.intra_rank,
                            "intra_min_change_read": cfg.intra_min_change_read,
                            "review": {"accepted_override": cfg.review.accepted_override}}}
    for branch in BRANCHES:
        sub = candidates[candidates["branch"] == branch]
        row: dict = {"total": len(sub), "kept": int(sub["kept"].sum()),
                     "kept_fraction": round(float(sub["kept"].mean()), 4) if len(sub) else None,
                     "rejected_in_review": int((sub["review"] == "reject").sum()),
                     "kept_per_replicate": {str(r): int(k) for r, k in sub.groupby("replicate")["kept"].sum().items()}}
        scores = ("s_a",) if branch in ALIGNMENT_BRANCHES else ("s1", "s2", "s3", "change_read")
        for score in scores:
            row[f"{score}_mean"] = _round(sub[score].mean())
            row[f"{score}_kept_mean"] = _round(sub.loc[sub["kept"], score].mean())
        if branch in ALIGNMENT_BRANCHES:
            row["tau"] = _round(tau["tau"])
        else:
            for score in scores[:3]:
                row[f"thr_{score}"] = _round(sub[f"thr_{score}"].mean()) if len(sub) else None  # over replicates
        out["branches"][branch] = row
    out["total"] = len(candidates)
    out["kept"] = int(candidates["kept"].sum())
    out["review"] = {**(review or {"decisions": 0, "applied": {}, "stale": []}),
                     "kept_by_override": int((candidates["kept"] & candidates["reason"].str.startswith("kept: ")).sum())}
    return out


def _round(x: float) -> float | None:
    return None if pd.isna(x) else round(float(x), 4)


def plot_scores(candidates: pd.DataFrame, path: str | Path) -> None:
    """Score histograms with the thresholds marked: S_a per alignment branch, then S1, S2, S3 of intra."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    bins = np.linspace(-1, 1, 81)
    ax = axes[0]
    for branch in ALIGNMENT_BRANCHES:
        sub = candidates[candidates["branch"] == branch]
        if len(sub):
            ax.hist(sub["s_a"], bins=bins, histtype="step", label=f"{branch} ({int(sub['kept'].sum())}/{len(sub)} kept)")
    tau = candidates["tau"].dropna()
    if len(tau):
        ax.axvline(tau.mean(), color="k", ls="--", label=f"τ = {tau.mean():.3f}")
    ax.set_title("S_a = cos(image, report)")
    ax.legend(fontsize=7, loc="upper left")
    intra = candidates[candidates["branch"] == "intra"]
    titles = {"s1": "intra S1 = cos(x', y')", "s2": "intra S2 = cos(x', x)", "s3": "intra S3 = cos(x'−x, y'−y)"}
    for ax, score in zip(axes[1:], ("s1", "s2", "s3")):
        if len(intra):
            ax.hist(intra[score], bins=bins, color="tab:purple", alpha=0.7)
            thr = float(intra[f"thr_{score}"].mean())
            ax.axvline(thr, color="k", ls="--", label=f"μ/s − λ = {thr:.3f}")
            ax.legend(fontsize=7, loc="upper left")
        ax.set_title(titles[score] + (f" ({int(intra['kept'].sum())}/{len(intra)} kept)" if score == "s1" else ""))
    for ax in axes:
        ax.set_xlabel("cosine")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80, metadata={"Software": None})  # no version stamp: same bytes
    plt.close(fig)


def prune(cfg: PruneConfig, scorer: Scorer, out_dir: str | Path, sources: Sources,
          progress: bool = True, seed: int = 0, replicates: Sequence[int] = (0,)) -> tuple[pd.DataFrame, dict]:
    """Write `out_dir/{candidates,pairs}.parquet` atomically; return (candidates, metrics). Each replicate
    is pruned on its own: its τ draw (the derangement), its intra means μ_k."""
    out_dir = Path(out_dir)
    cands = load_candidates(sources, replicates)
    review, review_info = review_decisions(cands, sources.decisions)  # a broken decisions file fails before scoring
    taus = {rep: replicate_tau(cfg, scorer, sources, seed, rep) for rep in replicates}
    log.info("prune: τ = %s (%s)", ", ".join(f"{t['tau']:.4f}" for t in taus.values()),
             next(iter(taus.values()))["source"])
    log.info("prune: %d candidates (%s)", len(cands), ", ".join(
        f"{b} {int((cands['branch'] == b).sum())}" for b in BRANCHES))
    if cfg.intra_rank == "change" or cfg.intra_min_change_read is not None:
        cands["change_read"] = change_reads(cands, sources.prepared, sources.pool)
    scored = pd.concat([score_candidates(cands[cands["replicate"] == rep].reset_index(drop=True), scorer, cfg,
                                         taus[rep]["tau"], progress, review) for rep in replicates],
                       ignore_index=True)
    candidates = finalize(scored, out_dir)
    pairs = candidates[candidates["kept"]].drop(columns=["kept", "reason"])
    log.info("prune: kept %s", ", ".join(f"{b} {int(candidates.loc[candidates['branch'] == b, 'kept'].sum())}/"
                                          f"{int((candidates['branch'] == b).sum())}" for b in BRANCHES))
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        write_parquet(candidates, tmp / "candidates.parquet")
        write_parquet(pairs, tmp / "pairs.parquet")
    return candidates, summarize(candidates, cfg, tau_summary(taus), review_info)


def replicate_tau(cfg: PruneConfig, scorer: Scorer, sources: Sources, seed: int, replicate: int) -> dict:
    """τ of one replicate: fixed by `prune.inter_tau`, or calibrated with the replicate's own derangement."""
    if cfg.inter_tau is not None:
        return {"tau": cfg.inter_tau, "source": "prune.inter_tau (fixed)"}
    real = read_pairs(sources.prepared)
    valid = real[real["split"] == "valid"]
    return calibrate_tau(scorer, [_abs(sources.prepared.parent / p) for p in valid["image"]],
                         valid["report"].tolist(), cfg.inter_tau_quantile, seed_from("prune-tau", seed, replicate),
                         cfg.batch_size, sources.prepared)


def tau_summary(taus: dict[int, dict]) -> dict:
    """metrics/prune.json `tau`: the mean over replicates of every figure, and each replicate's own."""
    first = next(iter(taus.values()))
    mean = {k: float(np.mean([t[k] for t in taus.values()])) if isinstance(v, float) else v for k, v in first.items()}
    return {**mean, "per_replicate": {str(rep): t["tau"] for rep, t in taus.items()}}
