"""InterAug and image-only generation: one new image per report, from fresh per-pair noise.

`inter`: the LLM's InterAug reports (new "patients"); `image_only` (a baseline): the original train
reports. Each replicate (`replicates`) draws its own image of every report; each pair's seed comes from
its id (which hashes the replicate), so any pair regenerates identically; images are stored at the
dataset's image size so real and synthetic pairs share one format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from pairaug.hashing import seed_from, stable_hash
from pairaug.measurement.images import resize_batch
from pairaug.models.checkpoints import folder_sha
from pairaug.models.generator import TextToImagePipeline
from pairaug.params import positive

Branch = Literal["inter", "intra", "image_only"]

MANIFEST_COLUMNS = ["pair_id", "branch", "replicate", "source_pair_id", "report", "image", "image_sha256", "seed",
                    "generator_sha", "steps", "guidance", "eta", "inversion"]


@dataclass
class SamplingConfig:
    steps: int = 20
    guidance: float = 3.5
    resolution: int | None = None  # null: the generator's native size (RoentGen: 512)
    batch_size: int = 64
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"

    def validate(self, prefix: str) -> None:
        positive(prefix, steps=self.steps, guidance=self.guidance, batch_size=self.batch_size)
        if self.resolution is not None:
            positive(prefix, resolution=self.resolution)


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


def make_inter_chunk(pipe: TextToImagePipeline, branch: str, cfg: SamplingConfig, stored_size: int, gen_sha: str):
    """A chunk-maker for `ChunkStore`: one guided DDIM sampling batch per chunk."""
    def make(chunk: pd.DataFrame) -> tuple[list[dict], dict[str, np.ndarray]]:
        with torch.inference_mode():
            images = pipe(chunk["report"].tolist(), chunk["seed"].tolist(), num_inference_steps=cfg.steps,
                          guidance_scale=cfg.guidance, height=cfg.resolution)
        images = resize_batch(images, stored_size)
        rows, files = [], {}
        for (_, item), pixels in zip(chunk.iterrows(), images):
            rel = f"images/{item['pair_id']}.png"
            files[rel] = pixels
            rows.append({"pair_id": item["pair_id"], "branch": branch, "replicate": int(item["replicate"]),
                         "source_pair_id": item["source_pair_id"],
                         "report": item["report"], "image": rel, "seed": int(item["seed"]), "generator_sha": gen_sha,
                         "steps": cfg.steps, "guidance": cfg.guidance, "eta": np.nan, "inversion": False})
        return rows, files
    return make


def progress_bar(total: int, done: int, desc: str) -> tqdm:
    return tqdm(total=total, initial=done, desc=desc, unit="pair", disable=None)
