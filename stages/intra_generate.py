"""DVC stage `intra-generate`: IntraAug edits of the real films (prompt-to-prompt from their inversion),
with the edit settings intra-sweep chose on the valid split for every `intra` param left null."""

from pairaug import layout
from pairaug.generate.config import IntraConfig
from pairaug.generate.intra import generate_intra
from pairaug.generate.intra_sweep import chosen_setting
from pairaug.launch import LaunchConfig, process_group, relaunch
from pairaug.parallel import Ranks
from pairaug.params import load_params, replicates, section
from pairaug.stage import run_stage


def main() -> None:
    params = load_params()
    cfg = section(IntraConfig, params, "intra").resolved(chosen_setting(layout.INTRA_SWEEP_METRICS))
    relaunch(section(LaunchConfig, params, "launch"))  # launch.processes > 1: each rank takes chunk k ≡ rank
    with process_group(Ranks.from_env()) as ranks:
        generate_intra(cfg, params.get("seed", 0), replicates(params), prepared=layout.PREPARED,
                       rewritten=layout.INTRA_REWRITES, generator_dir=layout.GENERATOR,
                       out_dir=layout.INTRA_SYNTHETIC, work_root=layout.GENERATION_WORK, ranks=ranks)


if __name__ == "__main__":
    run_stage(main)
