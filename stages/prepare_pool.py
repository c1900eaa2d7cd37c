"""DVC stage `prepare-pool`: the public pool (params `pool`) → data/pool/, what fit-scorer and fit-generator
learn from. A second, disjoint population: the target's scarce train split never meets it."""

from pairaug import layout
from pairaug.data.prepare import pool_config, prepare
from pairaug.params import load_params
from pairaug.stage import run_stage


def main() -> None:
    params = load_params()
    prepare(pool_config(params), params.get("seed", 0), layout.POOL_DIR, metrics_path=layout.POOL_METRICS)


if __name__ == "__main__":
    run_stage(main)
