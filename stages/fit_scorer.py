"""DVC stage `fit-scorer`: train the embedded CLIP scorer on the public pool (or adopt scorer.checkpoint)."""

from pathlib import Path

from pairaug.data.schema import read_pairs
from pairaug.io import write_json
from pairaug.measurement.images import load_split_images
from pairaug.models.scorer import load_scorer
from pairaug.params import load_params, section
from pairaug.stage import run_stage
from pairaug.train.scorer import ScorerConfig, alignment_gap, fit_scorer

POOL = Path("data/pool/pairs.parquet")
TARGET = Path("data/prepared/pairs.parquet")


def main() -> None:
    params = load_params()
    cfg = section(ScorerConfig, params, "scorer")
    seed = params.get("seed", 0)
    info = fit_scorer(cfg, seed, POOL, "models/scorer")
    # The scorer must read the target's images: matched valid pairs score higher than shuffled ones (the
    # test split is read by `evaluate` alone). This gap is what prune's threshold is calibrated on.
    pairs = read_pairs(TARGET)
    valid = pairs[pairs["split"] == "valid"]
    gap = alignment_gap(load_scorer("models/scorer"), load_split_images(valid, TARGET.parent).numpy(),
                        valid["report"].tolist(), seed)
    write_json("metrics/scorer.json", {"valid_alignment": gap, **info})


if __name__ == "__main__":
    run_stage(main)
