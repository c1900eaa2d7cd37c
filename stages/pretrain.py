"""DVC stage `pretrain@<mix>`: CLIP pretraining on real train pairs + the mix's validated synthetic pairs.

Usage: python stages/pretrain.py <mix>
"""

import sys

from pairaug.errors import ParamError
from pairaug.params import load_params, section
from pairaug.stage import run_stage
from pairaug.tracking import TrackingConfig, log_pretrain
from pairaug.train.pretrain import PretrainConfig, pretrain_mix


def main() -> None:
    if len(sys.argv) != 2:
        raise ParamError("stage argument", "usage: python stages/pretrain.py <mix>")
    mix = sys.argv[1]
    params = load_params()
    cfg = section(PretrainConfig, params, "pretrain")
    tracking = section(TrackingConfig, params, "tracking")
    pretrain_mix(mix, cfg, params.get("seed", 0), "data/prepared/pairs.parquet", "data/validated/pairs.parquet",
                 f"models/vlp/{mix}")
    # After the outputs are written: one MLflow run per seed; a failure to log only warns.
    log_pretrain(mix, tracking, f"models/vlp/{mix}")


if __name__ == "__main__":
    run_stage(main)
