"""Benchmarks of the `rewrite` stage's LLM path (pytest-benchmark; run separately):

    pytest benchmarks/bench_rewrite.py            # prints the ratios measured in this run

- throughput against a local OpenAI-compatible server (tests/rewrite_server.py, in its own process so
  it does not share the GIL with the client) that takes 50 ms per request: concurrency 1 vs 16, the
  whole stage function end to end through the real openai SDK (acceptance: 16 is ≥ 8× faster);
- the cache-hit path: a rerun of 20,000 reports against a cache holding 220,000 answers, end to end
  (read the manifest, keys, SQLite lookups, memoised labels, write the Parquet) (acceptance: ≥ 5,000
  reports/s).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pairaug.data.schema import empty_labels, pairs_frame
from pairaug.rewrite.cache import CachedAnswer, ResponseCache, cache_key
from pairaug.rewrite.config import OpenAIConfig, RewriteConfig
from pairaug.rewrite.prompts import get_prompt
from pairaug.rewrite.run import run_rewrite

TESTS = Path(__file__).resolve().parents[1] / "tests"
LATENCY_S = 0.05
N_LATENCY = 96
N_HITS = 20_000
N_CACHE = 220_000
RESULTS: dict[str, float] = {}


def reports(n: int, tag: str) -> list[str]:
    sides = ("left", "right")
    return [f"FINDINGS: Study {tag}-{i}. Moderate {sides[i % 2]} pleural effusion. Heart size is normal. "
            f"No pneumothorax. IMPRESSION: {sides[i % 2].capitalize()} pleural effusion." for i in range(n)]


def write_pairs(path: Path, texts: list[str]) -> Path:
    rows = [{"pair_id": f"p{i:06d}", "patient_id": f"pt{i:06d}", "study_id": f"s{i:06d}", "split": "train",
             "image": f"images/{i}.png", "report": t, "view": "PA", **empty_labels(), "label_source": "labeler"}
            for i, t in enumerate(texts)]
    pairs_frame(rows).to_parquet(path)
    return path


def config(url: str, cache: Path, concurrency: int) -> RewriteConfig:
    cfg = RewriteConfig(backend="openai", tasks=["inter"], concurrency=concurrency, timeout_s=30,
                        max_failed_fraction=0.0, cache_path=str(cache))
    cfg.openai = OpenAIConfig(base_url=url, model="bench-model")
    cfg.validate("rewrite")
    return cfg


@pytest.fixture(scope="module")
def server_url():
    proc = subprocess.Popen([sys.executable, str(TESTS / "rewrite_server.py"), "--latency", str(LATENCY_S)],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait()


@pytest.mark.parametrize("concurrency", [1, 16])
def test_llm_throughput(benchmark, server_url, tmp_path, concurrency):
    pairs = write_pairs(tmp_path / "pairs.parquet", reports(N_LATENCY, "lat"))

    def fresh():  # an empty cache per round: every report is a real request
        return (config(server_url, tmp_path / f"cache-{uuid.uuid4().hex}.sqlite", concurrency),), {}

    def go(cfg):
        metrics = run_rewrite(cfg, 0, pairs, tmp_path / "out", None, progress=False)
        assert metrics["requests"] == N_LATENCY and metrics["ok"] == N_LATENCY

    benchmark.pedantic(go, setup=fresh, rounds=1 if concurrency == 1 else 3, iterations=1)
    RESULTS[f"concurrency {concurrency} (s)"] = benchmark.stats.stats.min


def test_cache_hit_path(benchmark, tmp_path):
    texts = reports(N_HITS, "hit")
    pairs = write_pairs(tmp_path / "pairs.parquet", texts)
    cfg = config("http://127.0.0.1:9/v1", tmp_path / "cache.sqlite", 16)  # nothing listens: every answer is cached
    prompt = get_prompt("inter")
    sampling = {"temperature": 0.5, "max_tokens": 300, "top_p": 1.0, "n": 1}
    answer = "FINDINGS: No pleural effusion. Heart size is normal. IMPRESSION: No acute cardiopulmonary process."
    with ResponseCache(cfg.cache_path) as cache:
        filler = [(f"other-{i}", CachedAnswer("ok", answer, None, 50, 20)) for i in range(N_CACHE - N_HITS)]
        cache.put_many(filler, backend="openai", model="bench-model", prompt_sha=prompt.sha)
        mine = [(cache_key("openai", "bench-model", "inter", prompt.sha, sampling, t),
                 CachedAnswer("ok", answer.replace("No pleural", f"Case {i}. No pleural"), None, 50, 20))
                for i, t in enumerate(texts)]
        cache.put_many(mine, backend="openai", model="bench-model", prompt_sha=prompt.sha)
        assert len(cache) == N_CACHE
    run_rewrite(cfg, 0, pairs, tmp_path / "out", None, progress=False)  # first rerun memoises the labels

    def go():
        metrics = run_rewrite(cfg, 0, pairs, tmp_path / "out", None, progress=False)
        assert metrics["cache_hits"] == N_HITS and metrics["requests"] == 0

    benchmark.pedantic(go, rounds=3, iterations=1)
    RESULTS["cache hits (reports/s)"] = N_HITS / benchmark.stats.stats.min


def test_report(capsys):
    if len(RESULTS) < 3:
        pytest.skip("run the whole file to get the ratios")
    speedup = RESULTS["concurrency 1 (s)"] / RESULTS["concurrency 16 (s)"]
    rate = RESULTS["cache hits (reports/s)"]
    with capsys.disabled():
        print(f"\nrewrite benchmark: {N_LATENCY} reports at {LATENCY_S * 1000:.0f} ms/request: "
              f"concurrency 1 {RESULTS['concurrency 1 (s)']:.2f} s, concurrency 16 {RESULTS['concurrency 16 (s)']:.2f} s "
              f"→ {speedup:.1f}× faster (target ≥ 8×)")
        print(f"rewrite benchmark: cache-hit path {rate:,.0f} reports/s over {N_HITS:,} reports with "
              f"{N_CACHE:,} cached answers (target ≥ 5,000/s)")
    assert speedup >= 8
    assert rate >= 5000
