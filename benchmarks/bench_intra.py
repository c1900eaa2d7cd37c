"""Benchmark of IntraAug generation against InterAug generation (pytest-benchmark; run separately, after
`dvc repro fit-generator rewrite`):

    pytest benchmarks/bench_intra.py                      # prints the ratios measured in this run
    BENCH_THREADS=1 pytest benchmarks/bench_intra.py      # pin torch's threads (a busy machine)

Times the two stages' chunk-makers on one chunk of real inputs (data/prepared, data/rewritten/intra.parquet)
with the generator in models/generator, at `intra.steps` and the edit's guidance for both (intra-sweep's
choice in metrics/intra_sweep.json where it ran), and the same UNet batch: B = `intra.batch_size` pairs
make 4B rows per step, as 2B inter images do (2 x 2B rows):
- inter: `make_inter_chunk` on 2B reports (one image each from fresh noise);
- intra, init noise: `make_intra_chunk` on B pairs (y and y' from one latent under attention control,
  both branches decoded) — acceptance: per-pair cost ≤ 2.3x inter's per-image cost;
- intra, init inversion, per candidate, for each `intra.inversion` method: B candidates (`intra.candidates`
  per report, sharing their film's inversion) — acceptance for the configured method: ≤ 4x an inter image;
- intra, init noise on 2B pairs (the same chunk size as inter, so twice its UNet rows): reported, no target.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch
import yaml

from pairaug.generate.common import plan, read_rewritten
from pairaug.generate.config import INVERSIONS, IntraConfig, SamplingConfig
from pairaug.generate.inter import make_inter_chunk
from pairaug.generate.intra import make_intra_chunk, plan_candidates, real_sources
from pairaug.generate.intra_sweep import chosen_setting, sweep_settings
from pairaug.models.checkpoints import resolve
from pairaug.models.generator import load_generator
from pairaug.params import section

REPO = Path(__file__).resolve().parents[1]
_CFG = section(IntraConfig, yaml.safe_load((REPO / "params.yaml").read_text()), "intra")
_SWEEP = REPO / "metrics" / "intra_sweep.json"
CFG = _CFG.resolved(chosen_setting(_SWEEP) if _SWEEP.exists() else sweep_settings(_CFG)[-1])
ROUNDS = 3
TARGET = 2.3
CANDIDATE_TARGET = 4.0
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
    items = plan("intra", edits, 0, "bench", CFG).assign(candidate=0)
    if len(items) < 2 * CFG.batch_size:
        pytest.skip(f"fewer than {2 * CFG.batch_size} intra reports")
    sources = real_sources(prepared, edits["source_pair_id"], rewritten)
    size = int(pipe.unet.config.sample_size * pipe.vae_scale)
    candidates = plan_candidates(edits, 0, "bench", CFG).iloc[:CFG.batch_size].reset_index(drop=True)
    return pipe, items.iloc[:2 * CFG.batch_size].reset_index(drop=True), sources, size, candidates


def bench(benchmark, make, chunk, name: str) -> None:
    rows, files = benchmark.pedantic(make, args=(chunk,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert len(rows) == len(chunk)
    RESULTS[name] = benchmark.stats.stats.min / len(chunk)


def test_inter(benchmark, inputs):
    pipe, items, _, size, _ = inputs
    cfg = SamplingConfig(steps=CFG.steps, guidance=CFG.guidance, resolution=CFG.resolution,
                         batch_size=2 * CFG.batch_size)
    bench(benchmark, make_inter_chunk(pipe, "inter", cfg, size, "bench"), items, "inter")


@pytest.mark.parametrize("pairs", [1, 2])
def test_intra_noise(benchmark, inputs, pairs):
    pipe, items, sources, size, _ = inputs
    cfg = dataclasses.replace(CFG, init="noise", batch_size=pairs * CFG.batch_size)
    bench(benchmark, make_intra_chunk(pipe, cfg, size, "bench", sources), items.iloc[:cfg.batch_size],
          f"intra_noise_{cfg.batch_size}")


@pytest.mark.parametrize("method", INVERSIONS)
def test_intra_candidates(benchmark, inputs, method):
    pipe, _, sources, size, candidates = inputs
    cfg = dataclasses.replace(CFG, init="inversion", inversion=method)
    bench(benchmark, make_intra_chunk(pipe, cfg, size, "bench", sources), candidates, f"candidate_{method}")


def test_report(capsys, inputs):
    b = CFG.batch_size
    if len(RESULTS) < 3 + len(INVERSIONS):
        pytest.skip("run the whole file to get the ratios")
    pipe = inputs[0]
    ratio = {k: RESULTS[k] / RESULTS["inter"] for k in RESULTS}
    with capsys.disabled():
        print(f"\nintra benchmark ({CFG.steps} steps, guidance {CFG.guidance}, {torch.get_num_threads()} torch "
              f"threads, UNet {sum(p.numel() for p in pipe.unet.parameters()):,} params):\n"
              f"  inter, {2 * b} images/chunk: {RESULTS['inter'] * 1000:.1f} ms/image\n"
              f"  intra noise, {b} pairs/chunk (same UNet rows): {RESULTS[f'intra_noise_{b}'] * 1000:.1f} ms/pair "
              f"→ ratio {ratio[f'intra_noise_{b}']:.2f} (target ≤ {TARGET})\n"
              f"  intra noise, {2 * b} pairs/chunk (same chunk size, twice the rows): "
              f"{RESULTS[f'intra_noise_{2 * b}'] * 1000:.1f} ms/pair → ratio {ratio[f'intra_noise_{2 * b}']:.2f} "
              f"(no target)")
        for method in INVERSIONS:
            mark = f"(target ≤ {CANDIDATE_TARGET}, the configured method)" if method == CFG.inversion else "(no target)"
            print(f"  intra candidate, inversion {method} ({CFG.candidates} candidates a report share it, refine "
                  f"{CFG.inversion_refine}): {RESULTS[f'candidate_{method}'] * 1000:.1f} ms/candidate → ratio "
                  f"{ratio[f'candidate_{method}']:.2f} {mark}")
    assert ratio[f"intra_noise_{b}"] <= TARGET
    assert ratio[f"candidate_{CFG.inversion}"] <= CANDIDATE_TARGET
