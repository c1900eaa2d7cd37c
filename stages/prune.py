"""DVC stage `prune`: score every synthetic candidate (inter, intra, image_only, paraphrase) with the scorer
and keep the aligned ones → data/pruned/{candidates,pairs}.parquet, metrics/prune.json, the score plot."""

from pairaug.io import write_json
from pairaug.launch import LaunchConfig, configure
from pairaug.models.scorer import load_scorer
from pairaug.params import load_params, section
from pairaug.prune import PruneConfig, plot_scores, prune
from pairaug.stage import run_stage


def main() -> None:
    params = load_params()
    configure(section(LaunchConfig, params, "launch"))  # launch.device / mixed_precision
    cfg = section(PruneConfig, params, "prune")
    scorer = load_scorer("models/scorer", batch_size=cfg.batch_size)
    candidates, metrics = prune(cfg, scorer, "data/pruned", seed=params.get("seed", 0))
    write_json("metrics/prune.json", metrics)
    plot_scores(candidates, "metrics/prune_scores.png")


if __name__ == "__main__":
    run_stage(main)
