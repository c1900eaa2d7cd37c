"""`pairaug replicate`'s comparison: each run's difference against the other run's interval, and flips."""

from __future__ import annotations

import json

from pairaug.report.replication import compare, write_replication


def _ablation(rows: list[tuple], rerun: float | None = None) -> dict:
    """Verdict rows (measure, baseline, delta, ci, verdict); with `rerun`, each one's rerun interval is
    delta ± rerun."""
    return {"verdicts": [{"measure": m, "baseline": b, "delta": d, "ci": ci, "verdict": v,
                          **({"rerun_interval": [d - rerun, d + rerun]} if rerun is not None else {})}
                         for m, b, d, ci, v in rows]}


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
    assert result["by_measure"]["zeroshot"] == {"rows": 3, "outside": 2, "outside_rerun": 0, "flips": 1,
                                                "same_verdict": 0}  # no rerun intervals: none counted
    md = write_replication(result, "replicates 0,1,2", "replicate-3-4-5", tmp_path / "replication.md")
    assert md == (tmp_path / "replication.md").read_text()
    assert "| zeroshot | `image_only` | +0.020 [+0.010, +0.030] beats | -0.020 [-0.030, -0.010] loses to | **no** " in md
    assert json.loads((tmp_path / "replication.json").read_text())["by_measure"]["zeroshot"]["flips"] == 1


def test_an_experiment_name_run_again_on_a_newer_commit_reads_its_newest_run(tmp_path):
    # `pairaug curve run` reuses the names curve-<size> on every commit; collect must read this commit's.
    import os
    import subprocess

    from pairaug.report.experiments import read_experiment_json

    def git(*args: str, date: str = "2026-01-01T00:00:00") -> str:
        env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date, "GIT_AUTHOR_NAME": "t",
               "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
        return subprocess.run(["git", *args], cwd=tmp_path, env=env, check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q")
    for auc, date, baseline in ((0.9, "2026-03-01T00:00:00", "00/aa"), (0.5, "2026-01-01T00:00:00", "ff/bb"),
                                (0.7, "2026-02-01T00:00:00", "11/cc")):
        (tmp_path / "m.json").write_text(json.dumps({"auc": auc}))
        git("add", "m.json")
        git("commit", "-qm", str(auc), date=date)
        # Refs sort by name otherwise: the newest run here sits under the lexically first baseline.
        git("update-ref", f"refs/exps/{baseline}/curve-25", git("rev-parse", "HEAD"))
    assert read_experiment_json(tmp_path, "curve-25", "m.json", hint="")["auc"] == 0.9


def test_each_delta_is_also_checked_against_the_other_runs_rerun_interval(tmp_path):
    """A rerun's Δ outside the other run's CI but inside its rerun interval counts against the CI only."""
    first = _ablation([("zeroshot", "none", 0.010, [0.005, 0.015], "beats"),
                       ("zeroshot", "inter", 0.000, [-0.004, 0.004], "no difference shown")], rerun=0.010)
    second = _ablation([("zeroshot", "none", 0.018, [0.014, 0.022], "beats"),
                        ("zeroshot", "inter", 0.030, [0.026, 0.034], "beats")], rerun=0.010)
    result = compare(first, second)
    rows = {r["baseline"]: r for r in result["rows"]}
    assert not rows["none"]["this_in_other"] and not rows["none"]["other_in_this"]  # 0.010 ∉ [0.014, 0.022]
    assert rows["none"]["this_in_other_rerun"] and rows["none"]["other_in_this_rerun"]  # 0.010 ∈ [0.008, 0.028]
    assert not rows["inter"]["this_in_other_rerun"] and not rows["inter"]["other_in_this_rerun"]
    assert result["by_measure"]["zeroshot"] == {"rows": 2, "outside": 2, "outside_rerun": 1, "flips": 0,
                                                "same_verdict": 1}
    md = write_replication(result, "replicates 0,1,2", "replicate-3-4-5", tmp_path / "replication.md")
    assert "| zeroshot | `none` | +0.010 [+0.005, +0.015] beats | +0.018 [+0.014, +0.022] beats | **no** | **no** " \
           "| yes | no |" in md
    assert "| zeroshot | 2 | 2 | 1 | 1 | 0 |" in md
