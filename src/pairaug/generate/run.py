"""Stage-level generation: the sources of a branch → resumable chunks → `data/synthetic/<branch>/`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pairaug.data.schema import read_pairs
from pairaug.generate.common import (
    MANIFEST_COLUMNS,
    generator_sha,
    load_pipe,
    plan,
    read_rewritten,
    run_store,
    stored_image_size,
)
from pairaug.generate.config import SamplingConfig
from pairaug.generate.inter import make_inter_chunk
from pairaug.generate.store import ChunkStore
from pairaug.hashing import stable_hash
from pairaug.launch import generation_dtype, stage_device
from pairaug.parallel import Ranks

log = logging.getLogger(__name__)


def branch_sources(branch: str, prepared: str | Path, rewritten_dir: str | Path) -> pd.DataFrame:
    if branch == "image_only":
        pairs = read_pairs(prepared)
        train = pairs[pairs["split"] == "train"]
        return pd.DataFrame({"source_pair_id": train["pair_id"].to_numpy(), "report": train["report"].to_numpy()})
    return read_rewritten(Path(rewritten_dir) / f"{branch}.parquet")


def generate_fresh(branch: str, cfg: SamplingConfig, seed: int, replicates: Sequence[int] = (0,), *, prepared: str | Path, rewritten_dir: str | Path,
                   generator_dir: str | Path, out_dir: str | Path, work_root: str | Path,
                   ranks: Ranks | None = None) -> pd.DataFrame | None:
    """Generate branch `inter` or `image_only` into `out_dir`; rank 0 assembles and returns the manifest."""
    ranks = ranks or Ranks.from_env()
    sources = branch_sources(branch, prepared, rewritten_dir)
    gen_sha = generator_sha(generator_dir)
    items = plan(branch, sources, seed, gen_sha, cfg, replicates)
    device = stage_device(ranks)
    dtype = generation_dtype(cfg.dtype, device)
    # The dtype in use shapes the pixels too (float16 on GPU): chunks of another dtype are not reused.
    key = stable_hash(items["pair_id"].tolist(), cfg.batch_size, str(dtype))
    store = ChunkStore(Path(work_root) / f"{branch}-{key}", items, cfg.batch_size)
    make = make_inter_chunk(load_pipe(generator_dir, dtype, device), branch, cfg, stored_image_size(prepared), gen_sha)
    return run_store(store, make, ranks, branch, out_dir, MANIFEST_COLUMNS, log)
