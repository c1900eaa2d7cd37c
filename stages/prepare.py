"""DVC stage `prepare`: the configured data source → data/prepared/ (pairs.parquet + images/)."""

from pairaug import layout
from pairaug.data.prepare import DataConfig, prepare
from pairaug.data.samples import sample_grid
from pairaug.params import load_params, section
from pairaug.stage import run_stage


def main() -> None:
    params = load_params()
    cfg = section(DataConfig, params, "data")
    pairs = prepare(cfg, params.get("seed", 0), layout.PREPARED_DIR, metrics_path=layout.DATA_METRICS)
    sample_grid(pairs, layout.PREPARED_DIR, layout.SAMPLES_PLOT)


if __name__ == "__main__":
    run_stage(main)
