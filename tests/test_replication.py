"""`pairaug replicate`'s comparison: each run's difference against the other run's interval, and flips."""

from __future__ import annotations

import json

from pairaug.report.replication import compare, write_replication


def _ablation(rows: list[tuple[str, str, float, list[float], str]]) -> dict:
    return {"verdicts": [{"measure": m, "baseline": b, "delta": d, "ci": ci, "verdict": v} for m, b, d, ci, v in rows]}


def test_each_delta_is_checked_against_the_other_runs_interval(tmp_path):
    first = _ablation([("zeroshot", "none", 0.03, [0.01, 0.05], "beats"),
                       ("zeroshot", "inter", 0.01, [-0.01, 0.03], "no difference shown"),
                       ("zeroshot", "image_only", 0.02, [0.01, 0.03], "beats"),
                       ("probe 10%", "none", 0.0, [-0.02, 0.02], "no difference shown")])
    second = _ablation([("zeroshot", "none", 0.02, [0.0, 0.04], "no difference shown"),
                        ("zeroshot", "inter", 0.05, [0.04, 0.06], "beats"),
                        ("zeroshot", "image_only", -0.02, [-0.03, -0.01], "loses to"),
                        ("zeroshot", "text_only", 0.0, [-0.01, 0.01], "no difference shown")])  # not in the first
    result = compare(first, second)
    rows = {r["baseline"]: r for r in result["rows"]}
    assert set(rows) == {"none", "inter", "image_only"}  # only the rows both runs have
    assert rows["none"]["this_in_other"] and rows["none"]["other_in_this"] and not rows["none"]["flip"]
    assert not rows["inter"]["this_in_other"] and not rows["inter"]["other_in_this"]  # 0.01 ∉ [0.04, 0.06], 0.05 ∉ [-0.01, 0.03]
    assert rows["image_only"]["flip"]  # beats in one run, loses to in the other
    assert result["by_measure"]["zeroshot"] == {"rows": 3, "outside": 2, "flips": 1, "same_verdict": 0}
    md = write_replication(result, "replicates 0,1,2", "replicate-3-4-5", tmp_path / "replication.md")
    assert md == (tmp_path / "replication.md").read_text()
    assert "| zeroshot | `image_only` | +0.020 [+0.010, +0.030] beats | -0.020 [-0.030, -0.010] loses to | **no** " in md
    assert json.loads((tmp_path / "replication.json").read_text())["by_measure"]["zeroshot"]["flips"] == 1
