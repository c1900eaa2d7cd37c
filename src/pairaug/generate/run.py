"""Stage-level generation: the sources of a branch → resumable chunks → `data/synthetic/<branch>/`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pairaug.data.images import load_gray
from pairaug.data.schema import read_pairs
from pairaug.errors import InputError
from pairaug.generate.inter import (
    MANIFEST_COLUMNS,
    SamplingConfig,
    generator_sha,
    make_inter_chunk,
    plan,
    progress_bar,
)
from pairaug.generate.store import ChunkStore, run_chunks
from pairaug.hashing import stable_hash
from pairaug.launch import generation_dtype, stage_device
from pairaug.models.checkpoints import resolve
from pairaug.models.generator import load_generator
from pairaug.parallel import Ranks

log = logging.getLogger(__name__)


def read_rewritten(path: str | Path) -> pd.DataFrame:
    """The usable rows of a rewrite output: (source_pair_id, report)."""
    path = Path(path)
    if not path.exists():
        raise InputError("rewritten reports not found (run `dvc repro rewrite`)", file=path)
    df = pd.read_parquet(path)
    for col in ("source_pair_id", "report_new", "status"):
        if col not in df.columns:
            raise InputError(f"missing column '{col}'", file=path, field=col)
    ok = df[df["status"] == "ok"]
    return ok.rename(columns={"report_new": "report"})[["source_pair_id", "report"]].reset_index(drop=True)


def branch_sources(branch: str, prepared: str | Path, rewritten_dir: str | Path) -> pd.DataFrame:
    if branch == "image_only":
        pairs = read_pairs(prepared)
        train = pairs[pairs["split"] == "train"]
        return pd.DataFrame({"source_pair_id": train["pair_id"].to_numpy(), "report": train["report"].to_numpy()})
    return read_rewritten(Path(rewritten_dir) / f"{branch}.parquet")


def stored_image_size(prepared: str | Path) -> int:
    pairs = read_pairs(prepared)
    return int(load_gray(Path(prepared).parent / pairs["image"].iloc[0]).shape[0])


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
    path, _ = resolve(generator_dir)
    pipe = load_generator(path, dtype=dtype, device=device)
    make = make_inter_chunk(pipe, branch, cfg, stored_image_size(prepared), gen_sha)
    done = len(items) - sum(len(store.chunk(k)) for k in store.todo())
    with progress_bar(len(items), done, f"{branch}-generate") as bar:
        made = run_chunks(store, make, ranks.rank, ranks.world, bar.update)
    log.info("%s: generated %d pairs, %d reused from an interrupted run", branch, made, done)
    if not ranks.is_main:
        return None
    store.wait_all()
    return store.assemble(out_dir, MANIFEST_COLUMNS)
