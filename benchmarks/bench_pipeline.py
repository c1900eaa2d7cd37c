"""Benchmark of the whole pipeline (pytest; run separately, ~25 minutes on 2 cores):

    pytest benchmarks/bench_pipeline.py -s        # prints the table and the ratios measured in this run

On a fresh clone of HEAD with the default params and one pretraining seed (the budget's setting), it
times every stage of `dvc repro` and samples its peak memory (pipeline_times.py), then times a no-op
`dvc repro` (target ≤ 10 s) and the rerun after `prune.inter_tau` changes (target ≤ 30% of the full
run's time). The figures go to pytest-benchmark's `extra_info` as well, so `--benchmark-json` keeps them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pipeline_times import clone, measure, summary

REPO = Path(__file__).resolve().parents[1]
CHANGE = "prune.inter_tau=0.35"


def test_pipeline_times(benchmark, capsys):
    repo = clone(REPO)
    try:
        result = benchmark.pedantic(measure, args=(repo, ["replicates=[0]"], [CHANGE]), rounds=1, iterations=1)
    finally:
        shutil.rmtree(repo.parent, ignore_errors=True)
    benchmark.extra_info.update({"stages": result["stages"], "noop_s": result["noop_s"],
                                 "prune_change_share": result["changes"][CHANGE]["share"]})
    with capsys.disabled():
        print("\n" + summary(result))
    assert result["noop_s"] > 0 and result["changes"][CHANGE]["reran"]  # figures, not timing targets
