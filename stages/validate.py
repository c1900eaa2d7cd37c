"""DVC stage `validate`: the Great Expectations quality gate on the pruned synthetic pairs.

Passing writes data/validated/ (what `pretrain` reads); a failing suite exits non-zero with one line
naming each failed expectation, so the pipeline stops before anything trains on bad pairs.
"""

from pairaug.params import load_params, section
from pairaug.quality.gate import ValidateConfig
from pairaug.quality.validate import validate_pairs
from pairaug.stage import run_stage


def main() -> None:
    cfg = section(ValidateConfig, load_params(), "validate")
    validate_pairs(cfg)


if __name__ == "__main__":
    run_stage(main)
