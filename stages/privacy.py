"""DVC stage `privacy`: the memorisation check — each synthetic image's nearest real train film (scorer
embedding and pixels), near-copies flagged against the real valid films' natural distance →
data/privacy/images.parquet (read by validate's suite), metrics/privacy.json, the distance histograms."""

import logging

from pairaug.io import write_json
from pairaug.launch import LaunchConfig, configure
from pairaug.models.scorer import load_scorer
from pairaug.params import load_params, section
from pairaug.quality.privacy import PrivacyConfig, check_memorisation, plot_distances, write_outputs
from pairaug.stage import run_stage

log = logging.getLogger("pairaug.privacy")


def main() -> None:
    params = load_params()
    configure(section(LaunchConfig, params, "launch"))  # launch.device / mixed_precision
    cfg = section(PrivacyConfig, params, "privacy")
    table, metrics, reference = check_memorisation(cfg, load_scorer("models/scorer", batch_size=cfg.batch_size))
    write_outputs(table, "data/privacy")
    write_json("metrics/privacy.json", metrics)
    plot_distances(table, reference, metrics, "metrics/privacy_distances.png")
    log.info("privacy: %d near-copies of %d synthetic images (%d among %d kept); thresholds pixel %.4f, "
             "embedding %.5f", metrics["near_copies"], metrics["images"], metrics["kept_near_copies"],
             metrics["kept"], metrics["thresholds"]["pixel"], metrics["thresholds"]["embedding"])


if __name__ == "__main__":
    run_stage(main)
