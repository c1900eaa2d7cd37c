"""What inter, image_only and intra generation share: the manifest columns, the generator's fingerprint, the
plan of items (ids and noise seeds), the rewrite rows they draw from, the stored image size, the progress bar."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from pairaug.data.images import load_gray
from pairaug.data.schema import read_pairs
from pairaug.errors import InputError
from pairaug.generate.config import SamplingConfig
from pairaug.generate.store import ChunkStore, run_chunks
from pairaug.hashing import seed_from, stable_hash
from pairaug.models.checkpoints import folder_sha, resolve
from pairaug.models.generator import TextToImagePipeline, load_generator
from pairaug.parallel import Ranks

MANIFEST_COLUMNS = ["pair_id", "branch", "replicate", "source_pair_id", "report", "image", "image_sha256", "seed",
                    "generator_sha", "steps", "guidance", "eta", "inversion"]


def generator_sha(folder: str | Path) -> str:
    """A fingerprint of the generator: the external checkpoint's, or a hash of our saved files."""
    return folder_sha(folder)


def plan(branch: str, sources: pd.DataFrame, seed: int, gen_sha: str, cfg: SamplingConfig,
         replicates: Sequence[int] = (0,)) -> pd.DataFrame:
    """Items to generate, report by report and a replicate each: (pair_id, replicate, source_pair_id, report,
    seed); ids hash everything that makes the image, the replicate included."""
    rows = []
    for src, report in zip(sources["source_pair_id"], sources["report"]):
        for rep in replicates:
            pair_id = stable_hash(branch, src, report, seed, rep, gen_sha, cfg.steps, cfg.guidance, cfg.resolution)
            rows.append({"pair_id": pair_id, "replicate": rep, "source_pair_id": src, "report": report,
                         "seed": seed_from("noise", pair_id)})
    return pd.DataFrame(rows, columns=["pair_id", "replicate", "source_pair_id", "report", "seed"])


def progress_bar(total: int, done: int, desc: str) -> tqdm:
    return tqdm(total=total, initial=done, desc=desc, unit="pair", disable=None)


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


def stored_image_size(prepared: str | Path) -> int:
    pairs = read_pairs(prepared)
    return int(load_gray(Path(prepared).parent / pairs["image"].iloc[0]).shape[0])


def load_pipe(generator_dir: str | Path, dtype: torch.dtype, device: torch.device) -> TextToImagePipeline:
    """The generator of `generator_dir` (ours, or the external checkpoint it points at) on `device`."""
    path, _ = resolve(generator_dir)
    return load_generator(path, dtype=dtype, device=device)


def run_store(store: ChunkStore, make: Callable, ranks: Ranks, name: str, out_dir: str | Path,
              columns: Sequence[str], log: logging.Logger) -> pd.DataFrame | None:
    """Make this rank's chunks (an interrupted run's are reused), then on rank 0 wait for every rank's and
    assemble the manifest into `out_dir`; other ranks return None. `log`: the branch module's logger."""
    items = store.items
    done = len(items) - sum(len(store.chunk(k)) for k in store.todo())
    with progress_bar(len(items), done, f"{name}-generate") as bar:
        made = run_chunks(store, make, ranks.rank, ranks.world, bar.update)
    log.info("%s: generated %d pairs, %d reused from an interrupted run", name, made, done)
    if not ranks.is_main:
        return None
    store.wait_all()
    return store.assemble(out_dir, columns)
