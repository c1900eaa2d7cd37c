"""DVC stage `prune`: score every synthetic candidate (inter, intra, image_only, paraphrase) with the scorer
and keep the aligned ones → data/pruned/{candidates,pairs}.parquet, metrics/prune.json, the score plot."""

from pathlib import Path

from pairaug import layout
from pairaug.io import write_json
from pairaug.launch import LaunchConfig, configure
from pairaug.models.scorer import load_scorer
from pairaug.params import load_params, replicates, section
from pairaug.prune import PruneConfig, Sources, plot_scores, prune
from pairaug.stage import run_stage


def main() -> None:
    params = load_params()
    configure(section(LaunchConfig, params, "launch"))  # launch.device / mixed_precision
    cfg = section(PruneConfig, params, "prune")
    scorer = load_scorer(layout.SCORER, batch_size=cfg.batch_size)
    sources = Sources(*map(Path, (layout.PREPARED, layout.REWRITTEN, layout.SYNTHETIC, layout.DECISIONS, layout.POOL)))
    candidates, metrics = prune(cfg, scorer, layout.PRUNED_DIR, sources, seed=params.get("seed", 0),
                                 replicates=replicates(params))
    write_json(layout.PRUNE_METRICS, metrics)
    plot_scores(candidates, layout.PRUNE_PLOT)


if __name__ == "__main__":
    run_stage(main)
