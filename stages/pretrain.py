"""DVC stage `pretrain@<mix>`: CLIP pretraining on real train pairs + the mix's validated synthetic pairs.

Usage: python stages/pretrain.py <mix>
"""

import sys

from pairaug.errors import ParamError
from pairaug.launch import LaunchConfig, process_group, relaunch
from pairaug.parallel import Ranks
from pairaug.params import load_params, section
from pairaug.stage import run_stage
from pairaug.tracking.runs import log_pretrain
from pairaug.tracking.store import TrackingConfig
from pairaug.train.pretrain import PretrainConfig, pretrain_mix


def main() -> None:
    if len(sys.argv) != 2:
        raise ParamError("stage argument", "usage: python stages/pretrain.py <mix>")
    mix = sys.argv[1]
    params = load_params()
    cfg = section(PretrainConfig, params, "pretrain")
    tracking = section(TrackingConfig, params, "tracking")
    relaunch(section(LaunchConfig, params, "launch"))  # launch.processes > 1: rerun under torchrun / accelerate
    with process_group(Ranks.from_env()) as ranks:
        pretrain_mix(mix, cfg, params.get("seed", 0), "data/prepared/pairs.parquet", "data/validated",
                     f"models/vlp/{mix}", ranks)
    # After the outputs are written: one MLflow run per seed (rank 0 only); a failure to log only warns.
    if ranks.is_main:
        log_pretrain(mix, tracking, f"models/vlp/{mix}")


if __name__ == "__main__":
    run_stage(main)
