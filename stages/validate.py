"""DVC stage `validate`: the Great Expectations quality gate on the pruned synthetic pairs.

Passing writes data/validated/ (what `pretrain` reads); a failing suite exits non-zero with one line
naming each failed expectation, so the pipeline stops before anything trains on bad pairs. Either way it
writes the run's datasheet, metrics/datasheet.{md,json}.
"""

from pairaug.data.mixes import read_mixes
from pairaug.params import load_params, replicates, section
from pairaug.quality.datasheet import DatasheetSources
from pairaug.quality.gate import ValidateConfig
from pairaug.quality.validate import validate_pairs
from pairaug.rewrite.prompts import TASKS, get_prompt
from pairaug.stage import run_stage


def main() -> None:
    params = load_params()
    cfg = section(ValidateConfig, params, "validate")
    # The datasheet quotes the rewrite instructions: the texts `rewrite.prompts` resolves to (declared in dvc.yaml).
    overrides = ((params.get("rewrite") or {}).get("prompts")) or {}
    prompts = {task: {"text": (p := get_prompt(task, overrides)).text, "sha": p.sha} for task in TASKS}
    # One manifest per mix of `pretrain.mixes` (the only pretrain key dvc.yaml declares here).
    validate_pairs(cfg, mixes=read_mixes(params), datasheet=DatasheetSources(prompts=prompts),
                   replicates=replicates(params))


if __name__ == "__main__":
    run_stage(main)
