"""Zero-shot protocol, linear probe and the per-image scores evaluate writes: checked against hand
computations (the report's statistics: tests/test_report_stats.py)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pairaug.data.schema import LABELS, read_pairs
from pairaug.errors import InputError, ParamError
from pairaug.evaluate.label_sets import LabelSetConfig, load_label_set
from pairaug.evaluate.run import EvaluateConfig, binary_targets, evaluate_mix, summarise
from pairaug.measurement.linear_probe import linear_probe, stratified_subsets
from pairaug.measurement.zeroshot import auc_per_label, class_embeddings, label_prompts, zero_shot_probs
from pairaug.params import section
from pairaug.tracking.evaluation import eval_metrics


def _unit(v):
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def test_zero_shot_probability_matches_hand_computation():
    image = _unit([1.0, 2.0, 0.5])
    pos, neg = _unit([1.0, 1.0, 0.0]), _unit([0.0, 1.0, 1.0])
    p = zero_shot_probs(image[None, :], pos[None, :], neg[None, :])[0, 0]
    s_pos, s_neg = float(image @ pos), float(image @ neg)
    # CheXzero: softmax over the two plain cosine similarities, no logit scale.
    assert p == pytest.approx(math.exp(s_pos) / (math.exp(s_pos) + math.exp(s_neg)), rel=1e-12)


def test_class_embeddings_average_templates_then_renormalise():
    table = {"edema": _unit([1, 0, 0]), "pulmonary edema": _unit([0, 1, 0]), "no edema": _unit([0, 0, 1]),
             "no pulmonary edema": _unit([0, 1, 1])}

    def encode(texts):
        return np.stack([table[t] for t in texts])

    assert label_prompts("Edema", ["{}", "pulmonary {}"]) == ["edema", "pulmonary edema"]
    pos, neg = class_embeddings(encode, ["Edema"], ["{}", "pulmonary {}"], ["no {}", "no pulmonary {}"])
    np.testing.assert_allclose(pos[0], _unit([0.5, 0.5, 0]))
    np.testing.assert_allclose(neg[0], _unit((table["no edema"] + table["no pulmonary edema"]) / 2))
    assert np.linalg.norm(pos[0]) == pytest.approx(1.0)


def test_auc_per_label_skips_single_class_labels():
    probs = np.array([[0.9, 0.2], [0.1, 0.3], [0.8, 0.1]])
    aucs = auc_per_label(probs, {"A": np.array([1, 0, 1]), "B": np.array([0, 0, 0])}, ["A", "B"])
    assert aucs == {"A": 1.0, "B": None}


def test_linear_probe_reads_separable_features_and_not_noise():
    rng = np.random.default_rng(0)
    def make(n):
        y = rng.random(n) < 0.3
        x = rng.normal(size=(n, 8))
        x[:, 0] += 3.0 * y  # the label is written in feature 0
        return x, {"Signal": y, "Noise": rng.random(n) < 0.3}
    (xtr, ytr), (xva, yva), (xte, yte) = make(400), make(100), make(400)
    out = linear_probe(xtr, ytr, xva, yva, xte, yte, ["Signal", "Noise"], [0.1, 1.0], seed=0, draws=2)
    assert set(out.auc) == set(out.scores) == {"10%", "100%"}
    assert out.auc["100%"]["Signal"] > 0.95
    assert 0.35 < out.auc["100%"]["Noise"] < 0.65
    # One head at 100%: its test decision scores are what the AUC was computed from.
    assert roc_auc_score(yte["Signal"], out.scores["100%"]["Signal"]) == pytest.approx(out.auc["100%"]["Signal"])
    assert out.scores["10%"]["Signal"].shape == (400,)  # the mean score over the two draws


def test_small_probe_draws_hold_a_positive_and_a_negative_of_every_label():
    """A 1% draw of 300 images is 3 images; with stratification each still has a positive and a negative
    of every label that has both in the train split (random draws of 3 would mostly miss the rare one)."""
    rng = np.random.default_rng(0)
    n = 300
    train_y = {"Rare": np.zeros(n, dtype=bool), "Common": rng.random(n) < 0.3, "Absent": np.zeros(n, dtype=bool),
               "Everywhere": np.ones(n, dtype=bool)}
    train_y["Rare"][[17, 150, 260]] = True
    labels = list(train_y)
    subsets = stratified_subsets(train_y, labels, 3, 20, np.random.default_rng(7))
    assert len(subsets) == 20
    for idx in subsets:
        assert len(idx) == len(np.unique(idx)) >= 3
        for label in ("Rare", "Common"):
            assert train_y[label][idx].any() and not train_y[label][idx].all()
    assert len({tuple(idx) for idx in subsets}) > 10  # the draws differ from one another
    again = stratified_subsets(train_y, labels, 3, 20, np.random.default_rng(7))
    assert all(np.array_equal(a, b) for a, b in zip(subsets, again))  # deterministic by seed
    other = stratified_subsets(train_y, labels, 3, 20, np.random.default_rng(8))
    assert not all(np.array_equal(a, b) for a, b in zip(subsets, other))
    assert all(len(idx) == 30 for idx in stratified_subsets(train_y, labels, 30, 3, np.random.default_rng(0)))


def test_linear_probe_fits_the_rare_label_at_one_percent():
    rng = np.random.default_rng(1)
    def make(n, positives):
        y = np.zeros(n, dtype=bool)
        y[rng.choice(n, positives, replace=False)] = True
        x = rng.normal(size=(n, 4))
        x[:, 0] += 4.0 * y
        return x, {"Rare": y}
    (xtr, ytr), (xva, yva), (xte, yte) = make(300, 4), make(60, 6), make(200, 20)
    out = linear_probe(xtr, ytr, xva, yva, xte, yte, ["Rare"], [0.01], seed=0, draws=5)
    assert out.auc["1%"]["Rare"] is not None and out.auc["1%"]["Rare"] > 0.8
    assert np.isfinite(out.scores["1%"]["Rare"]).all()


def _eval(values):
    return {"seeds": {str(i): {"zeroshot": {"mean_auc": v, "auc": {"Edema": v}},
                               "linear_probe": {"mean_auc": {"100%": v + 0.1}}} for i, v in enumerate(values)}}


def test_summarise_gives_mean_and_std_over_seeds():
    s = summarise(_eval([0.7, 0.8, 0.9])["seeds"])
    assert s["zeroshot"]["mean_auc"]["mean"] == pytest.approx(0.8)
    assert s["zeroshot"]["mean_auc"]["std"] == pytest.approx(0.1)
    assert s["linear_probe"]["mean_auc"]["100%"]["n"] == 3


# ---------------------------------------------------------------- label-only evaluation sets

CHEXPERT_HEADER = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *LABELS]


def chexpert_copy_of_test_split(prepared: Path, dest: Path) -> Path:
    """The prepared test split re-laid out as a CheXpert folder (valid.csv + images, dataset labels)."""
    pairs = read_pairs(prepared / "pairs.parquet")
    test = pairs[pairs["split"] == "test"]
    root = dest / "CheXpert-v1.0-small"
    rows = []
    for k, (_, r) in enumerate(test.iterrows()):
        rel = f"valid/patient{k:05d}/study1/view1_frontal.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(prepared / r["image"], root / rel)
        labels = ["" if pd.isna(r[c]) else f"{float(r[c]):.1f}" for c in LABELS]
        rows.append([f"CheXpert-v1.0-small/{rel}", "Female", "60", "Frontal", "PA", *labels])
    pd.DataFrame(rows, columns=CHEXPERT_HEADER).to_csv(root / "valid.csv", index=False)
    return root


@pytest.mark.slow
def test_label_set_is_scored_like_the_test_split(tiny_repo, tmp_path):
    """A CheXpert-format copy of the test split (same pixels, same labels) gets the test split's AUCs."""
    root = chexpert_copy_of_test_split(tiny_repo / "data" / "prepared", tmp_path)
    cfg = EvaluateConfig(probe_draws=1, label_sets={"chexpert": LabelSetConfig(source="chexpert", root=str(root))})
    result, _, _ = evaluate_mix(tiny_repo / "models" / "vlp" / "none", cfg, tiny_repo / "data" / "prepared" / "pairs.parquet", 0)
    seed = result["seeds"]["0"]
    as_set = seed["label_sets"]["chexpert"]
    assert as_set["zeroshot"]["auc"] == pytest.approx(seed["zeroshot"]["auc"])
    assert as_set["linear_probe"]["auc"].keys() == seed["linear_probe"]["auc"].keys()
    for fraction, aucs in seed["linear_probe"]["auc"].items():  # approx takes flat mappings only
        assert as_set["linear_probe"]["auc"][fraction] == pytest.approx(aucs)
    assert "label_sets.chexpert.zeroshot.mean_auc" in eval_metrics(seed)  # what MLflow gets


def test_label_set_errors_name_the_problem(tmp_path):
    with pytest.raises(ParamError, match=r"evaluate.label_sets.cx.root"):
        section(EvaluateConfig, {"evaluate": {"label_sets": {"cx": {"source": "chexpert"}}}}, "evaluate")
    with pytest.raises(InputError, match="valid.csv"):
        load_label_set(LabelSetConfig(source="chexpert", root=str(tmp_path / "nowhere")), 32)
    root = tmp_path / "CheXpert-v1.0-small"
    root.mkdir()
    row = ["CheXpert-v1.0-small/valid/p1/s1/view1_frontal.png", "F", "60", "Frontal", "PA", *[""] * len(LABELS)]
    pd.DataFrame([row], columns=CHEXPERT_HEADER).to_csv(root / "valid.csv", index=False)
    (root / "valid/p1/s1").mkdir(parents=True)
    (root / "valid/p1/s1/view1_frontal.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="view1_frontal.png"):
        load_label_set(LabelSetConfig(source="chexpert", root=str(root)), 32)


@pytest.mark.slow
def test_one_vision_pass_gives_both_probe_features_and_zero_shot_embeddings(tiny_repo):
    """`encode` runs the tower once; its outputs are what transformers' own calls give, at any batch size."""
    import torch

    from pairaug.evaluate.run import load_splits
    from pairaug.measurement.encoder import VisionLanguageModel

    images = load_splits(tiny_repo / "data" / "prepared" / "pairs.parquet")["test"][0][:40]
    vlp = VisionLanguageModel(tiny_repo / "models" / "vlp" / "none" / "seed-0", batch_size=16)
    encoded = vlp.encode(images)
    with torch.inference_mode():
        pixels = vlp.preprocess(images)
        pooled = vlp.model.vision_model(pixel_values=pixels).pooler_output
        projected = torch.nn.functional.normalize(vlp.model.visual_projection(pooled), dim=-1)
    np.testing.assert_allclose(encoded.features, pooled.numpy(), atol=1e-5)
    np.testing.assert_allclose(encoded.embeddings, projected.numpy(), atol=1e-5)
    assert encoded.features.shape[0] == encoded.embeddings.shape[0] == 40


@pytest.mark.slow
def test_evaluation_does_not_depend_on_the_inference_batch(tiny_repo):
    mix = tiny_repo / "models" / "vlp" / "none"
    pairs = tiny_repo / "data" / "prepared" / "pairs.parquet"
    small, _, _ = evaluate_mix(mix, EvaluateConfig(probe_draws=1, batch_size=7), pairs, 0)
    large, _, _ = evaluate_mix(mix, EvaluateConfig(probe_draws=1, batch_size=512), pairs, 0)
    for seed, result in small["seeds"].items():
        assert result["zeroshot"]["auc"] == pytest.approx(large["seeds"][seed]["zeroshot"]["auc"], abs=1e-6)
        for fraction, aucs in result["linear_probe"]["auc"].items():
            assert aucs == pytest.approx(large["seeds"][seed]["linear_probe"]["auc"][fraction], abs=1e-6)


@pytest.mark.slow
def test_scores_table_holds_what_the_eval_metrics_were_computed_from(tiny_repo):
    """`data/eval/<mix>/scores.parquet` (written by the pipeline): per seed, kind and label, the test images
    with their patients and targets, and scores whose AUCs are the ones in `metrics/eval/<mix>.json`."""
    from pairaug.measurement.scores import SCORE_COLUMNS, read_scores

    scores = read_scores(tiny_repo / "data" / "eval" / "none" / "scores.parquet")
    metrics = json.loads((tiny_repo / "metrics" / "eval" / "none.json").read_text())
    pairs = read_pairs(tiny_repo / "data" / "prepared" / "pairs.parquet")
    test = pairs[pairs["split"] == "test"]
    assert list(scores.columns) == SCORE_COLUMNS
    assert set(scores["seed"]) == set(metrics["seeds"])
    assert list(dict.fromkeys(scores["kind"])) == ["zeroshot", "probe 1%", "probe 10%", "probe 100%"]
    targets = binary_targets(test, list(metrics["seeds"]["0"]["zeroshot"]["auc"]))
    for (seed, kind, label), part in scores.groupby(["seed", "kind", "label"]):
        assert list(part["pair_id"]) == list(test["pair_id"]) and list(part["patient_id"]) == list(test["patient_id"])
        assert (part["y"].to_numpy() == targets[label]).all()
        auc = roc_auc_score(part["y"], part["score"]) if part["score"].notna().all() else None
        recorded = (metrics["seeds"][seed]["zeroshot"]["auc"] if kind == "zeroshot"
                    else metrics["seeds"][seed]["linear_probe"]["auc"][kind.removeprefix("probe ")])[label]
        if kind in ("zeroshot", "probe 100%"):  # one model each: the AUC of the scores is the recorded AUC
            assert auc == pytest.approx(recorded, abs=1e-12)
        else:
            assert (auc is None) == (recorded is None)  # the mean score over draws, defined where any draw fit
    report = json.loads((tiny_repo / "metrics" / "ablation.json").read_text())
    zs = report["table"]["none"]["zeroshot"]
    assert zs["labels"]["Edema"]["auc"] == pytest.approx(metrics["summary"]["zeroshot"]["auc"]["Edema"]["mean"])
    assert zs["mean"]["ci"][0] <= zs["mean"]["auc"] <= zs["mean"]["ci"][1]
    assert {r["baseline"] for r in report["verdicts"]} == set(report["table"]) - {"pairaug"} - set(
        report["settings"]["reference_mixes"])
