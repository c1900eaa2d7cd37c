"""DVC stage `evaluate@<mix>`: zero-shot and linear-probe AUCs of the mix's models on the test split,
and the per-test-image scores behind them for the report's bootstrap (`data/eval/<mix>/scores.parquet`:
per-image data, a DVC-cached output rather than a committed metric).

Usage: python stages/evaluate.py <mix>
"""

import sys

from pairaug import layout
from pairaug.errors import ParamError
from pairaug.evaluate.run import EvaluateConfig, evaluate_mix
from pairaug.io import write_json, write_parquet
from pairaug.launch import LaunchConfig, configure
from pairaug.params import load_params, section
from pairaug.stage import run_stage
from pairaug.tracking.runs import log_evaluate
from pairaug.tracking.store import TrackingConfig


def main() -> None:
    if len(sys.argv) != 2:
        raise ParamError("stage argument", "usage: python stages/evaluate.py <mix>")
    mix = sys.argv[1]
    params = load_params()
    configure(section(LaunchConfig, params, "launch"))  # launch.device / mixed_precision
    cfg = section(EvaluateConfig, params, "evaluate")
    tracking = section(TrackingConfig, params, "tracking")
    result, roc, scores = evaluate_mix(layout.vlp(mix), cfg, layout.PREPARED, params.get("seed", 0))
    write_json(layout.eval_metrics(mix), {"mix": mix, **result})
    write_json(layout.eval_roc(mix), roc)
    write_parquet(scores, layout.eval_scores(mix))
    # Into the run pretrain@<mix> logged (found by tags); a failure to log only warns.
    log_evaluate(mix, tracking, layout.vlp(mix), result, roc)


if __name__ == "__main__":
    run_stage(main)
