"""The `openai` / `azure` backends through the real openai SDK against a local OpenAI-compatible server."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from rewrite_server import FakeLLM, default_answer

from pairaug.data.schema import LABELS, empty_labels, pairs_frame
from pairaug.errors import PairaugError
from pairaug.rewrite.config import AzureConfig, OpenAIConfig, RewriteConfig
from pairaug.rewrite.guard import PrivacyError
from pairaug.rewrite.llm import ChatBackend, FatalBackendError
from pairaug.rewrite.preview import preview
from pairaug.rewrite.prompts import DEFAULT_PROMPTS, prompt_sha
from pairaug.rewrite.run import COLUMNS, run_rewrite

SECRET = "sk-test-PAIRAUG-do-not-leak-7f3a9c"


def make_pairs(tmp: Path, reports: list[str]) -> Path:
    rows = []
    for i, report in enumerate(reports):
        rows.append({"pair_id": f"p{i:03d}", "patient_id": f"pt{i:03d}", "study_id": f"s{i:03d}", "split": "train",
                     "image": f"images/{i}.png", "report": report, "view": "PA", **empty_labels(),
                     "label_source": "labeler"})
    rows.append({"pair_id": "v000", "patient_id": "ptv", "study_id": "sv", "split": "valid", "image": "images/v.png",
                 "report": "FINDINGS: Valid split report, never sent anywhere. IMPRESSION: Normal.", "view": "PA",
                 **empty_labels(), "label_source": "labeler"})
    path = tmp / "pairs.parquet"
    pairs_frame(rows).to_parquet(path)
    return path


def report(i: int) -> str:
    return f"FINDINGS: Report number {i}. Moderate right pleural effusion. Heart size is normal. IMPRESSION: Effusion."


def llm_cfg(tmp: Path, url: str, *, azure: dict | None = None, **over) -> RewriteConfig:
    base = dict(backend="openai", tasks=["inter"], concurrency=4, timeout_s=0.5, max_retries=3, backoff_s=0.01,
                max_backoff_s=0.05, max_failed_fraction=1.0, cache_path=str(tmp / "cache.sqlite"))
    cfg = RewriteConfig(**{**base, **over})
    cfg.openai = OpenAIConfig(base_url=url, model="test-model")
    if azure:
        cfg.azure = AzureConfig(**azure)
    cfg.validate("rewrite")
    return cfg


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", SECRET)


def test_faults_end_rewritten_or_failed_once_then_cache_serves_all(tmp_path):
    reports = [report(i) for i in range(12)]
    plan = {
        reports[0]: ["429"],                       # rate limited with Retry-After: 1
        reports[1]: ["500", "500"],                # server errors, then fine
        reports[2]: ["timeout"],                   # slower than the client's 0.5 s timeout
        reports[3]: ["malformed"],                 # a body that is not JSON
        reports[4]: ["empty"],                     # no choices
        reports[5]: ["empty"] * 4,                 # never a usable answer: failed
        reports[6]: ["malformed"] * 4,             # never a usable answer: failed
        reports[7]: ["400"],                       # rejected: failed at once, not retried
        reports[8]: ["blank", "drop"],             # blank content, then a dropped connection
    }
    pairs = make_pairs(tmp_path, reports + [reports[9]])  # a duplicate report is asked once
    out, metrics_path = tmp_path / "rewritten", tmp_path / "rewrite.json"
    with FakeLLM(plan=plan) as server:
        cfg = llm_cfg(tmp_path, server.url)
        metrics = run_rewrite(cfg, 0, pairs, out, metrics_path, progress=False)
    df = pd.read_parquet(out / "inter.parquet")
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 13 and set(df["status"]) == {"ok", "failed"}
    failed = df[df["status"] == "failed"].set_index("source_pair_id")["reason"]
    assert sorted(failed.index) == ["p005", "p006", "p007"]
    assert "empty answer" in failed["p005"] and "after 4 attempts" in failed["p005"]
    assert "malformed response" in failed["p006"]
    assert "HTTP 400" in failed["p007"]
    assert len(server.requests_for(reports[7])) == 1  # a rejected request is not retried
    ok = df[df["status"] == "ok"]
    assert ok["report_new"].str.contains("pleural effusion").all()
    assert (ok["Pleural Effusion"] == 1).all() and (ok["prompt_tokens"] == 50).all()
    assert df["prompt_sha"].eq(prompt_sha("inter", DEFAULT_PROMPTS["inter"])).all()
    # Never paid twice: each report got at most one good answer, the duplicate none of its own.
    assert max(server.ok_counts.values()) == 1 and len(server.ok_counts) == 9
    # Retry-After honoured: the retry came at least 1 s after the 429.
    t429, t_retry = [s.at for s in server.requests_for(reports[0])]
    assert t_retry - t429 >= 0.95
    assert metrics["requests"] == len(server.seen)
    assert metrics["retries"] == len(server.seen) - 12  # 12 distinct reports sent
    assert metrics["failures"] == 3 and metrics["cache_hits"] == 0
    assert metrics["tasks"]["inter"]["deduplicated"] == 1
    assert metrics["tokens"] == 70 * 9
    assert metrics["estimated_cost_usd"] == pytest.approx((50 * 9 * 0.0005 + 20 * 9 * 0.0015) / 1000)
    assert json.loads(metrics_path.read_text())["failures"] == 3
    # The valid split is never sent.
    assert not any("Valid split" in s.report for s in server.seen)

    first = (out / "inter.parquet").read_bytes()
    with FakeLLM() as server2:
        cfg = llm_cfg(tmp_path, server2.url)
        metrics2 = run_rewrite(cfg, 0, pairs, out, metrics_path, progress=False)
    assert server2.seen == []  # entirely from the cache, failures included
    assert metrics2["requests"] == 0 and metrics2["cache_hits"] == 12
    assert (out / "inter.parquet").read_bytes() == first


def test_server_stopped_mid_run_rerun_completes_only_the_missing(tmp_path):
    reports = [report(i) for i in range(40)]
    pairs = make_pairs(tmp_path, reports)
    out = tmp_path / "rewritten"
    with FakeLLM(stop_after_ok=15, latency=0.01) as server:
        cfg = llm_cfg(tmp_path, server.url, max_failed_fraction=0.0, abort_after_failures=3, max_retries=1)
        with pytest.raises(PairaugError, match="rerun requests only the missing"):
            run_rewrite(cfg, 0, pairs, out, None, progress=False)
    df = pd.read_parquet(out / "inter.parquet")
    assert (df["status"] == "ok").sum() == 15
    assert df.loc[df["status"] == "failed", "reason"].str.contains("connection error|not attempted").all()
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 15  # transient failures not cached

    with FakeLLM() as server2:
        cfg = llm_cfg(tmp_path, server2.url, max_failed_fraction=0.0)
        metrics = run_rewrite(cfg, 0, pairs, out, None, progress=False)
    assert len(server2.seen) == 25 and metrics["cache_hits"] == 15 and metrics["ok"] == 40
    assert {s.report for s in server2.seen}.isdisjoint(server.ok_counts)
    assert (server.ok_counts + server2.ok_counts) == {r: 1 for r in reports}


def test_request_follows_the_paper_and_prompts_are_versioned(tmp_path):
    reports = [report(i) for i in range(2)] + ["Too short."]
    pairs = make_pairs(tmp_path, reports)
    with FakeLLM() as server:
        # valid_reports 0: only the train reports (the valid ones intra-sweep edits are one more request each)
        cfg = llm_cfg(tmp_path, server.url, tasks=["inter", "intra", "paraphrase"], min_words=5, valid_reports=0)
        metrics = run_rewrite(cfg, 0, pairs, tmp_path / "out", None, progress=False)
        assert {s.system for s in server.seen} == set(DEFAULT_PROMPTS.values())
        body = server.seen[0].body
        assert body["model"] == "test-model" and body["temperature"] == 0.5 and body["max_tokens"] == 300
        assert body["top_p"] == 1.0 and body["n"] == 1
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        assert server.seen[0].auth == f"Bearer {SECRET}"
        assert metrics["skipped_short"] == 3 and metrics["requests"] == 6
        skipped = pd.read_parquet(tmp_path / "out" / "paraphrase.parquet").set_index("source_pair_id").loc["p002"]
        assert skipped["status"] == "skipped_short" and "2 words" in skipped["reason"]

        # An edited prompt is a new version: new hash, new requests, the new text as system message.
        cfg = llm_cfg(tmp_path, server.url, min_words=5)
        cfg.prompts.inter = "Rewrite this chest X-ray report for a different patient."
        n = len(server.seen)
        run_rewrite(cfg, 0, pairs, tmp_path / "out", None, progress=False)
        assert len(server.seen) == n + 2 and server.seen[-1].system == cfg.prompts.inter
        df = pd.read_parquet(tmp_path / "out" / "inter.parquet")
        assert set(df["prompt_sha"]) == {prompt_sha("inter", cfg.prompts.inter)}


def test_long_answers_are_cut_at_a_sentence_and_counted(tmp_path):
    pairs = make_pairs(tmp_path, [report(0) + " LONG"])
    with FakeLLM() as server:
        metrics = run_rewrite(llm_cfg(tmp_path, server.url), 0, pairs, tmp_path / "out", None, progress=False)
    row = pd.read_parquet(tmp_path / "out" / "inter.parquet").iloc[0]
    assert row["truncated"] and len(row["report_new"].split()) <= 50 and row["report_new"].endswith("effusion.")
    assert metrics["truncated"] == 1


def test_privacy_guard_refuses_non_loopback_hosts(tmp_path):
    for url in ("https://api.openai.com/v1", "http://10.0.0.7:8000/v1", "http://llm.corp.example/v1"):
        cfg = llm_cfg(tmp_path, url)
        with pytest.raises(PrivacyError, match="allow_external") as e:
            ChatBackend(cfg)
        assert "refusing to send patient reports" in str(e.value)
    for url, private in (("http://10.0.0.7:8000/v1", ["10.0.0.0/8"]), ("http://llm.corp.example/v1", ["*.corp.example"]),
                         ("http://gpu-box:8000/v1", ["gpu-box"])):
        ChatBackend(llm_cfg(tmp_path, url, private_hosts=private)).close()
    for url in ("http://localhost:8000/v1", "http://127.0.0.2:1/v1", "http://[::1]:8000/v1"):
        ChatBackend(llm_cfg(tmp_path, url)).close()
    ChatBackend(llm_cfg(tmp_path, "https://api.openai.com/v1", allow_external=True)).close()
    azure = llm_cfg(tmp_path, "http://unused", backend="azure",
                    azure={"endpoint": "https://res.openai.azure.com", "deployment": "gpt35"})
    with pytest.raises(PrivacyError, match=r"res\.openai\.azure\.com"):
        ChatBackend(azure)
    # The stage refuses before reading a single answer; the preview does too.
    pairs = make_pairs(tmp_path, [report(0)])
    with pytest.raises(PrivacyError):
        run_rewrite(llm_cfg(tmp_path, "https://api.openai.com/v1"), 0, pairs, tmp_path / "out", None, progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(PrivacyError):
        preview(llm_cfg(tmp_path, "https://api.openai.com/v1"), 0, "inter", report(0))


def test_external_host_needs_a_key_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(PairaugError, match="environment variable OPENAI_API_KEY"):
        ChatBackend(llm_cfg(tmp_path, "https://api.openai.com/v1", allow_external=True))
    ChatBackend(llm_cfg(tmp_path, "http://127.0.0.1:9/v1")).close()  # a local server may run without one


def test_a_refused_key_stops_the_run_without_showing_it(tmp_path):
    class Refusing(FakeLLM):
        def _handle(self, h):
            self.seen.append(None)
            self._send(h, 401, {"error": {"message": f"Incorrect API key provided: {SECRET}"}})

    pairs = make_pairs(tmp_path, [report(i) for i in range(20)])
    with Refusing() as server, pytest.raises(FatalBackendError) as e:
        run_rewrite(llm_cfg(tmp_path, server.url, concurrency=1), 0, pairs, tmp_path / "out", None, progress=False)
    assert "HTTP 401" in str(e.value) and "OPENAI_API_KEY" in str(e.value) and SECRET not in str(e.value)
    assert len(server.seen) <= 3  # stopped at once, not 20 reports × retries


def test_azure_backend_through_the_sdk(tmp_path):
    pairs = make_pairs(tmp_path, [report(0), report(1)])
    with FakeLLM(plan={report(0): ["429"]}, retry_after="0") as server:
        cfg = llm_cfg(tmp_path, "http://unused", backend="azure",
                      azure={"endpoint": server.endpoint, "deployment": "gpt35"})
        metrics = run_rewrite(cfg, 0, pairs, tmp_path / "out", None, progress=False)
    assert metrics["ok"] == 2 and metrics["retries"] == 1
    assert {s.path for s in server.seen} == {"/openai/deployments/gpt35/chat/completions?api-version=2024-10-21"}
    assert {s.api_key for s in server.seen} == {SECRET}
    df = pd.read_parquet(tmp_path / "out" / "inter.parquet")
    assert set(df["backend"]) == {"azure"} and set(df["model"]) == {"gpt35"}


def test_preview_uses_the_configured_backend_and_cache(tmp_path):
    with FakeLLM() as server:
        cfg = llm_cfg(tmp_path, server.url)
        first = preview(cfg, 0, "intra", report(3))
        second = preview(cfg, 0, "intra", report(3))
    assert first["status"] == "ok" and not first["from_cache"] and second["from_cache"]
    assert len(server.seen) == 1 and first["report_new"] == second["report_new"]
    assert first["labels"]["Pleural Effusion"] == 1 and set(first["labels"]) == set(LABELS)


def test_logs_never_show_the_key(tmp_path, caplog):
    backend = ChatBackend(llm_cfg(tmp_path, "http://127.0.0.1:9/v1"))
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("openai").warning("sending with key %s", SECRET)
        logging.getLogger("httpx2").warning(f"Authorization: Bearer {SECRET}")
    backend.close()
    assert SECRET not in caplog.text and caplog.text.count("<redacted>") == 2


def test_star_localhost_names_are_not_loopback_unless_listed(tmp_path):
    # A resolver may send llm.localhost anywhere: only `localhost` and loopback IPs pass unlisted.
    with pytest.raises(PrivacyError, match="llm.localhost"):
        ChatBackend(llm_cfg(tmp_path, "http://llm.localhost:8000/v1"))
    ChatBackend(llm_cfg(tmp_path, "http://llm.localhost:8000/v1", private_hosts=["*.localhost"])).close()


def test_a_dead_server_is_named_by_host_and_port(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = llm_cfg(tmp_path, f"http://127.0.0.1:{port}/v1", max_retries=0)
    out = preview(cfg, 0, "inter", report(0))
    assert out["status"] == "failed" and f"cannot reach 127.0.0.1:{port}" in out["reason"]


def test_an_answer_that_repeats_the_source_report_is_no_rewrite(tmp_path):
    """A backend that echoes the report (case and spacing aside) gives no new pair: status `unchanged`,
    counted, never a candidate (the quality gate refuses a rewrite identical to its source)."""
    pairs = make_pairs(tmp_path, [report(0), report(1)])
    echo = lambda system, text: text.upper() if "number 0" in text else default_answer(system, text)  # noqa: E731
    with FakeLLM(answer=echo) as server:
        metrics = run_rewrite(llm_cfg(tmp_path, server.url), 0, pairs, tmp_path / "out", None, progress=False)
    rows = pd.read_parquet(tmp_path / "out" / "inter.parquet").set_index("source_pair_id")
    assert rows.at["p000", "status"] == "unchanged" and pd.isna(rows.at["p000", "report_new"])
    assert rows.at["p001", "status"] == "ok"
    assert metrics["unchanged"] == 1 and metrics["ok"] == 1
