"""Benchmark of fresh generation (pytest-benchmark; run separately, after `dvc repro fit-generator`):

    pytest benchmarks/bench_generate.py                      # prints the ratio measured in this run
    BENCH_THREADS=1 pytest benchmarks/bench_generate.py      # pin torch's threads (a busy machine)

Compares the whole `TextToImagePipeline.__call__` (prompt encoding, per-seed noise, the DDIM loop with
classifier-free guidance, decoding to uint8) with a loop of the same number of raw `unet(...)` calls on
the same doubled batch (unconditional + conditional), at `generate.batch_size`, `generate.steps` and
`generate.guidance` from params.yaml, on the generator in models/generator (the embedded one, or the
external checkpoint it points to). Acceptance: the pipeline costs ≤ 1.2× the UNet passes alone.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from pairaug.models.checkpoints import resolve
from pairaug.models.generator import load_generator

REPO = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())["generate"]
STEPS, GUIDANCE, BATCH = PARAMS["steps"], PARAMS["guidance"], PARAMS["batch_size"]
ROUNDS = 5

if os.environ.get("BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["BENCH_THREADS"]))


@pytest.fixture(scope="module")
def pipe():
    folder = REPO / "models" / "generator"
    if not folder.exists():
        pytest.skip("models/generator not found: run `dvc repro fit-generator` first")
    path, _ = resolve(folder)
    return load_generator(path)


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    pairs = REPO / "data" / "prepared" / "pairs.parquet"
    if pairs.exists():
        reports = pd.read_parquet(pairs, columns=["report"])["report"].tolist()
    else:
        reports = ["FINDINGS: Moderate cardiomegaly. Small left pleural effusion. IMPRESSION: Cardiomegaly."]
    return [reports[i % len(reports)] for i in range(BATCH)]


def unet_only(pipe, prompts: list[str]):
    """The same UNet calls the pipeline makes (one per step on the doubled batch), and nothing else."""
    height = pipe.unet.config.sample_size * pipe.vae_scale
    with torch.inference_mode():
        cond = pipe.encode_prompt(prompts)
        states = torch.cat([pipe.encode_prompt([""]).expand_as(cond), cond])
        latents = pipe.initial_noise(list(range(BATCH)), height)
        doubled = torch.cat([latents, latents]) if GUIDANCE != 1.0 else latents
        states = states if GUIDANCE != 1.0 else cond
    pipe.scheduler.set_timesteps(STEPS)
    timesteps = list(pipe.scheduler.timesteps)

    @torch.inference_mode()
    def passes():
        for t in timesteps:
            pipe.unet(doubled, t, encoder_hidden_states=states)
    return passes


def test_pipeline_vs_unet_passes(benchmark, capsys, pipe, prompts):
    passes = unet_only(pipe, prompts)
    unet_s: list[float] = []

    def time_unet_passes():
        # Interleaved: every timed pipeline round comes right after one timed round of the raw UNet
        # passes, so a busy (shared) machine slows both alike and the per-round ratios stay comparable.
        t0 = time.perf_counter()
        passes()
        unet_s.append(time.perf_counter() - t0)

    images = benchmark.pedantic(pipe, args=(prompts, list(range(BATCH))), setup=time_unet_passes,
                                kwargs={"num_inference_steps": STEPS, "guidance_scale": GUIDANCE},
                                rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert images.shape[0] == BATCH
    pipeline_s = list(benchmark.stats.stats.data)
    unet_s = unet_s[-ROUNDS:]  # the first one preceded the warm-up round
    benchmark.extra_info["unet_passes_s"] = unet_s
    ratio = statistics.median(p / u for p, u in zip(pipeline_s, unet_s))
    with capsys.disabled():
        print(f"\ngenerate benchmark ({BATCH} images, {STEPS} steps, guidance {GUIDANCE}, {torch.get_num_threads()} torch "
              f"threads, UNet {sum(p.numel() for p in pipe.unet.parameters()):,} params): pipeline "
              f"{min(pipeline_s) / BATCH * 1000:.1f} ms/image, raw UNet passes {min(unet_s) / BATCH * 1000:.1f} ms/image "
              f"(best of {ROUNDS}); ratio {ratio:.3f} (median of the paired rounds; best/best "
              f"{min(pipeline_s) / min(unet_s):.3f}); target ≤ 1.2")
    assert ratio <= 1.2
