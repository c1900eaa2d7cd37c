"""DVC stages `inter-generate` and `image-only-generate`: one new image per report from fresh noise.

Usage: python stages/generate.py inter|image_only
"""

import sys

from pairaug import layout
from pairaug.errors import ParamError
from pairaug.generate.config import SamplingConfig
from pairaug.generate.run import generate_fresh
from pairaug.launch import LaunchConfig, process_group, relaunch
from pairaug.parallel import Ranks
from pairaug.params import load_params, replicates, section
from pairaug.stage import run_stage


def main() -> None:
    branch = sys.argv[1] if len(sys.argv) > 1 else ""
    if branch not in ("inter", "image_only"):
        raise ParamError("stage argument", f"expected inter or image_only, got {branch!r}")
    params = load_params()
    cfg = section(SamplingConfig, params, "generate")
    relaunch(section(LaunchConfig, params, "launch"))  # launch.processes > 1: each rank takes chunk k ≡ rank
    with process_group(Ranks.from_env()) as ranks:
        generate_fresh(branch, cfg, params.get("seed", 0), replicates(params), prepared=layout.PREPARED,
                       rewritten_dir=layout.REWRITTEN, generator_dir=layout.GENERATOR,
                       out_dir=layout.synthetic(branch), work_root=layout.GENERATION_WORK, ranks=ranks)


if __name__ == "__main__":
    run_stage(main)
