"""DVC stage `fit-scorer`: train the embedded CLIP scorer on real train pairs (or adopt scorer.checkpoint)."""

from pathlib import Path

from pairaug.data.schema import read_pairs
from pairaug.io import write_json
from pairaug.measurement.images import load_split_images
from pairaug.models.scorer import load_scorer
from pairaug.params import load_params, section
from pairaug.stage import run_stage
from pairaug.train.scorer import ScorerConfig, alignment_gap, fit_scorer

PAIRS = Path("data/prepared/pairs.parquet")


def main() -> None:
    params = load_params()
    cfg = section(ScorerConfig, params, "scorer")
    seed = params.get("seed", 0)
    info = fit_scorer(cfg, seed, PAIRS, "models/scorer")
    # The scorer must read the images: matched real test pairs score higher than shuffled ones.
    pairs = read_pairs(PAIRS)
    test = pairs[pairs["split"] == "test"]
    gap = alignment_gap(load_scorer("models/scorer"), load_split_images(test, PAIRS.parent).numpy(),
                        test["report"].tolist(), seed)
    write_json("metrics/scorer.json", {"test_alignment": gap, **info})


if __name__ == "__main__":
    run_stage(main)
