"""DVC stage `validate`: the Great Expectations quality gate on the pruned synthetic pairs.

Passing writes data/validated/ (what `pretrain` reads); a failing suite exits non-zero with one line
naming each failed expectation, so the pipeline stops before anything trains on bad pairs.
"""

from pairaug.params import load_params, section
from pairaug.quality.gate import ValidateConfig
from pairaug.quality.validate import validate_pairs
from pairaug.stage import run_stage
from pairaug.train.pretrain import PretrainConfig


def main() -> None:
    params = load_params()
    cfg = section(ValidateConfig, params, "validate")
    # Only `pretrain.mixes` (dvc.yaml declares no other pretrain key here): one manifest per mix.
    mixes = section(PretrainConfig, {"pretrain": {"mixes": params.get("pretrain", {}).get("mixes", {})}}, "pretrain")
    validate_pairs(cfg, mixes=mixes.mixes)


if __name__ == "__main__":
    run_stage(main)
