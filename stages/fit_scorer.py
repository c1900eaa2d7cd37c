"""DVC stage `fit-scorer`: train the embedded CLIP scorer on the public pool (or adopt scorer.checkpoint).
It reads nothing of the target: `check-priors` checks the scorer on the target's valid split."""

from pairaug import layout
from pairaug.io import write_json
from pairaug.launch import LaunchConfig, configure
from pairaug.params import load_params, section
from pairaug.stage import run_stage
from pairaug.train.scorer import ScorerConfig, fit_scorer


def main() -> None:
    params = load_params()
    configure(section(LaunchConfig, params, "launch"))  # launch.device / mixed_precision
    cfg = section(ScorerConfig, params, "scorer")
    write_json(layout.SCORER_METRICS, fit_scorer(cfg, params.get("seed", 0), layout.POOL, layout.SCORER))


if __name__ == "__main__":
    run_stage(main)
