"""The declared DVC metrics are the small summary an experiment is compared on (docs/comparing.md)."""

import json
import shlex

import pytest
from conftest import run
from test_documented_commands import documented_commands

from pairaug.report.summary import experiment_summary

WIDTH = 160  # the terminal width the documented comparison must fit


def recommended_command() -> list[str]:
    """The command the docs give for comparing the mixes' zero-shot AUC (`dvc exp show` keeping the `zs.` columns)."""
    found = [c for c in documented_commands() if c.startswith("dvc exp show") and "^zs\\." in c and "--md" not in c]
    assert found, "the docs no longer give a `dvc exp show` command for the zero-shot columns"
    return [*shlex.split(found[0]), "--no-pager"]


def _stat(auc, lo, hi):
    return {"mean": {"auc": auc, "ci": [lo, hi], "seed_sd": None, "resamples": 10}, "labels": {}}


def test_summary_takes_each_figure_from_where_the_pipeline_wrote_it():
    report = {"table": {"none": {"role": "baseline", "zeroshot": _stat(0.71, 0.70, 0.72),
                                 "probe 1%": _stat(0.61, 0.6, 0.62), "probe 10%": _stat(0.65, 0.6, 0.7),
                                 "probe 100%": _stat(0.8, 0.79, 0.81)},
                        "pairaug": {"role": "method", "zeroshot": _stat(0.75123456, 0.74, 0.76)}},
              "verdicts": [{"measure": "zeroshot", "baseline": "none", "delta": 0.04123},
                           {"measure": "probe 10%", "baseline": "none", "delta": -0.5}]}
    priors = {"scorer": {"gap": 0.2}, "generator": {"mean_auc_checked": 0.9}}
    prune = {"tau": {"tau": 0.77}, "branches": {"inter": {"kept": 5, "total": 9}, "intra": {"kept": 0}}}
    s = experiment_summary(report, priors, prune)
    assert s["zs"] == {"none": 0.71, "pairaug": 0.7512} and s["zs_lo"]["pairaug"] == 0.74
    assert s["probe10"] == {"none": 0.65} and "pairaug" not in s["probe100"]
    assert s["vs"] == {"none": 0.0412}  # the zero-shot paired difference only
    assert s["checks"] == {"scorer_gap": 0.2, "generator_auc": 0.9, "tau": 0.77}
    assert s["kept"] == {"inter": 5, "intra": 0}


def _leaves(tree: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in tree.items():
        out |= _leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
    return out


@pytest.mark.slow
def test_dvc_exp_show_declares_exactly_the_summary_and_fits_the_terminal(tiny_repo):
    shown = json.loads(run(["dvc", "exp", "show", "--json"], tiny_repo).stdout)
    workspace = next(e for e in shown if e["rev"] == "workspace")
    metrics = workspace["data"]["metrics"]
    assert list(metrics) == ["metrics/summary.json"]  # the detailed JSONs are outputs, not metrics
    summary = json.loads((tiny_repo / "metrics/summary.json").read_text())
    recomputed = experiment_summary(*(json.loads((tiny_repo / f"metrics/{n}.json").read_text())
                                      for n in ("ablation", "priors", "prune")))
    assert metrics["metrics/summary.json"]["data"] == summary == json.loads(json.dumps(recomputed))
    assert set(summary["zs"]) == set(json.loads((tiny_repo / "metrics/ablation.json").read_text())["table"])

    table = run(recommended_command(), tiny_repo, env={"COLUMNS": str(WIDTH)}).stdout
    header = next(line for line in table.splitlines() if "Experiment" in line)
    assert [c for c in header.split() if c != "Experiment"] == [f"zs.{m}" for m in sorted(summary["zs"])]
    assert max(len(line) for line in table.splitlines()) <= WIDTH and "…" not in table
