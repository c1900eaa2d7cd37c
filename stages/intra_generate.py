"""DVC stage `intra-generate`: IntraAug edits of the real films (prompt-to-prompt, DDIM inversion) + metrics."""

import logging

from pairaug.generate.intra import IntraConfig, generate_intra, intra_metrics
from pairaug.io import write_json
from pairaug.launch import LaunchConfig, process_group, relaunch
from pairaug.parallel import Ranks
from pairaug.params import load_params, section
from pairaug.stage import run_stage

log = logging.getLogger("pairaug.intra")
PREPARED = "data/prepared/pairs.parquet"
REWRITTEN = "data/rewritten/intra.parquet"
OUT = "data/synthetic/intra"


def main() -> None:
    params = load_params()
    cfg = section(IntraConfig, params, "intra")
    seed = params.get("seed", 0)
    relaunch(section(LaunchConfig, params, "launch"))  # launch.processes > 1: each rank takes chunk k ≡ rank
    with process_group(Ranks.from_env()) as ranks:
        manifest = generate_intra(cfg, seed, prepared=PREPARED, rewritten=REWRITTEN,
                                  generator_dir="models/generator", out_dir=OUT, work_root="data/.work", ranks=ranks)
    if manifest is None:  # not rank 0: rank 0 assembles and measures
        return
    metrics = intra_metrics(cfg, seed, manifest, out_dir=OUT, prepared=PREPARED, rewritten=REWRITTEN,
                            generator_dir="models/generator", scorer_dir="models/scorer",
                            probe_films="data/pool/pairs.parquet")
    write_json("metrics/intra.json", metrics)
    if metrics["pairs"]:
        log.info("intra: cos(x', x) %.3f vs %.3f unrelated; y' label AUC from x' %.3f (x: %.3f); inversion PSNR "
                 "%.1f dB", metrics["patient"]["edited_vs_source_film"], metrics["patient"]["fresh_vs_random_film"],
                 metrics["labels"]["mean_auc"], metrics["labels"]["source_film_mean_auc"],
                 metrics["inversion"]["psnr_guidance_1"])


if __name__ == "__main__":
    run_stage(main)
