"""DVC stage `validate`: the Great Expectations quality gate on the pruned synthetic pairs.

Passing writes data/validated/ (what `pretrain` reads); a failing suite exits non-zero with one line
naming each failed expectation, so the pipeline stops before anything trains on bad pairs.
"""

from pairaug.data.mixes import read_mixes
from pairaug.params import load_params, section
from pairaug.quality.gate import ValidateConfig
from pairaug.quality.validate import validate_pairs
from pairaug.stage import run_stage


def main() -> None:
    params = load_params()
    cfg = section(ValidateConfig, params, "validate")
    # One manifest per mix of `pretrain.mixes` (the only pretrain key dvc.yaml declares here).
    validate_pairs(cfg, mixes=read_mixes(params))


if __name__ == "__main__":
    run_stage(main)
