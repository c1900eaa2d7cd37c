"""DVC stage `check-priors`: do the pool-trained scorer and generator read the target's films?

On the target's valid split (the test split is read by `evaluate` alone): the scorer's matched-minus-
shuffled cosine, and the generator's probe check (images generated from valid reports, read by a pixel
probe fit on the pool's real films). A stage of its own so that the fits read only the pool and a new
target (the scarcity curve) reuses them from DVC's run cache → metrics/priors.json.
"""

from pathlib import Path

from pairaug import layout
from pairaug.data.schema import read_pairs
from pairaug.generate.config import SamplingConfig
from pairaug.io import write_json
from pairaug.launch import LaunchConfig, configure, generation_dtype, stage_device
from pairaug.measurement.images import load_split_images
from pairaug.models.checkpoints import resolve
from pairaug.models.generator import load_generator
from pairaug.models.scorer import load_scorer
from pairaug.params import from_dict, load_params, section
from pairaug.stage import run_stage
from pairaug.train.generator import GeneratorCheck, probe_check
from pairaug.train.scorer import alignment_gap

POOL = Path(layout.POOL)
TARGET = Path(layout.PREPARED)


def main() -> None:
    params = load_params()
    configure(section(LaunchConfig, params, "launch"))  # launch.device / mixed_precision
    seed = params.get("seed", 0)
    check = from_dict(GeneratorCheck, (params.get("generator") or {}).get("check") or {}, "generator.check")
    target = read_pairs(TARGET)
    valid = target[target["split"] == "valid"]
    scorer = alignment_gap(load_scorer(layout.SCORER), load_split_images(valid, TARGET.parent).numpy(),
                           valid["report"].tolist(), seed)
    # the generator as inter-generate runs it: its resolution, precision, batch and the stage's device
    sampling = section(SamplingConfig, params, "generate")
    device = stage_device()
    generator_dir, _ = resolve(layout.GENERATOR)  # ours, or the pointer to an adopted checkpoint
    pipe = load_generator(generator_dir, dtype=generation_dtype(sampling.dtype, device), device=device)
    generator = probe_check(pipe, read_pairs(POOL), POOL.parent, valid, TARGET.parent, check, seed,
                            height=sampling.resolution, batch_size=sampling.batch_size)
    write_json(layout.PRIORS_METRICS, {"scorer": {"split": "valid", **scorer},
                                       "generator": {"split": "valid", **generator}})


if __name__ == "__main__":
    run_stage(main)
