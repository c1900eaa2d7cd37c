"""DVC stage `intra-check`: metrics/intra.json — do the IntraAug edits (all candidates, and the ones prune
kept) keep the patient and draw the change their report asks for?"""

import logging
from pathlib import Path

import pandas as pd

from pairaug import layout
from pairaug.errors import InputError
from pairaug.generate.config import IntraConfig
from pairaug.generate.intra_check import intra_metrics, kept_intra_ids
from pairaug.generate.intra_sweep import chosen_setting
from pairaug.io import write_json
from pairaug.launch import LaunchConfig, configure
from pairaug.params import load_params, section
from pairaug.stage import run_stage

log = logging.getLogger("pairaug.intra")
OUT = layout.INTRA_SYNTHETIC


def main() -> None:
    params = load_params()
    configure(section(LaunchConfig, params, "launch"))  # launch.device / mixed_precision
    cfg = section(IntraConfig, params, "intra").resolved(chosen_setting(layout.INTRA_SWEEP_METRICS))
    manifest_path = Path(OUT) / "manifest.parquet"
    if not manifest_path.exists():
        raise InputError("the IntraAug manifest is not there (run `dvc repro intra-generate`)", file=manifest_path)
    manifest = pd.read_parquet(manifest_path)
    metrics = intra_metrics(cfg, params.get("seed", 0), manifest, out_dir=OUT, prepared=layout.PREPARED,
                            rewritten=layout.INTRA_REWRITES, generator_dir=layout.GENERATOR,
                            scorer_dir=layout.SCORER, probe_films=layout.POOL,
                            kept=kept_intra_ids(layout.PRUNED))
    write_json(layout.INTRA_METRICS, metrics)
    if metrics["pairs"] and not metrics["kept"]:
        log.info("intra: prune kept no intra pair of %d: the kept figures are null in %s", metrics["pairs"],
                 layout.INTRA_METRICS)
    elif metrics["pairs"]:
        every, kept = metrics["labels"]["all"], metrics["labels"]["kept"]
        log.info("intra: changed-finding AUC from x' %.3f (kept %d: %.3f; x itself %.3f), changed findings read "
                 "%s (kept %s), cos(f(x'), f(x)) %.3f (kept %.3f, unrelated %.3f); inversion PSNR at the edit's "
                 "guidance %.1f dB (plain DDIM %.1f)",
                 every["changed_mean_auc"], metrics["kept"], kept["changed_mean_auc"],
                 every["changed_source_film_mean_auc"], _share(every["changed_read"]), _share(kept["changed_read"]),
                 metrics["patient"]["edited_vs_source_film"],
                 metrics["patient"]["kept_edited_vs_source_film"], metrics["patient"]["fresh_vs_random_film"],
                 metrics["inversion"]["psnr_guidance_edit"], metrics["inversion"]["psnr_guidance_edit_ddim"])


def _share(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


if __name__ == "__main__":
    run_stage(main)
