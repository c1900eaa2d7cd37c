"""DVC stage `validate`: the Great Expectations quality gate on the pruned synthetic pairs.

Passing writes data/validated/ (what `pretrain` reads); a failing suite exits non-zero with one line
naming each failed expectation, so the pipeline stops before anything trains on bad pairs. Either way it
writes the run's datasheet, metrics/datasheet.{md,json}.
"""

from pathlib import Path

from pairaug import layout
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
    datasheet = DatasheetSources(
        prepared=Path(layout.PREPARED), rewritten=Path(layout.REWRITTEN), synthetic=Path(layout.SYNTHETIC),
        candidates=Path(layout.CANDIDATES), prune_metrics=Path(layout.PRUNE_METRICS),
        privacy_metrics=Path(layout.PRIVACY_METRICS), validated=Path(layout.VALIDATED),
        markdown=Path(layout.DATASHEET_MD), json=Path(layout.DATASHEET_JSON), prompts=prompts)
    validate_pairs(cfg, pruned=layout.PRUNED, prepared=layout.PREPARED, out_dir=layout.VALIDATED,
                   metrics_path=layout.VALIDATE_METRICS, gx_root=layout.GX_ROOT, mixes=read_mixes(params),
                   pool=layout.POOL, privacy=layout.PRIVACY_TABLE, datasheet=datasheet,
                   replicates=replicates(params))


if __name__ == "__main__":
    run_stage(main)
