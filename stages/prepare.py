"""DVC stage `prepare`: the configured data source → data/prepared/ (pairs.parquet + images/)."""

from pairaug.data.prepare import DataConfig, prepare
from pairaug.data.samples import sample_grid
from pairaug.params import load_params, section
from pairaug.stage import run_stage


def main() -> None:
    params = load_params()
    cfg = section(DataConfig, params, "data")
    pairs = prepare(cfg, params.get("seed", 0), "data/prepared", metrics_path="metrics/data.json")
    sample_grid(pairs, "data/prepared", "metrics/samples.png")


if __name__ == "__main__":
    run_stage(main)
