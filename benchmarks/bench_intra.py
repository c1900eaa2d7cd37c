"""Benchmark of IntraAug generation against InterAug generation (pytest-benchmark; run separately, after
`dvc repro fit-generator rewrite`):

    pytest benchmarks/bench_intra.py                      # prints the ratios measured in this run
    BENCH_THREADS=1 pytest benchmarks/bench_intra.py      # pin torch's threads (a busy machine)

Times the two stages' chunk-makers on one chunk of real inputs (data/prepared, data/rewritten/intra.parquet)
with the generator in models/generator, at `intra.steps` and `intra.guidance` for both, and the same UNet
batch: B = `intra.batch_size` pairs make 4B rows per step, as 2B inter images do (2 x 2B rows):
- inter: `make_inter_chunk` on 2B reports (one image each from fresh noise);
- intra, init noise: `make_intra_chunk` on B pairs (y and y' from one latent under attention control,
  both branches decoded) — acceptance: per-pair cost ≤ 2.3x inter's per-image cost;
- intra, init inversion: the same plus the DDIM inversion of the real films (guidance 1, `inversion_refine`
  refinements): reported, with no target (the inversion is an extra pass the paper's method does not have);
- intra, init noise on 2B pairs (the same chunk size as inter, so twice its UNet rows): reported, no target.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch
import yaml

from pairaug.generate.inter import SamplingConfig, make_inter_chunk, plan
from pairaug.generate.intra import IntraConfig, make_intra_chunk, real_sources
from pairaug.generate.run import read_rewritten
from pairaug.models.checkpoints import resolve
from pairaug.models.generator import load_generator
from pairaug.params import section

REPO = Path(__file__).resolve().parents[1]
CFG = section(IntraConfig, yaml.safe_load((REPO / "params.yaml").read_text()), "intra")
ROUNDS = 3
TARGET = 2.3
RESULTS: dict[str, float] = {}

if os.environ.get("BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["BENCH_THREADS"]))


@pytest.fixture(scope="module")
def inputs():
    generator = REPO / "models" / "generator"
    prepared = REPO / "data" / "prepared" / "pairs.parquet"
    rewritten = REPO / "data" / "rewritten" / "intra.parquet"
    for needed in (generator, prepared, rewritten):
        if not needed.exists():
            pytest.skip(f"{needed.relative_to(REPO)} not found: run `dvc repro fit-generator rewrite` first")
    path, _ = resolve(generator)
    pipe = load_generator(path)
    edits = read_rewritten(rewritten)
    items = plan("intra", edits, 0, "bench", CFG)
    if len(items) < 2 * CFG.batch_size:
        pytest.skip(f"fewer than {2 * CFG.batch_size} intra reports")
    sources = real_sources(prepared, edits["source_pair_id"], rewritten)
    size = int(pipe.unet.config.sample_size * pipe.vae_scale)
    return pipe, items.iloc[:2 * CFG.batch_size].reset_index(drop=True), sources, size


def bench(benchmark, make, chunk, name: str) -> None:
    rows, files = benchmark.pedantic(make, args=(chunk,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert len(rows) == len(chunk)
    RESULTS[name] = benchmark.stats.stats.min / len(chunk)


def test_inter(benchmark, inputs):
    pipe, items, _, size = inputs
    cfg = SamplingConfig(steps=CFG.steps, guidance=CFG.guidance, resolution=CFG.resolution,
                         batch_size=2 * CFG.batch_size)
    bench(benchmark, make_inter_chunk(pipe, "inter", cfg, size, "bench"), items, "inter")


@pytest.mark.parametrize(("init", "pairs"), [("noise", 1), ("inversion", 1), ("noise", 2)])
def test_intra(benchmark, inputs, init, pairs):
    pipe, items, sources, size = inputs
    cfg = dataclasses.replace(CFG, init=init, batch_size=pairs * CFG.batch_size)
    bench(benchmark, make_intra_chunk(pipe, cfg, size, "bench", sources), items.iloc[:cfg.batch_size],
          f"intra_{init}_{cfg.batch_size}")


def test_report(capsys, inputs):
    b = CFG.batch_size
    if len(RESULTS) < 4:
        pytest.skip("run the whole file to get the ratios")
    pipe = inputs[0]
    ratio = {k: RESULTS[k] / RESULTS["inter"] for k in RESULTS}
    with capsys.disabled():
        print(f"\nintra benchmark ({CFG.steps} steps, guidance {CFG.guidance}, {torch.get_num_threads()} torch "
              f"threads, UNet {sum(p.numel() for p in pipe.unet.parameters()):,} params):\n"
              f"  inter, {2 * b} images/chunk: {RESULTS['inter'] * 1000:.1f} ms/image\n"
              f"  intra noise, {b} pairs/chunk (same UNet rows): {RESULTS[f'intra_noise_{b}'] * 1000:.1f} ms/pair "
              f"→ ratio {ratio[f'intra_noise_{b}']:.2f} (target ≤ {TARGET})\n"
              f"  intra inversion (refine {CFG.inversion_refine}), {b} pairs/chunk: "
              f"{RESULTS[f'intra_inversion_{b}'] * 1000:.1f} ms/pair → ratio {ratio[f'intra_inversion_{b}']:.2f} "
              f"(no target)\n"
              f"  intra noise, {2 * b} pairs/chunk (same chunk size, twice the rows): "
              f"{RESULTS[f'intra_noise_{2 * b}'] * 1000:.1f} ms/pair → ratio {ratio[f'intra_noise_{2 * b}']:.2f} "
              f"(no target)")
    assert ratio[f"intra_noise_{b}"] <= TARGET
