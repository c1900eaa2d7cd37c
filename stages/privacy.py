"""DVC stage `privacy`: the memorisation check — each synthetic image's nearest real train film (scorer
embedding and pixels), near-copies flagged against the real valid films' natural distance →
data/privacy/images.parquet (read by validate's suite), metrics/privacy.json, the distance histograms."""

import logging
from pathlib import Path

from pairaug import layout
from pairaug.io import write_json
from pairaug.launch import LaunchConfig, configure
from pairaug.models.scorer import load_scorer
from pairaug.params import load_params, section
from pairaug.quality.privacy import PrivacyConfig, Sources, check_memorisation, plot_distances, write_outputs
from pairaug.stage import run_stage

log = logging.getLogger("pairaug.privacy")


def main() -> None:
    params = load_params()
    configure(section(LaunchConfig, params, "launch"))  # launch.device / mixed_precision
    cfg = section(PrivacyConfig, params, "privacy")
    sources = Sources(Path(layout.PREPARED), Path(layout.SYNTHETIC), Path(layout.PRUNED), Path(layout.SCORER))
    table, metrics, reference = check_memorisation(cfg, load_scorer(layout.SCORER, batch_size=cfg.batch_size), sources)
    write_outputs(table, layout.PRIVACY_DIR)
    write_json(layout.PRIVACY_METRICS, metrics)
    plot_distances(table, reference, metrics, layout.PRIVACY_PLOT)
    log.info("privacy: %d near-copies of %d synthetic images (%d among %d kept); thresholds pixel %.4f, "
             "embedding %.5f", metrics["near_copies"], metrics["images"], metrics["kept_near_copies"],
             metrics["kept"], metrics["thresholds"]["pixel"], metrics["thresholds"]["embedding"])


if __name__ == "__main__":
    run_stage(main)
