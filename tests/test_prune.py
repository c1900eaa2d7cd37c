"""`prune`: the PairAug scores against numpy, the keep rules, and the stage's outputs on a small world
(real pairs, rewritten reports, synthetic manifests and images) scored by a tiny real CLIP folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pairaug.data.schema import LABELS, empty_labels, pairs_frame
from pairaug.errors import InputError, ParamError
from pairaug.hashing import file_digest, stable_hash
from pairaug.models.clip import ClipArch, ImagePreprocessor, embedded_config
from pairaug.models.scorer import load_scorer
from pairaug.models.tokenizer import train_tokenizer
from pairaug.params import section
from pairaug.prune import (
    CANDIDATE_COLUMNS,
    PAIR_COLUMNS,
    PruneConfig,
    Sources,
    alignment_scores,
    calibrate_tau,
    derangement,
    intra_scores,
    intra_thresholds,
    load_candidates,
    prune,
    score_candidates,
)

SIZE = 32
NORMAL = "FINDINGS: Heart size is normal. No pleural effusion. No pneumothorax. IMPRESSION: No acute process."
CARDIO = "FINDINGS: The heart is moderately enlarged. No pleural effusion. IMPRESSION: Moderate cardiomegaly."
EFFUSION = "FINDINGS: Heart size is normal. Small left pleural effusion. IMPRESSION: Left pleural effusion."
WORSE = "FINDINGS: The heart is markedly enlarged. Small left pleural effusion. IMPRESSION: Cardiomegaly, worse."


# ------------------------------------------------------------------------------------ a small world


def _png(path: Path, seed: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    pixels = 60 + 100 * (np.abs(xx - SIZE / 2) < SIZE / (5 + seed % 4)) + rng.normal(0, 15, (SIZE, SIZE)) + 0 * yy
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    return file_digest(path)


def _labels(cardio: int | None, effusion: int | None) -> dict:
    labels = empty_labels()
    labels.update({"Cardiomegaly": cardio, "Pleural Effusion": effusion,
                   "No Finding": 1 if cardio != 1 and effusion != 1 else 0})
    return labels


REAL = [  # (patient, split, report, Cardiomegaly, Pleural Effusion)
    ("p0", "train", NORMAL, 0, 0), ("p0", "train", CARDIO, 1, 0), ("p1", "train", EFFUSION, 0, 1),
    ("p2", "train", CARDIO, 1, 0), ("p3", "valid", NORMAL, 0, 0), ("p4", "test", EFFUSION, 0, 1),
    ("p5", "valid", CARDIO, 1, 0),  # prune calibrates τ on the valid pairs: at least two
]
# Per train pair: (inter report, its labels), (intra report, its labels), (paraphrase, its labels)
REWRITES = {
    NORMAL: ((CARDIO, (1, 0)), (EFFUSION, (0, 1)), ("FINDINGS: No effusion or pneumothorax. Normal heart size. "
                                                      "IMPRESSION: Normal chest.", (0, 0))),
    CARDIO: ((NORMAL, (0, 0)), (WORSE, (1, 1)), ("FINDINGS: Moderate enlargement of the heart. No effusion. "
                                                   "IMPRESSION: Cardiomegaly.", (1, 0))),
    EFFUSION: ((CARDIO, (1, 0)), (NORMAL, (0, 0)), ("FINDINGS: Small effusion on the left. Normal heart. "
                                                      "IMPRESSION: Left effusion.", (0, 1))),
}


def make_world(root: Path) -> dict:
    """data/prepared, data/rewritten and data/synthetic/{inter,intra,image_only} under `root` (repo layout)."""
    data = root / "data"
    rows = []
    for i, (patient, split, report, cardio, eff) in enumerate(REAL):
        pid = f"real{i:02d}"
        rel = f"images/{pid}.png"
        _png(data / "prepared" / rel, i)
        rows.append({"pair_id": pid, "patient_id": patient, "study_id": f"{patient}-s{i}", "split": split,
                     "image": rel, "report": report, "view": "PA", **_labels(cardio, eff), "label_source": "dataset"})
    real = pairs_frame(rows)
    real.to_parquet(data / "prepared" / "pairs.parquet")
    train = real[real["split"] == "train"]
    (data / "rewritten").mkdir(parents=True)
    for k, task in enumerate(("inter", "intra", "paraphrase")):
        out = []
        for pid, report in zip(train["pair_id"], train["report"]):
            new, (cardio, eff) = REWRITES[report][k]
            out.append({"source_pair_id": pid, "task": task, "report_new": new, **_labels(cardio, eff),
                        "status": "ok", "reason": None})
        out.append({"source_pair_id": "real00", "task": task, "report_new": "No change.", **_labels(None, None),
                    "status": "skipped_short", "reason": "short"})  # not ok: never a candidate
        df = pd.DataFrame(out)
        for label in LABELS:
            df[label] = df[label].astype("Int8")
        df.to_parquet(data / "rewritten" / f"{task}.parquet")
    for b, branch in enumerate(("inter", "intra", "image_only")):
        folder = data / "synthetic" / branch
        out = []
        for j, (pid, report) in enumerate(zip(train["pair_id"], train["report"])):
            text = report if branch == "image_only" else REWRITES[report][0 if branch == "inter" else 1][0]
            sid = stable_hash(branch, pid, text)
            rel = f"images/{sid}.png"
            row = {"pair_id": sid, "branch": branch, "replicate": 0, "source_pair_id": pid, "report": text, "image": rel,
                   "image_sha256": _png(folder / rel, 100 + 10 * b + j), "seed": j, "generator_sha": "g",
                   "steps": 3, "guidance": 3.5, "eta": 0.5 if branch == "intra" else np.nan,
                   "inversion": False}
            if branch == "intra":
                row["source_image"] = f"images/{sid}-src.png"
                row["source_image_sha256"] = _png(folder / row["source_image"], 500 + j)
            out.append(row)
        pd.DataFrame(out).to_parquet(folder / "manifest.parquet")
    return {"real": real, "train": train}


def redraw_generated(root: Path, seed: int = 7) -> None:
    """Give every generated image of the world's synthetic manifests new pixels unlike any real film (a smooth
    random field, not the films' vertical band), recording the new hashes: the memorisation check then sees
    no near-copy (the band images are as close to the train films as the valid films are)."""
    rng = np.random.default_rng(seed)
    for branch in ("inter", "intra", "image_only"):
        folder = root / "data" / "synthetic" / branch
        manifest = pd.read_parquet(folder / "manifest.parquet")
        for i, rel in enumerate(manifest["image"]):
            coarse = rng.uniform(0, 255, (4, 4)).astype(np.uint8)
            Image.fromarray(coarse).resize((SIZE, SIZE), Image.Resampling.BICUBIC).save(folder / rel)
            manifest.loc[i, "image_sha256"] = file_digest(folder / rel)
        manifest.to_parquet(folder / "manifest.parquet")


def sources(root: Path) -> Sources:
    return Sources(root / "data/prepared/pairs.parquet", root / "data/rewritten", root / "data/synthetic",
                   root / "review/decisions.csv", root / "data/pool/pairs.parquet")


def make_scorer(folder: Path, texts: list[str], seed: int = 0) -> Path:
    """A tiny (untrained, seeded) CLIP saved the way fit-scorer saves one: loaded through load_scorer."""
    torch.manual_seed(seed)
    arch = ClipArch(projection_dim=16, text_hidden=32, text_mlp=64, text_layers=1, text_heads=2, max_positions=48,
                    vision_hidden=32, vision_mlp=64, vision_layers=1, vision_heads=2, patch_size=8)
    tokenizer = train_tokenizer(texts, 200, arch.max_positions)
    from transformers import CLIPModel

    model = CLIPModel(embedded_config(arch, len(tokenizer), SIZE))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    ImagePreprocessor(SIZE, 1, (0.4,), (0.25,)).save(folder)
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    make_world(root)
    texts = [NORMAL, CARDIO, EFFUSION, WORSE] + [r[2][0] for r in REWRITES.values()]
    make_scorer(root / "models" / "scorer", texts)
    return root


class CountingScorer:
    """The real scorer, counting what it is asked to encode (to check each item is encoded once)."""

    def __init__(self, inner):
        self.inner, self.images, self.texts = inner, [], []

    def encode_images(self, images):
        self.images.extend(map(str, images))
        return self.inner.encode_images(images)

    def encode_texts(self, texts):
        self.texts.extend(texts)
        return self.inner.encode_texts(texts)


# ----------------------------------------------------------------------------------- scores (numpy)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_scores_match_a_direct_numpy_computation() -> None:
    rng = np.random.default_rng(7)
    # Fixed, deliberately unnormalised embeddings: the scores must be scale-free cosines of the
    # L2-normalised vectors (what the scorer returns), S3 on the difference of the normalised vectors.
    img_new, txt_new, img_src, txt_src = (rng.normal(size=(5, 8)) * rng.uniform(0.5, 3, (5, 1)) for _ in range(4))
    unit = lambda x: x / np.linalg.norm(x)  # noqa: E731
    s_a = alignment_scores(img_new, txt_new)
    s1, s2, s3 = intra_scores(img_new, txt_new, img_src, txt_src)
    for i in range(5):
        assert s_a[i] == pytest.approx(_cos(img_new[i], txt_new[i]), abs=1e-12)
        assert s1[i] == pytest.approx(_cos(img_new[i], txt_new[i]), abs=1e-12)
        assert s2[i] == pytest.approx(_cos(img_new[i], img_src[i]), abs=1e-12)
        expected_s3 = _cos(unit(img_new[i]) - unit(img_src[i]), unit(txt_new[i]) - unit(txt_src[i]))
        assert s3[i] == pytest.approx(expected_s3, abs=1e-12)
    # An unchanged image has no direction of change: S3 is 0 (as torch's cosine_similarity gives), not NaN.
    _, _, s3_same = intra_scores(img_src[:1], txt_new[:1], img_src[:1], txt_src[:1])
    assert s3_same[0] == 0.0


def test_intra_thresholds_are_mean_over_scale_minus_lambda() -> None:
    s1 = np.array([0.2, 0.4, 0.9])
    s2 = np.array([0.5, 0.7, 0.6])
    s3 = np.array([-0.1, 0.3, 0.1])
    thr = intra_thresholds(s1, s2, s3, scale=1.0, lam=0.003)
    assert thr.tolist() == pytest.approx([0.5 - 0.003, 0.6 - 0.003, 0.1 - 0.003])
    thr = intra_thresholds(s1, s2, s3, scale=2.0, lam=0.01)
    assert thr.tolist() == pytest.approx([0.25 - 0.01, 0.3 - 0.01, 0.05 - 0.01])


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ParamError, match="prune.inter_tau"):
        section(PruneConfig, {"prune": {"inter_tau": 1.5}}, "prune")
    with pytest.raises(ParamError, match="prune.intra_scale"):
        section(PruneConfig, {"prune": {"intra_scale": 0}}, "prune")
    with pytest.raises(ParamError, match="prune.intra_rank"):
        section(PruneConfig, {"prune": {"intra_rank": "best"}}, "prune")
    with pytest.raises(ParamError, match="prune.intra_min_change_read"):
        section(PruneConfig, {"prune": {"intra_min_change_read": 2}}, "prune")
    with pytest.raises(ParamError, match="prune.nope"):
        section(PruneConfig, {"prune": {"nope": 1}}, "prune")


# ------------------------------------------------------------------------------------- the stage logic


def test_candidates_cover_every_branch(world: Path) -> None:
    cands = load_candidates(sources(world))
    counts = cands["branch"].value_counts().to_dict()
    assert counts == {"inter": 4, "intra": 4, "image_only": 4, "paraphrase": 4}  # skipped rewrites are not candidates
    para = cands[cands["branch"] == "paraphrase"].iloc[0]
    # The text-only baseline: the real train image, the paraphrased report, a stable id.
    assert para["pair_id"] == stable_hash("paraphrase", para["source_pair_id"], para["report"], int(para["replicate"]))
    assert para["image_abs"] == para["real_image"]
    assert para["image_sha256"] == file_digest(para["image_abs"])
    inter = cands[cands["branch"] == "inter"].set_index("source_pair_id")
    # Labels are those of the new report (from data/rewritten), not of the source.
    assert inter.loc["real00", "Cardiomegaly"] == 1 and inter.loc["real01", "Cardiomegaly"] == 0
    image_only = cands[cands["branch"] == "image_only"].set_index("source_pair_id")
    assert image_only.loc["real01", "Cardiomegaly"] == 1 and image_only.loc["real01", "report"] == CARDIO


def test_prune_scores_keeps_and_writes(world: Path, tmp_path: Path) -> None:
    scorer = CountingScorer(load_scorer(world / "models" / "scorer"))
    out = world / "data" / "pruned-test"
    cfg = PruneConfig(inter_tau=0.0)
    candidates, metrics = prune(cfg, scorer, out, sources(world), progress=False)

    # Each distinct image and text is encoded once (real images and reports serve several candidates).
    assert len(scorer.images) == len(set(scorer.images))
    assert len(scorer.texts) == len(set(scorer.texts))
    cands = load_candidates(sources(world))
    intra = cands[cands["branch"] == "intra"]
    assert set(scorer.images) == set(cands["image_abs"]) | set(intra["real_image"])
    assert set(scorer.texts) == set(cands["report"]) | set(intra["source_report"])

    on_disk = pd.read_parquet(out / "candidates.parquet")
    assert list(on_disk.columns) == list(CANDIDATE_COLUMNS) and len(on_disk) == 16
    pairs = pd.read_parquet(out / "pairs.parquet")
    assert list(pairs.columns) == list(PAIR_COLUMNS)
    assert sorted(pairs["pair_id"]) == sorted(on_disk.loc[on_disk["kept"], "pair_id"])
    # Image paths are relative to data/pruned and resolve to the branch's files.
    for rel, sha in zip(on_disk["image"], on_disk["image_sha256"]):
        assert not Path(rel).is_absolute() and file_digest(out / rel) == sha
    assert on_disk.loc[on_disk["branch"] == "paraphrase", "image"].str.startswith("../prepared/images/").all()
    assert on_disk.loc[on_disk["branch"] == "inter", "image"].str.startswith("../synthetic/inter/images/").all()

    # Scores agree with the scorer's embeddings, computed directly.
    inner = scorer.inner
    row = on_disk[on_disk["branch"] == "inter"].iloc[0]
    img = inner.encode_images([out / row["image"]])[0]
    txt = inner.encode_texts([row["report"]])[0]
    assert row["s_a"] == pytest.approx(float(img @ txt), abs=1e-5)
    row = on_disk[on_disk["branch"] == "intra"].iloc[0]
    src = cands.set_index("pair_id").loc[row["pair_id"]]
    x1, x0 = inner.encode_images([out / row["image"], src["real_image"]])
    y1, y0 = inner.encode_texts([row["report"], src["source_report"]])
    assert row["s1"] == pytest.approx(float(x1 @ y1), abs=1e-5)
    assert row["s2"] == pytest.approx(float(x1 @ x0), abs=1e-5)
    assert row["s3"] == pytest.approx(_cos(x1 - x0, y1 - y0), abs=1e-5)

    # Keep rules: S_a > τ for the alignment branches; all three S_k > μ_k/s − λ for intra.
    align = on_disk[on_disk["branch"] != "intra"]
    assert (align["kept"] == (align["s_a"] > 0.0)).all() and (align["tau"] == 0.0).all()
    assert align[["s1", "s2", "s3"]].isna().all().all()
    intra_rows = on_disk[on_disk["branch"] == "intra"]
    for k in ("s1", "s2", "s3"):
        assert intra_rows[f"thr_{k}"].iloc[0] == pytest.approx(intra_rows[k].mean() - 0.003)
    expect = (intra_rows["s1"] > intra_rows["thr_s1"]) & (intra_rows["s2"] > intra_rows["thr_s2"]) & \
             (intra_rows["s3"] > intra_rows["thr_s3"])
    assert (intra_rows["kept"] == expect).all()
    dropped = on_disk[~on_disk["kept"]]
    assert (dropped["reason"] != "kept").all() and (on_disk.loc[on_disk["kept"], "reason"] == "kept").all()
    assert all("<=" in r for r in dropped["reason"])

    branches = metrics["branches"]
    assert {b: branches[b]["total"] for b in branches} == {"inter": 4, "intra": 4, "image_only": 4, "paraphrase": 4}
    assert sum(b["kept"] for b in branches.values()) == len(pairs) == metrics["kept"]
    assert branches["intra"]["thr_s2"] == pytest.approx(intra_rows["s2"].mean() - 0.003, abs=1e-4)

    # Same inputs and params → same bytes.
    digest = {f: hashlib.sha256((out / f).read_bytes()).hexdigest() for f in ("candidates.parquet", "pairs.parquet")}
    prune(cfg, load_scorer(world / "models" / "scorer"), out, sources(world), progress=False)
    assert digest == {f: hashlib.sha256((out / f).read_bytes()).hexdigest() for f in digest}

    # A stricter τ keeps fewer alignment pairs, never more.
    strict, _ = prune(PruneConfig(inter_tau=0.99), scorer.inner, tmp_path / "strict", sources(world), progress=False)
    assert not strict.loc[strict["branch"] != "intra", "kept"].any()


def test_score_candidates_thresholds_use_all_intra_candidates(world: Path) -> None:
    cands = load_candidates(sources(world))
    scored = score_candidates(cands, load_scorer(world / "models" / "scorer"),
                              PruneConfig(intra_scale=2.0, intra_lambda=0.05), tau=0.3, progress=False)
    intra = scored[scored["branch"] == "intra"]
    for k in ("s1", "s2", "s3"):
        assert intra[f"thr_{k}"].nunique() == 1
        assert intra[f"thr_{k}"].iloc[0] == pytest.approx(intra[k].mean() / 2.0 - 0.05)


def test_missing_manifest_and_unknown_source_name_the_file(world: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(world / "data", root / "data")
    shutil.rmtree(root / "data" / "synthetic" / "intra")
    with pytest.raises(InputError, match=r"intra manifest not found \(run `dvc repro intra-generate`\).*manifest.parquet"):
        load_candidates(sources(root))

    shutil.copytree(world / "data" / "synthetic" / "intra", root / "data" / "synthetic" / "intra")
    path = root / "data" / "synthetic" / "inter" / "manifest.parquet"
    man = pd.read_parquet(path)
    man.loc[2, "source_pair_id"] = "nope"
    man.to_parquet(path)
    with pytest.raises(InputError, match=r"'nope' is not a pair of data/prepared.*row 2, field 'source_pair_id'"):
        load_candidates(sources(root))


# ------------------------------------------------------------------------ τ calibrated on the scorer


def test_derangement_moves_everyone():
    for n in (2, 3, 10, 101):
        d = derangement(n, seed=n)
        assert sorted(d) == list(range(n)) and not (d == np.arange(n)).any()


def test_tau_is_a_quantile_of_mismatched_pairs_under_the_scorer_in_use(world: Path, tmp_path: Path):
    real = world_real(world)
    images = [str(world / "data/prepared" / rel) for rel in real["image"]]
    reports = real["report"].tolist()
    texts = [NORMAL, CARDIO, EFFUSION, WORSE] + [r[2][0] for r in REWRITES.values()]
    other = load_scorer(make_scorer(tmp_path / "other-scorer", texts, seed=1))
    taus = []
    for scorer in (load_scorer(world / "models" / "scorer"), other):
        info = calibrate_tau(scorer, images, reports, quantile=0.75, seed=3)
        img, txt = scorer.encode_images(images), scorer.encode_texts(reports)
        d = derangement(len(images), 3)
        by_hand = [_cos(img[i], txt[d[i]]) for i in range(len(images))]
        assert info["tau"] == pytest.approx(float(np.quantile(by_hand, 0.75)), abs=1e-6)
        assert info["matched_mean"] == pytest.approx(np.mean([_cos(img[i], txt[i]) for i in range(len(images))]),
                                                     abs=1e-6)
        taus.append(info["tau"])
    assert abs(taus[0] - taus[1]) > 1e-4  # another scorer, another scale, another τ


def test_prune_records_the_calibrated_tau_and_prunes_by_it(world: Path, tmp_path: Path):
    scorer = load_scorer(world / "models" / "scorer")
    candidates, metrics = prune(PruneConfig(inter_tau_quantile=0.5), scorer, tmp_path / "out", sources(world),
                                progress=False, seed=0)
    valid = world_real(world).query("split == 'valid'")
    expected = calibrate_tau(scorer, [str(world / "data/prepared" / r) for r in valid["image"]],
                             valid["report"].tolist(), 0.5, 0)
    assert metrics["tau"]["tau"] == pytest.approx(expected["tau"]) and metrics["tau"]["quantile"] == 0.5
    align = candidates[candidates["branch"] != "intra"]
    assert (align["tau"] == expected["tau"]).all()
    assert (align["kept"] == (align["s_a"] > expected["tau"])).all()


def test_of_a_reports_passing_candidates_only_the_best_is_kept(world: Path):
    cands = load_candidates(sources(world))
    intra = cands[cands["branch"] == "intra"]
    # a second and third candidate per report: the other intra images, so their scores differ
    extra = [intra.assign(pair_id=intra["pair_id"] + f"-c{k}", image_abs=np.roll(intra["image_abs"].to_numpy(), k))
             for k in (1, 2)]
    many = pd.concat([cands, *extra], ignore_index=True)
    loose = PruneConfig(intra_scale=1.0, intra_lambda=5.0)  # every candidate passes S1-S3
    for per_report in (1, 2):
        scored = score_candidates(many, load_scorer(world / "models" / "scorer"),
                                  PruneConfig(intra_lambda=loose.intra_lambda, intra_per_report=per_report),
                                  tau=0.0, progress=False)
        intra_scored = scored[scored["branch"] == "intra"].assign(total=lambda d: d["s1"] + d["s2"] + d["s3"])
        for _, group in intra_scored.groupby(["source_pair_id", "report"]):
            kept = group[group["kept"]]
            assert len(kept) == per_report
            assert kept["total"].min() >= group.loc[~group["kept"], "total"].max()
            assert group.loc[~group["kept"], "reason"].str.startswith("outranked").all()


def world_real(world: Path) -> pd.DataFrame:
    return pd.read_parquet(world / "data/prepared/pairs.parquet")


def test_intra_selection_on_the_read_change(world: Path):
    """With `intra_min_change_read`, an edit whose change the probe does not read is not kept (and one with no
    readable change at all neither); with `intra_rank: change` a report keeps its best-read edit, whatever
    its S1 + S2 + S3."""
    cands = load_candidates(sources(world))
    intra = cands[cands["branch"] == "intra"]
    extra = [intra.assign(pair_id=intra["pair_id"] + f"-c{k}", image_abs=np.roll(intra["image_abs"].to_numpy(), k))
             for k in (1, 2)]
    many = pd.concat([cands, *extra], ignore_index=True)
    reads = {"": 0.0, "-c1": 1.0, "-c2": np.nan}
    many["change_read"] = [np.nan if b != "intra" else reads[p[p.rfind("-c"):] if "-c" in p else ""]
                           for b, p in zip(many["branch"], many["pair_id"])]
    scorer = load_scorer(world / "models" / "scorer")
    strict = score_candidates(many, scorer, PruneConfig(intra_lambda=5.0, intra_min_change_read=0.5,
                                                        intra_rank="change"), tau=0.0, progress=False)
    got = strict[strict["branch"] == "intra"].set_index("pair_id")
    assert got.loc[got.index.str.endswith("-c1"), "kept"].all()
    assert not got.loc[~got.index.str.endswith("-c1"), "kept"].any()
    assert got.loc[got.index.str.endswith("-c2"), "reason"].str.contains("change_read n/a").all()
    assert got.loc[~got.index.str.contains("-c"), "reason"].str.contains("change_read 0.00 < intra_min_change_read").all()
    assert strict.loc[strict["branch"] != "intra", "kept"].equals(
        score_candidates(many, scorer, PruneConfig(intra_lambda=5.0), tau=0.0, progress=False)
        .loc[strict["branch"] != "intra", "kept"])  # the other branches are not touched
    # ranking alone: the read edit wins its report even where the scores prefer another
    ranked = score_candidates(many, scorer, PruneConfig(intra_lambda=5.0, intra_rank="change"), tau=0.0,
                              progress=False)
    kept = ranked[(ranked["branch"] == "intra") & ranked["kept"]]
    assert kept["pair_id"].str.endswith("-c1").all() and len(kept) == len(intra)
    by_scores = score_candidates(many, scorer, PruneConfig(intra_lambda=5.0), tau=0.0, progress=False)
    assert not by_scores.loc[(by_scores["branch"] == "intra") & by_scores["kept"], "pair_id"].str.endswith("-c1").all()
