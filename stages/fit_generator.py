"""DVC stage `fit-generator`: train the embedded text-to-image UNet on the public pool (or adopt
generator.checkpoint). It reads nothing of the target: `check-priors` checks it on the target's valid reports."""

from pairaug import layout
from pairaug.io import write_json
from pairaug.launch import LaunchConfig, configure
from pairaug.params import load_params, section
from pairaug.stage import run_stage
from pairaug.train.generator import GeneratorConfig, fit_generator


def main() -> None:
    params = load_params()
    configure(section(LaunchConfig, params, "launch"))  # launch.device / mixed_precision
    cfg = section(GeneratorConfig, params, "generator")
    info = fit_generator(cfg, params.get("seed", 0), layout.POOL, layout.SCORER, layout.GENERATOR)
    write_json(layout.GENERATOR_METRICS, info)


if __name__ == "__main__":
    run_stage(main)
