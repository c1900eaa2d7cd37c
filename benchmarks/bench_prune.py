"""Benchmark of `prune`'s scoring path (pytest-benchmark; run separately):

    pytest benchmarks/bench_prune.py            # prints the ratios measured in this run

On the same candidates — N real train pairs expanded into the four branches (inter, intra,
image_only, paraphrase: 4N candidates, 32 px PNGs, a scorer of the embedded default size) — it times:

- raw encode, per pair: the scorer's own batched `encode_images` + `encode_texts` over every image and
  text the pairs name (5N of each: an intra pair also names its real source image and report), i.e.
  what a scorer loop without de-duplication would encode;
- raw encode, distinct: the same calls over the distinct images and texts only (4N of each), the least
  any scoring could encode;
- scoring: `pairaug.prune.score_candidates` end to end (de-duplication, encoding, S_a / S1 / S2 / S3,
  thresholds, keep flags and reasons).

Acceptance: scoring throughput (candidates/s) ≥ 0.9 × the raw batched encode throughput on the same
pairs (per pair). The ratio against the distinct-items encode is printed too: the bookkeeping overhead.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from transformers import CLIPModel

from pairaug.models.clip import ClipArch, ImagePreprocessor, embedded_config
from pairaug.models.scorer import load_scorer
from pairaug.models.tokenizer import train_tokenizer
from pairaug.prune import PruneConfig, score_candidates

N_REAL = int(os.environ.get("BENCH_PRUNE_PAIRS", "500"))
SIZE = 32
RESULTS: dict[str, float] = {}
FINDINGS = ("moderate cardiomegaly", "small left pleural effusion", "mild pulmonary edema",
            "right lower lobe consolidation", "left basilar atelectasis", "no acute process")


def _report(i: int, tag: str) -> str:
    a, b = FINDINGS[i % 6], FINDINGS[(i // 6) % 6]
    return f"FINDINGS: Study {tag} {i}. There is {a}. There is {b}. No pneumothorax. IMPRESSION: {a.capitalize()}."


def _png(path: Path, rng: np.random.Generator) -> str:
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-prune")
    rng = np.random.default_rng(0)
    (root / "img").mkdir()
    real_img = [_png(root / "img" / f"real{i}.png", rng) for i in range(N_REAL)]
    real_txt = [_report(i, "real") for i in range(N_REAL)]
    rows = []
    for branch in ("inter", "intra", "image_only", "paraphrase"):
        for i in range(N_REAL):
            image = real_img[i] if branch == "paraphrase" else _png(root / "img" / f"{branch}{i}.png", rng)
            report = real_txt[i] if branch == "image_only" else _report(i, branch)
            rows.append({"pair_id": f"{branch}{i}", "branch": branch, "image_abs": image, "report": report,
                         "real_image": real_img[i], "source_report": real_txt[i]})
    cands = pd.DataFrame(rows)
    # A scorer of the embedded default size (params.yaml scorer.arch), saved and loaded the real way.
    torch.manual_seed(0)
    arch = ClipArch()
    tokenizer = train_tokenizer(real_txt + cands["report"].tolist(), 1000, arch.max_positions)
    CLIPModel(embedded_config(arch, len(tokenizer), SIZE)).save_pretrained(root / "scorer")
    tokenizer.save_pretrained(root / "scorer")
    ImagePreprocessor(SIZE, 1, (0.4,), (0.25,)).save(root / "scorer")
    scorer = load_scorer(root / "scorer", batch_size=512)
    torch.set_num_threads(torch.get_num_threads())
    intra = cands["branch"] == "intra"
    per_pair = (cands["image_abs"].tolist() + cands.loc[intra, "real_image"].tolist(),
                cands["report"].tolist() + cands.loc[intra, "source_report"].tolist())
    distinct = (sorted(set(per_pair[0])), sorted(set(per_pair[1])))
    return cands, scorer, per_pair, distinct


def _raw(scorer, images, texts):
    return scorer.encode_images(images), scorer.encode_texts(texts)


def test_raw_encode_per_pair(benchmark, bench):
    cands, scorer, (images, texts), _ = bench
    _raw(scorer, images[:64], texts[:64])  # warm-up (thread pools, allocator)
    benchmark.pedantic(_raw, args=(scorer, images, texts), rounds=3, iterations=1)
    RESULTS["raw per pair"] = len(cands) / benchmark.stats.stats.min


def test_raw_encode_distinct(benchmark, bench):
    cands, scorer, _, (images, texts) = bench
    benchmark.pedantic(_raw, args=(scorer, images, texts), rounds=3, iterations=1)
    RESULTS["raw distinct"] = len(cands) / benchmark.stats.stats.min


def test_scoring(benchmark, bench):
    cands, scorer, _, _ = bench
    cfg = PruneConfig(batch_size=512)
    scored = benchmark.pedantic(score_candidates, args=(cands, scorer, cfg, 0.3), kwargs={"progress": False},
                                rounds=3, iterations=1)
    assert scored["kept"].dtype == bool and len(scored) == len(cands)
    RESULTS["scoring"] = len(cands) / benchmark.stats.stats.min


def test_report(capsys):
    if len(RESULTS) < 3:
        pytest.skip("run the whole file to get the ratios")
    per_pair = RESULTS["scoring"] / RESULTS["raw per pair"]
    distinct = RESULTS["scoring"] / RESULTS["raw distinct"]
    with capsys.disabled():
        print(f"\nprune benchmark: {4 * N_REAL} candidates ({N_REAL} real train pairs × 4 branches), "
              f"{torch.get_num_threads()} torch threads")
        print(f"  raw batched encode, per pair (5N images + 5N texts): {RESULTS['raw per pair']:,.0f} candidates/s")
        print(f"  raw batched encode, distinct (4N images + 4N texts): {RESULTS['raw distinct']:,.0f} candidates/s")
        print(f"  score_candidates (dedup + encode + scores + rules):  {RESULTS['scoring']:,.0f} candidates/s")
        print(f"  scoring / raw per pair = {per_pair:.2f}× (target ≥ 0.9×); scoring / raw distinct = {distinct:.2f}×")
    assert per_pair >= 0.9
