"""DVC stage `rewrite`: train reports of data/prepared/pairs.parquet → data/rewritten/<task>.parquet."""

from pairaug import layout
from pairaug.params import load_params, section
from pairaug.rewrite.config import RewriteConfig
from pairaug.rewrite.run import run_rewrite
from pairaug.stage import run_stage


def main() -> None:
    params = load_params()
    cfg = section(RewriteConfig, params, "rewrite")
    run_rewrite(cfg, params.get("seed", 0), layout.PREPARED, layout.REWRITTEN, layout.REWRITE_METRICS)


if __name__ == "__main__":
    run_stage(main)
