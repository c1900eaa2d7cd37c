"""InterAug and image-only generation: one new image per report, from fresh per-pair noise.

`inter`: the LLM's InterAug reports (new "patients"); `image_only` (a baseline): the original train
reports. Each replicate (`replicates`) draws its own image of every report; each pair's seed comes from
its id (which hashes the replicate), so any pair regenerates identically; images are stored at the
dataset's image size so real and synthetic pairs share one format.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import torch

from pairaug.generate.config import SamplingConfig
from pairaug.measurement.images import resize_batch
from pairaug.models.generator import TextToImagePipeline

Branch = Literal["inter", "intra", "image_only"]


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
