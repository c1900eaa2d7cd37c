"""The scarcity curve: one point per DVC experiment `curve-<size>`, read from the experiment's git ref."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pairaug.errors import InputError
from pairaug.report.scarcity import collect, plot_rows, write_curve

GIT = ["git", "-c", "user.email=t@pairaug", "-c", "user.name=t"]


def _ablation(pairaug: float, none: float) -> dict:
    def stat(v):
        return {"mean": {"auc": v, "ci": [v - 0.02, v + 0.02]}, "labels": {}}
    def verdict(measure, delta):
        return {"measure": measure, "baseline": "none", "delta": delta, "ci": [delta - 0.01, delta + 0.01],
                "p_holm": 0.01 if delta > 0.02 else 0.4, "verdict": "beats" if delta > 0.02 else "no difference"}
    return {"table": {"none": {"role": "baseline", "zeroshot": stat(none), "probe 10%": stat(none + 0.1)},
                      "pairaug": {"role": "method", "zeroshot": stat(pairaug), "probe 10%": stat(pairaug + 0.1)},
                      "pool_real": {"role": "reference", "zeroshot": stat(0.9), "probe 10%": None}},
            "verdicts": [verdict("zeroshot", pairaug - none), verdict("probe 10%", pairaug - none),
                         verdict("probe 1%", 0.5)]}


def _experiment(root: Path, size: int, pairs: int, pairaug: float, none: float) -> None:
    """A commit holding the metrics an experiment run would commit, under an experiment ref as DVC names it."""
    (root / "metrics").mkdir(exist_ok=True)
    (root / "metrics/ablation.json").write_text(json.dumps(_ablation(pairaug, none)))
    (root / "metrics/data.json").write_text(json.dumps({"splits": {"train": {"pairs": pairs, "patients": size}}}))
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", f"exp {size}"], cwd=root, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True, text=True).stdout
    subprocess.run(["git", "update-ref", f"refs/exps/ab/cdef0123/curve-{size}", sha.strip()], cwd=root, check=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    subprocess.run([*GIT, "init", "-q"], cwd=tmp_path, check=True)
    _experiment(tmp_path, 25, 41, pairaug=0.70, none=0.62)
    _experiment(tmp_path, 200, 330, pairaug=0.84, none=0.83)
    return tmp_path


def test_the_curve_reads_each_experiments_metrics_from_its_ref(repo: Path):
    points = collect(repo, [200, 25])
    assert [p["real_train_pairs"] for p in points] == [330, 41]
    small = points[1]["mixes"]
    assert small["pairaug"]["zeroshot"] == {"mean": 0.70, "ci_low": pytest.approx(0.68), "ci_high": pytest.approx(0.72)}
    assert small["none"]["probe_10"]["mean"] == pytest.approx(0.72)
    assert small["pool_real"]["probe_10"] is None and small["pool_real"]["role"] == "reference"
    rows = plot_rows(points, "zeroshot")  # sorted by size, a row per mix: what `dvc plots show` draws
    assert [(r["real_train_pairs"], r["mix"], r["auc"]) for r in rows] == [
        (41, "none", 0.62), (41, "pairaug", 0.7), (41, "pool_real", 0.9),
        (330, "none", 0.83), (330, "pairaug", 0.84), (330, "pool_real", 0.9)]
    assert rows[1]["ci_low"] == pytest.approx(0.68) and rows[1]["ci_high"] == pytest.approx(0.72)
    write_curve(points, repo / "out")
    assert json.loads((repo / "out/scarcity_zeroshot.json").read_text()) == rows
    assert (repo / "out/scarcity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(json.loads((repo / "out/scarcity.json").read_text())["points"]) == 2


def test_a_size_without_an_experiment_is_named(repo: Path):
    with pytest.raises(InputError, match="curve-75"):
        collect(repo, [25, 75])


def test_pairaug_curve_collect_writes_the_curve(repo: Path):
    (repo / "dvc.yaml").write_text("stages: {}\n")  # the repository root pairaug finds
    proc = subprocess.run([str(Path(sys.executable).parent / "pairaug"), "curve", "collect", "--sizes", "25", "200"],
                          cwd=repo, capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "DVC_ROOT"})
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((repo / "metrics/scarcity_probe_10.json").read_text())
    pairaug = [r for r in rows if r["mix"] == "pairaug"]
    assert [r["real_train_pairs"] for r in pairaug] == [41, 330] and pairaug[0]["auc"] == 0.8
    missing = subprocess.run([str(Path(sys.executable).parent / "pairaug"), "curve", "collect", "--sizes", "75"],
                             cwd=repo, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "curve-75" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1


def test_the_curve_table_carries_the_reports_paired_verdicts(repo: Path, tmp_path: Path):
    """Where augmentation stops paying is read from each size's own paired comparison, not from the bands."""
    points = collect(repo, [25, 200])
    assert points[0]["pairaug_vs"]["zeroshot"]["none"]["verdict"] == "beats"
    assert points[1]["pairaug_vs"]["zeroshot"]["none"]["verdict"] == "no difference"
    assert set(points[0]["pairaug_vs"]) == {"zeroshot", "probe_10"}  # the curve's two panels, not probe 1 %
    write_curve(points, tmp_path / "out")
    table = (tmp_path / "out/scarcity.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| 41 (25)") or line.startswith("| 330 (200)")]
    assert rows[0] == "| 41 (25) | 0.700 [0.680, 0.720] | +0.080 [+0.070, +0.090] beats |"
    assert rows[1].endswith("+0.010 [+0.000, +0.020] no difference |")
