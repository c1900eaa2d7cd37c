"""DVC stage `intra-sweep`: IntraAug's edit settings measured on valid films → metrics/intra_sweep.json (plot + choice)."""

import logging

from pairaug import layout
from pairaug.generate.config import IntraConfig
from pairaug.generate.intra_sweep import run_sweep
from pairaug.io import write_json
from pairaug.launch import LaunchConfig, configure
from pairaug.params import load_params, section
from pairaug.stage import run_stage

log = logging.getLogger("pairaug.intra")


def main() -> None:
    params = load_params()
    configure(section(LaunchConfig, params, "launch"))  # launch.device / mixed_precision
    cfg = section(IntraConfig, params, "intra")
    rows = run_sweep(cfg, params.get("seed", 0), prepared=layout.PREPARED,
                     rewritten_valid=layout.INTRA_VALID_REWRITES, generator_dir=layout.GENERATOR,
                     scorer_dir=layout.SCORER, probe_films=layout.POOL)
    write_json(layout.INTRA_SWEEP_METRICS, rows)
    chosen = next(r for r in rows if r["chosen"])
    log.info("intra-sweep: chose %s (changed-finding AUC %s, cos(f(x'), f(x)) %.3f on %d valid edits)",
             chosen["setting"], chosen["changed_auc"], chosen["patient_cos"], chosen["pairs"])


if __name__ == "__main__":
    run_stage(main)
