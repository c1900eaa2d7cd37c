"""DVC stage `pretrain@<mix>`: CLIP pretraining on real train pairs + the mix's validated synthetic pairs.

Usage: python stages/pretrain.py <mix>
"""

import sys

from pairaug import layout
from pairaug.errors import ParamError
from pairaug.launch import LaunchConfig, process_group, relaunch
from pairaug.parallel import Ranks
from pairaug.params import load_params, replicates, section
from pairaug.stage import run_stage
from pairaug.tracking.runs import PretrainRuns
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
        # Rank 0 alone logs: one MLflow run per seed, live while it trains (a failure to log only warns).
        runs = PretrainRuns(mix, tracking) if ranks.is_main else None
        try:
            pretrain_mix(mix, cfg, params.get("seed", 0), layout.PREPARED, layout.VALIDATED,
                         layout.vlp(mix), ranks, hooks=runs, replicates=replicates(params))
        except BaseException as e:
            if runs:
                runs.abort("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
            raise
    # After the outputs are written: the runs completed (inputs, audit trail, the model).
    if runs:
        runs.complete(layout.vlp(mix))


if __name__ == "__main__":
    run_stage(main)
