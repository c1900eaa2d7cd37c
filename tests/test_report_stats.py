"""The report's statistics: the patient bootstrap, paired differences, Holm and the verdict words,
checked against plain scikit-learn AUCs on small cases computed by hand."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from scipy.stats import t as student_t
from sklearn.metrics import roc_auc_score

from pairaug.errors import InputError, ParamError
from pairaug.io import write_parquet
from pairaug.measurement.scores import SCORE_COLUMNS
from pairaug.params import section
from pairaug.report.ablation import ReportConfig, ablation, write_report
from pairaug.report.stats import (
    bootstrap_p,
    holm,
    patient_resamples,
    percentile_ci,
    rerun_half_width,
    verdict,
    weighted_auc,
)


def expanded_auc(scores, y, patient, counts_row) -> float:
    """The plain AUC of a resample built the slow way: each image repeated as often as its patient was drawn."""
    repeat = np.asarray(counts_row)[patient].astype(int)
    ys, ss = np.repeat(y, repeat), np.repeat(scores, repeat)
    return float(roc_auc_score(ys, ss)) if len(np.unique(ys)) == 2 else float("nan")


def compositions(total: int, parts: int) -> np.ndarray:
    """Every way of drawing `total` patients out of `parts` with replacement, as count vectors."""
    rows = [np.bincount(c, minlength=parts) for c in itertools.combinations_with_replacement(range(parts), total)]
    return np.array(rows, dtype=float)


# Five patients with 1–3 images each; scores with ties inside and across patients and classes.
PATIENT = np.array([0, 1, 1, 2, 2, 2, 3, 4, 4])
Y = np.array([1, 0, 1, 0, 0, 1, 1, 0, 0])
SCORE = np.array([0.9, 0.4, 0.4, 0.1, 0.7, 0.7, 0.3, 0.3, 0.8])


def test_weighted_auc_equals_sklearn_on_every_possible_resample():
    counts = compositions(5, 5)  # all 126 resamples of 5 patients
    got = weighted_auc(SCORE, Y, PATIENT, counts)
    want = np.array([expanded_auc(SCORE, Y, PATIENT, row) for row in counts])
    assert np.isnan(want).any()  # some resamples draw no positive or no negative: undefined, not a number
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], rtol=0, atol=1e-12)


def test_ties_count_half():
    # positives 1 and 2, negatives 1 and 0: (1 vs 1) ties → ½, the three other pairs are wins → 3.5 / 4.
    auc = weighted_auc(np.array([1.0, 2.0, 1.0, 0.0]), np.array([1, 1, 0, 0]), np.arange(4), np.ones((1, 4)))
    assert auc[0] == 0.875
    flat = weighted_auc(np.full(6, 0.3), np.array([1, 0, 1, 0, 0, 1]), np.arange(6), np.ones((1, 6)))
    assert flat[0] == 0.5


def test_patient_resamples_draw_patients_with_replacement():
    counts = patient_resamples(7, 2000, np.random.default_rng(0))
    assert counts.shape == (2000, 7)
    assert (counts.sum(axis=1) == 7).all()  # as many patients as the split holds, not as many images
    assert counts.max() > 1 and (counts == 0).any()  # with replacement
    np.testing.assert_allclose(counts.mean(axis=0), 1.0, atol=0.1)  # each patient equally likely
    np.testing.assert_array_equal(counts, patient_resamples(7, 2000, np.random.default_rng(0)))
    assert not np.array_equal(counts, patient_resamples(7, 2000, np.random.default_rng(1)))


def scores_table(per_seed: dict[str, dict[str, np.ndarray]], y: dict[str, np.ndarray], patient: np.ndarray,
                 kind: str = "zeroshot") -> pd.DataFrame:
    """A scores table of one mix: seed → label → scores over images with patients `patient`."""
    parts = []
    for seed, labels in per_seed.items():
        for label, score in labels.items():
            parts.append(pd.DataFrame({"seed": seed, "kind": kind, "label": label,
                                       "pair_id": [f"img{i:03d}" for i in range(len(score))],
                                       "patient_id": [f"pat{p:02d}" for p in patient],
                                       "y": y[label].astype(np.int8), "score": score}))
    return pd.concat(parts, ignore_index=True)[SCORE_COLUMNS]


def test_bootstrap_ci_matches_a_hand_computation():
    """Two replicates, two competition labels, six patients: the CI is the percentile interval of, per
    resample, the mean over labels of the two-level mean — the replicates drawn with replacement, their
    deviations scaled to Student's t — of the plain AUC of the expanded sample."""
    rng = np.random.default_rng(5)
    patient = np.array([0, 0, 1, 2, 2, 2, 3, 4, 5, 5])
    y = {"Edema": np.array([1, 0, 0, 1, 1, 0, 0, 1, 0, 1]), "Cardiomegaly": np.array([0, 0, 1, 1, 0, 0, 1, 0, 1, 1])}
    per_seed = {s: {label: np.round(rng.random(10) + 0.5 * y[label], 1) for label in y} for s in ("0", "1")}
    cfg = ReportConfig(bootstrap_resamples=300, ci=0.9)
    out = ablation({"none": scores_table(per_seed, y, patient)}, cfg, seed=11)

    draw = np.random.default_rng(11)
    counts = patient_resamples(6, 300, draw)  # patients sorted by id: pat00 … pat05
    picks = draw.multinomial(2, [0.5, 0.5], size=300)  # how often each replicate is drawn
    k = np.sqrt(2) * student_t.ppf(0.95, 1) / norm.ppf(0.95)
    aucs = np.array([[[expanded_auc(per_seed[s][label], y[label], patient, row) for s in per_seed]
                      for label in y] for row in counts])  # (resamples, labels, replicates)
    mean = aucs.mean(axis=2, keepdims=True)
    by_resample = (mean[..., 0] + k * ((picks[:, None, :] / 2 - 0.5) * (aucs - mean)).sum(axis=2))
    means = by_resample.mean(axis=1)
    assert np.isnan(means).any()  # undefined resamples are left out, not counted as 0 or 0.5
    lo, hi = np.quantile(means[~np.isnan(means)], [0.05, 0.95])
    zs = out["table"]["none"]["zeroshot"]
    assert zs["mean"]["ci"] == pytest.approx([max(0.0, lo), min(1.0, hi)], abs=1e-12)  # an AUC's range
    assert zs["mean"]["resamples"] == int((~np.isnan(means)).sum())
    full = np.mean([[roc_auc_score(y[label], per_seed[s][label]) for s in per_seed] for label in y])
    assert zs["mean"]["auc"] == pytest.approx(full, abs=1e-12)
    edema = by_resample[:, 0]
    lo, hi = np.quantile(edema[~np.isnan(edema)], [0.05, 0.95])
    assert zs["labels"]["Edema"]["ci"] == pytest.approx([max(0.0, lo), min(1.0, hi)], abs=1e-12)
    seed_means = [np.mean([roc_auc_score(y[label], per_seed[s][label]) for label in y]) for s in per_seed]
    assert zs["mean"]["replicate_sd"] == pytest.approx(np.std(seed_means, ddof=1), abs=1e-12)


def _replicates_case(spread: float, n_replicates: int = 4) -> dict:
    """One mix whose replicates score the same patients; replicate r adds r * spread to its positives."""
    patient, y, score = _clustered_case(60, 1.0, 3)
    reps = {str(r): {"Edema": score["Edema"] + r * spread * y["Edema"]} for r in range(n_replicates)}
    single = ablation({"none": scores_table({"0": score}, y, patient)}, ReportConfig(bootstrap_resamples=400), seed=0)
    many = ablation({"none": scores_table(reps, y, patient)}, ReportConfig(bootstrap_resamples=400), seed=0)
    return {"single": single["table"]["none"]["zeroshot"]["mean"], "many": many["table"]["none"]["zeroshot"]["mean"]}


def test_replicates_that_agree_leave_the_interval_to_the_patients():
    """Replicates with identical scores add nothing: the CI is the test-patient CI of one model."""
    out = _replicates_case(0.0)
    assert out["many"]["ci"] == pytest.approx(out["single"]["ci"], abs=1e-12)
    assert out["many"]["replicate_sd"] == 0.0


def test_replicates_that_disagree_widen_the_interval():
    """Replicates whose AUCs spread apart widen the CI beyond the patients' alone, by about Student's t of
    their spread, and the interval still holds the replicate mean."""
    out = _replicates_case(0.3)
    single, many = out["single"]["ci"], out["many"]["ci"]
    assert many[1] - many[0] > 1.2 * (single[1] - single[0])
    assert many[0] < out["many"]["auc"] < many[1]
    sd = out["many"]["replicate_sd"]
    assert sd > 0.01
    assert (many[1] - many[0]) / 2 > student_t.ppf(0.975, 3) * sd / 2 * 0.8  # ≈ t_3 · sd / √4 or wider


def _paired_case(spread: float) -> dict:
    """PairAug = the baseline plus a signal on positives, three replicates; PairAug's replicate r adds
    r * spread more to its positives, so its replicates disagree when spread > 0."""
    patient, y, score = _clustered_case(60, 0.8, 7)
    base = scores_table({str(r): score for r in range(3)}, y, patient)
    ours = scores_table({str(r): {"Edema": score["Edema"] + (0.15 + r * spread) * y["Edema"]} for r in range(3)},
                        y, patient)
    (row,) = ablation({"none": base, "pairaug": ours}, ReportConfig(bootstrap_resamples=400), seed=0)["verdicts"]
    return row


def test_paired_replicates_that_agree_leave_the_difference_to_the_patients():
    """Three replicates that score alike give the paired CI of one replicate: the patients' alone."""
    patient, y, score = _clustered_case(60, 0.8, 7)
    base = scores_table({"0": score}, y, patient)
    ours = scores_table({"0": {"Edema": score["Edema"] + 0.15 * y["Edema"]}}, y, patient)
    (single,) = ablation({"none": base, "pairaug": ours}, ReportConfig(bootstrap_resamples=400), seed=0)["verdicts"]
    assert _paired_case(0.0)["ci"] == pytest.approx(single["ci"], abs=1e-12)


def test_paired_replicates_that_disagree_widen_the_difference():
    """PairAug's replicates spread apart: the paired CI widens past the patients' alone and still holds
    the difference."""
    agree, disagree = _paired_case(0.0), _paired_case(0.3)
    assert disagree["ci"][1] - disagree["ci"][0] > 1.5 * (agree["ci"][1] - agree["ci"][0])
    assert disagree["ci"][0] < disagree["delta"] < disagree["ci"][1]


def test_rerun_interval_is_the_t_prediction_interval_of_the_replicate_differences():
    """With one baseline the band is the plain t prediction interval of a rerun's mean of R new draws:
    delta ± t_{R−1} · sd(per-replicate differences) · √(2 / R)."""
    row = _paired_case(0.3)
    patient, y, score = _clustered_case(60, 0.8, 7)
    d = [roc_auc_score(y["Edema"], score["Edema"] + (0.15 + r * 0.3) * y["Edema"]) - roc_auc_score(y["Edema"],
                                                                                                   score["Edema"])
         for r in range(3)]
    half = student_t.ppf(0.975, 2) * np.std(d, ddof=1) * np.sqrt(2 / 3)
    assert row["delta"] == pytest.approx(np.mean(d), abs=1e-12)
    assert row["rerun_interval"] == pytest.approx([np.mean(d) - half, np.mean(d) + half], abs=1e-12)
    assert rerun_half_width(np.array([[0.81, 0.80]]), 0.95) is None  # one replicate: no spread to predict from


def test_report_gives_every_baseline_of_a_measure_the_same_band_from_all_mixes():
    """Three baselines, three replicates: each row's rerun interval is its delta ± one half-width, the band of
    the (replicate × mix) AUCs of PairAug and all three baselines together."""
    patient, y, score = _clustered_case(60, 0.8, 7)
    rng = np.random.default_rng(5)
    mixes = {m: scores_table({str(r): {"Edema": score["Edema"] + rng.normal(0, 0.4, len(patient))} for r in range(3)},
                             y, patient) for m in ("pairaug", "none", "real_dup", "inter")}
    rows = ablation(mixes, ReportConfig(bootstrap_resamples=50), seed=0)["verdicts"]
    auc = {m: [roc_auc_score(y["Edema"], df[df["seed"] == str(r)]["score"]) for r in range(3)]
           for m, df in mixes.items()}
    half = rerun_half_width(np.array([auc["pairaug"], auc["none"], auc["real_dup"], auc["inter"]]).T, 0.95)
    assert len(rows) == 3
    for row in rows:
        assert row["rerun_interval"] == pytest.approx([row["delta"] - half, row["delta"] + half], abs=1e-12)


def test_rerun_band_ignores_a_shift_every_mix_shares_and_widens_for_a_noisy_mix():
    """A replicate seed that lifts every mix alike cancels in every paired difference; one mix's own noise
    widens the band of every row (its variance is pooled over the mixes)."""
    rng = np.random.default_rng(3)
    base = 0.8 + rng.normal(0, 0.005, (3, 7))
    shifted = base + np.array([[0.03], [-0.02], [0.01]])  # each replicate moves all seven mixes
    assert rerun_half_width(shifted, 0.95) == pytest.approx(rerun_half_width(base, 0.95), rel=1e-9)
    noisy = base.copy()
    noisy[:, 4] += [0.02, -0.02, 0.0]
    assert rerun_half_width(noisy, 0.95) > 1.5 * rerun_half_width(base, 0.95)


def test_a_rerun_lands_wholly_inside_the_band_at_least_as_often_as_promised():
    """Simulated ablations (7 mixes, 3 replicates, mix effects, replicate effects shared by the mixes, normal
    noise): the six differences of an independent rerun all lie in the first run's band in ≥ 95 % of
    replications (Bonferroni: a little more); bands of 95 % per row (no Bonferroni) each hold their row
    95 % of the time, so all six together far less often."""
    rng = np.random.default_rng(0)
    mix_effect = np.array([0.81, 0.80, 0.802, 0.805, 0.804, 0.803, 0.806])
    def run():
        return mix_effect + rng.normal(0, 0.02, (3, 1)) + rng.normal(0, 0.006, (3, 7))
    family, per_row = [], []
    for _ in range(3000):
        first, rerun = run(), run()
        moved = np.abs((rerun[:, :1] - rerun[:, 1:]).mean(0) - (first[:, :1] - first[:, 1:]).mean(0))
        family.append(np.all(moved <= rerun_half_width(first, 0.95)))
        per_row.append(moved <= rerun_half_width(first, 1 - 6 * 0.05))  # 95 % for each row alone
    assert 0.95 <= np.mean(family) <= 0.99
    assert np.mean(per_row) == pytest.approx(0.95, abs=0.01)
    assert np.mean(np.all(per_row, axis=1)) < 0.85


def _clustered_case(n_patients: int, signal: float, seed: int) -> tuple[np.ndarray, dict, dict]:
    rng = np.random.default_rng(seed)
    patient = np.repeat(np.arange(n_patients), rng.integers(1, 4, n_patients))
    y = {"Edema": (rng.random(len(patient)) < 0.4).astype(int)}
    score = {"Edema": rng.normal(size=len(patient)) + signal * y["Edema"]}
    return patient, y, score


def test_a_patients_images_move_together():
    """Copying each image within its patient changes no patient-bootstrap resample, so the CI stays
    the same; resampling images instead would narrow it."""
    patient, y, score = _clustered_case(30, 1.0, 0)
    cfg = ReportConfig(bootstrap_resamples=400)
    once = ablation({"none": scores_table({"0": score}, y, patient)}, cfg, seed=0)
    twice = ablation({"none": scores_table({"0": {"Edema": np.tile(score["Edema"], 3)}},
                                           {"Edema": np.tile(y["Edema"], 3)}, np.tile(patient, 3))}, cfg, seed=0)
    a, b = once["table"]["none"]["zeroshot"]["mean"], twice["table"]["none"]["zeroshot"]["mean"]
    assert b["auc"] == pytest.approx(a["auc"], abs=1e-12)
    assert b["ci"] == pytest.approx(a["ci"], abs=1e-12)
    assert once["test_patients"] == twice["test_patients"] == 30


def test_a_mix_compared_with_itself_differs_by_exactly_zero():
    """The paired difference uses the same resamples for both mixes: identical scores give [0, 0], p = 1."""
    patient, y, score = _clustered_case(40, 1.0, 1)
    table = scores_table({"0": score, "1": {"Edema": score["Edema"][::-1].copy()}}, y, patient)
    out = ablation({"none": table, "pairaug": table.copy()}, ReportConfig(bootstrap_resamples=300), seed=0)
    (row,) = out["verdicts"]
    assert row["baseline"] == "none" and row["delta"] == 0.0
    assert row["ci"] == [0.0, 0.0] and row["p_value"] == 1.0 and row["p_holm"] == 1.0
    assert row["verdict"] == "no difference shown"
    assert out["table"]["none"]["zeroshot"]["mean"]["ci"][1] > out["table"]["none"]["zeroshot"]["mean"]["ci"][0]


def test_pairing_narrows_the_ci_of_a_small_shift():
    """PairAug = the baseline's scores plus a small signal on positives: the paired CI is far narrower
    than either mix's own CI (they share the patient noise) and excludes 0."""
    patient, y, score = _clustered_case(80, 0.8, 2)
    base = scores_table({"0": score}, y, patient)
    ours = scores_table({"0": {"Edema": score["Edema"] + 0.15 * y["Edema"]}}, y, patient)
    out = ablation({"none": base, "pairaug": ours}, ReportConfig(bootstrap_resamples=500), seed=0)
    (row,) = out["verdicts"]
    own = out["table"]["none"]["zeroshot"]["mean"]["ci"]
    assert row["ci"][0] > 0 and row["verdict"] == "beats" and row["p_holm"] < 0.05
    assert row["ci"][1] - row["ci"][0] < 0.5 * (own[1] - own[0])


def test_holm_matches_a_hand_computation():
    # sorted 0.01, 0.03, 0.04, 0.2 → ×4, ×3, ×2, ×1 = 0.04, 0.09, 0.08 → 0.09 (monotone), 0.2
    assert holm([0.04, 0.01, 0.2, 0.03]) == pytest.approx([0.09, 0.04, 0.2, 0.09])
    assert holm([0.5, None, 0.4]) == pytest.approx([0.8, None, 0.8]) and holm([0.6, 0.7])[1] == 1.0
    assert holm([0.9, 0.95, 0.99])[0] == 1.0  # capped at 1


def test_bootstrap_p_and_percentile_ci_by_hand():
    # 1 of 4 differences ≤ 0, 3 of 4 ≥ 0: 2 · min(2/5, 4/5) = 0.8
    assert bootstrap_p(np.array([-1.0, 1.0, 2.0, 3.0])) == pytest.approx(0.8)
    assert bootstrap_p(np.full(99, 0.5)) == pytest.approx(2 / 100)  # never 0 from a finite bootstrap
    assert bootstrap_p(np.array([np.nan])) is None
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0, np.nan])
    assert percentile_ci(values, 0.5) == pytest.approx((2.0, 4.0))  # the 25th and 75th percentiles of 1..5


def test_verdict_words_follow_the_ci():
    assert verdict((0.01, 0.03), 0.01, 0.05) == "beats"
    assert verdict((-0.03, -0.01), 0.01, 0.05) == "loses to"
    assert verdict((-0.01, 0.02), 0.01, 0.05) == "no difference shown"  # CI holds 0
    assert verdict((0.01, 0.03), 0.2, 0.05) == "no difference shown"  # Holm p too large
    assert verdict(None, None, 0.05) == "no difference shown"


def _write_mix(root, mix: str, table: pd.DataFrame) -> None:
    write_parquet(table, root / mix / "scores.parquet")


def test_report_compares_baselines_only_and_is_byte_identical_on_rerun(tmp_path):
    patient, y, score = _clustered_case(50, 1.0, 3)
    rng = np.random.default_rng(0)
    for mix, shift in (("none", 0.0), ("text_only", 0.3), ("pairaug", 0.6), ("pool_real", 1.0)):
        noisy = {"Edema": score["Edema"] + shift * y["Edema"] + 0.1 * rng.normal(size=len(patient))}
        table = pd.concat([scores_table({"0": noisy, "1": noisy}, y, patient),
                           scores_table({"0": noisy, "1": noisy}, y, patient, kind="probe 10%")])
        _write_mix(tmp_path / "eval", mix, table)
    cfg = ReportConfig(bootstrap_resamples=200)
    _write_mix(tmp_path / "eval", "inter", pd.DataFrame(columns=SCORE_COLUMNS))  # a mix without models
    mixes = ["none", "text_only", "intra", "inter", "pairaug", "pool_real"]
    write_report(mixes, cfg, 0, tmp_path / "eval", tmp_path / "a.md", tmp_path / "a.json")
    first = (tmp_path / "a.json").read_bytes(), (tmp_path / "a.md").read_bytes()
    write_report(mixes, cfg, 0, tmp_path / "eval", tmp_path / "a.md", tmp_path / "a.json")
    assert ((tmp_path / "a.json").read_bytes(), (tmp_path / "a.md").read_bytes()) == first

    saved = json.loads(first[0])
    assert saved["missing_mixes"] == ["intra", "inter"]  # no scores table, an empty one
    assert saved["table"]["pool_real"]["role"] == "reference" and saved["table"]["none"]["role"] == "baseline"
    rows = {(r["measure"], r["baseline"]): r for r in saved["verdicts"]}
    assert set(rows) == {(m, b) for m in ("zeroshot", "probe 10%") for b in ("none", "text_only")}  # no pool_real
    for measure in ("zeroshot", "probe 10%"):  # Holm over the two baselines of each measure
        ps = [rows[(measure, b)]["p_value"] for b in ("none", "text_only")]
        assert [rows[(measure, b)]["p_holm"] for b in ("none", "text_only")] == pytest.approx(holm(ps))
    md = first[1].decode()
    assert "| `pool_real` (reference) |" in md and "Not evaluated (no scores): `intra`, `inter`." in md
    assert "What the interval covers: each CI resamples, together, the replicates" in md
    assert "| probe 10% | `none` |" in md
    assert "| zeroshot | `none` |" in md and "PairAug beats" in md


def test_bad_scores_and_params_are_named(tmp_path):
    patient, y, score = _clustered_case(10, 1.0, 4)
    table = scores_table({"0": score}, y, patient)
    _write_mix(tmp_path / "eval", "none", table)
    _write_mix(tmp_path / "eval", "pairaug", table.iloc[1:])  # one test image short
    with pytest.raises(InputError, match=r"pairaug/scores.parquet"):
        write_report(["none", "pairaug"], ReportConfig(), 0, tmp_path / "eval", tmp_path / "a.md", tmp_path / "a.json")
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "a.md").exists()
    _write_mix(tmp_path / "eval", "pairaug", table.assign(patient_id="pat00"))  # images moved to another patient
    with pytest.raises(InputError, match=r"another patient.*pairaug/scores.parquet"):
        write_report(["none", "pairaug"], ReportConfig(), 0, tmp_path / "eval", tmp_path / "a.md", tmp_path / "a.json")
    _write_mix(tmp_path / "eval", "pairaug", table.drop(columns="y"))
    with pytest.raises(InputError, match=r"lacks column.*'y'.*pairaug/scores.parquet"):
        write_report(["none", "pairaug"], ReportConfig(), 0, tmp_path / "eval", tmp_path / "a.md", tmp_path / "a.json")
    with pytest.raises(ParamError, match=r"report\.ci"):
        section(ReportConfig, {"report": {"ci": 1.5}}, "report")
    with pytest.raises(ParamError, match=r"report\.bootstrap_resamples"):
        section(ReportConfig, {"report": {"bootstrap_resamples": 0}}, "report")
