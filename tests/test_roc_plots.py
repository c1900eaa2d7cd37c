"""`dvc plots show` groups the zero-shot ROC curves per label, a line per mix (seeds averaged)."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import run
from sklearn.metrics import roc_curve

from pairaug.data.schema import COMPETITION_LABELS
from pairaug.report.roc import FPR_GRID, label_file, roc_by_label, seed_averaged_tpr


def _scores(mix_shift: float, seeds=(0, 1), n=200, label="Edema", kind="zeroshot") -> pd.DataFrame:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, n)
    rows = []
    for s in seeds:
        score = y * mix_shift + rng.normal(size=n) + s * 0.1
        rows.append(pd.DataFrame({"seed": str(s), "kind": kind, "label": label, "pair_id": [f"p{i}" for i in range(n)],
                                  "patient_id": [f"q{i}" for i in range(n)], "y": y, "score": score}))
    return pd.concat(rows, ignore_index=True)


def test_a_mix_curve_is_the_mean_of_its_seeds_curves_at_fixed_fprs():
    df = _scores(1.0)
    expected = []
    for _, part in df.groupby("seed"):
        fpr, tpr, _ = roc_curve(part["y"], part["score"])
        expected.append(np.interp(FPR_GRID, fpr, tpr))
    got = seed_averaged_tpr(df)
    assert got[0] == 0.0 and got[-1] == 1.0
    np.testing.assert_allclose(got[1:], np.mean(expected, axis=0)[1:])
    assert (np.diff(got) >= -1e-12).all()  # a ROC curve never falls


def test_rows_hold_one_line_per_mix_and_a_better_mix_lies_above():
    curves = roc_by_label({"none": _scores(0.3), "pairaug": _scores(2.0), "probe_only": _scores(2.0, kind="probe 1%")})
    assert list(curves) == ["Edema"]  # the labels some mix scores zero-shot
    rows = pd.DataFrame(curves["Edema"])
    assert list(rows.columns) == ["mix", "fpr", "tpr"] and set(rows["mix"]) == {"none", "pairaug"}
    wide = rows.pivot(index="fpr", columns="mix", values="tpr")
    assert len(wide) == len(FPR_GRID) and (wide["pairaug"] >= wide["none"] - 1e-9).all()
    assert (wide["pairaug"] - wide["none"]).max() > 0.2
    assert label_file("Pleural Effusion") == "pleural_effusion.json"


@pytest.mark.slow
def test_dvc_plots_show_draws_each_labels_roc_with_every_mix(tiny_repo):
    shown = json.loads(run(["dvc", "plots", "show", "--json"], tiny_repo).stdout)
    # The scarcity plots come from `pairaug curve`, not from `dvc repro`: a fresh copy has none yet.
    errors = [e for e in shown.get("errors", []) if not e["name"].startswith("metrics/scarcity_")]
    assert not errors, errors
    mixes = set(json.loads((tiny_repo / "metrics/ablation.json").read_text())["table"])
    for label in COMPETITION_LABELS:
        plot = f"metrics/roc/{label_file(label)}"
        assert plot in shown["data"], sorted(shown["data"])
        spec = shown["data"][plot][0]
        values = spec["content"]["data"]["values"]
        assert {v["mix"] for v in values} == mixes
        assert spec["content"]["encoding"]["color"]["field"] == "mix"
    assert not any(name.startswith("metrics/eval/roc/") for name in shown["data"])  # no per-mix chart of everything
