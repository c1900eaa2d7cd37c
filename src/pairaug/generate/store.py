"""Resumable, shardable generation: work in fixed chunks, each written atomically, then assembled.

The items of a branch are sorted by pair id (within a `group_by` column when given: IntraAug keeps each
source film's items together, so a chunk inverts a film once for all of its edits) and cut into chunks
of `batch_size`; chunk k always holds the same pairs, whatever order the items came in, and its images
are generated as one batch. So a resumed run (completed chunks are skipped) and a run sharded over N
processes (chunk k goes to rank k mod N) produce byte-identical images to a single uninterrupted run. The work folder lives outside the DVC output (DVC clears outputs
before a stage runs), keyed by everything that shapes the images, and is removed once assembled.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from pairaug.data.provenance import provenance
from pairaug.hashing import file_digest
from pairaug.io import atomic_path, save_png, write_parquet


class ChunkStore:
    def __init__(self, work_dir: str | Path, items: pd.DataFrame, batch_size: int, group_by: str | None = None):
        self.work = Path(work_dir)
        self.items = items.sort_values([group_by, "pair_id"] if group_by else "pair_id").reset_index(drop=True)
        self.batch_size = batch_size
        self.n_chunks = (len(self.items) + batch_size - 1) // batch_size

    def chunk(self, k: int) -> pd.DataFrame:
        return self.items.iloc[k * self.batch_size:(k + 1) * self.batch_size]

    def path(self, k: int) -> Path:
        return self.work / f"chunk-{k:06d}"

    def done(self, k: int) -> bool:
        return (self.path(k) / "rows.parquet").exists()

    def todo(self, rank: int = 0, world: int = 1) -> list[int]:
        return [k for k in range(self.n_chunks) if k % world == rank and not self.done(k)]

    def write(self, k: int, rows: list[dict], images: dict[str, np.ndarray]) -> None:
        """Write chunk k's images (relative path → uint8 array) and rows in one atomic rename; every image
        named by a row carries that row's provenance in its PNG text chunks (pairaug.data.provenance)."""
        chunks = {}
        for row in rows:
            chunks[row["image"]] = provenance(row, "image")
            if row.get("source_image"):  # IntraAug's source-branch redraw, kept for audit
                chunks[row["source_image"]] = provenance(row, "source_branch")
        with atomic_path(self.path(k)) as tmp:
            tmp.mkdir(parents=True)
            for rel, pixels in images.items():
                save_png(pixels, tmp / rel, text=chunks.get(rel))
            for row in rows:
                row["image_sha256"] = file_digest(tmp / row["image"])
                for extra in ("source_image",):
                    if row.get(extra):
                        row[f"{extra}_sha256"] = file_digest(tmp / row[extra])
            write_parquet(pd.DataFrame(rows), tmp / "rows.parquet")

    def wait_all(self, timeout: float = 24 * 3600, poll: float = 1.0) -> None:
        """Block until every chunk is done (other ranks may still be writing theirs)."""
        deadline = time.monotonic() + timeout
        while not all(self.done(k) for k in range(self.n_chunks)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"chunks still missing in {self.work}")
            time.sleep(poll)

    def assemble(self, out_dir: str | Path, columns: list[str]) -> pd.DataFrame:
        """Link every chunk's files into `out_dir` (atomically) with one manifest; drop the work folder.

        Hard links, not moves: if the assembly fails or is killed midway, the chunks still hold all their
        images and a rerun assembles again (a move left chunks marked done but missing files).
        """
        frames = []
        with atomic_path(out_dir) as tmp:
            tmp.mkdir(parents=True)
            for k in range(self.n_chunks):
                src = self.path(k)
                rows = pd.read_parquet(src / "rows.parquet")
                for col in [c for c in rows.columns if c == "image" or c == "source_image"]:
                    for rel in rows[col].dropna():
                        dest = tmp / rel
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        _link_or_copy(src / rel, dest)
                frames.append(rows)
            manifest = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
            manifest = manifest.reindex(columns=columns).sort_values("pair_id").reset_index(drop=True)
            write_parquet(manifest, tmp / "manifest.parquet")
        shutil.rmtree(self.work, ignore_errors=True)
        return manifest


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:  # a filesystem without hard links
        shutil.copy2(src, dest)


def run_chunks(store: ChunkStore, make: Callable[[pd.DataFrame], tuple[list[dict], dict[str, np.ndarray]]],
               rank: int = 0, world: int = 1, progress: Callable[[int], None] | None = None) -> int:
    """Generate this rank's missing chunks; return how many pairs were generated."""
    made = 0
    for k in store.todo(rank, world):
        chunk = store.chunk(k)
        rows, images = make(chunk)
        store.write(k, rows, images)
        made += len(chunk)
        if progress:
            progress(len(chunk))
    return made
