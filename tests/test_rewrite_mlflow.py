"""The rewrite stage and MLflow 3 through the real client on a temporary store: the instructions in the
Prompt Registry (one version per distinct text, loadable by alias), and LLM requests as traces (one per
uncached request, none for cache hits, none into a store the reports may not go to)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import mlflow.tracking.fluent
import pandas as pd
import pytest
from mlflow import MlflowClient
from rewrite_server import FakeLLM

from pairaug.data.schema import empty_labels, pairs_frame
from pairaug.errors import ParamError
from pairaug.rewrite.config import OpenAIConfig, PromptsConfig, RewriteConfig
from pairaug.rewrite.prompts import DEFAULT_PROMPTS, prompt_sha
from pairaug.rewrite.registry import RegistryTarget, prompt_name
from pairaug.rewrite.run import run_rewrite
from pairaug.rewrite.traces import store_is_private


@pytest.fixture(autouse=True)
def scoped_mlflow(monkeypatch):
    """The stage points MLflow's fluent API at its store and experiment; in this process, only for a test."""
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "unset")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID")  # restored to unset afterwards, whatever the stage set
    # mlflow.set_tracking_uri also sets the variable: restored afterwards too, so no later test (or the
    # processes it starts) talks to this test's store or server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unset")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", None)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "unset")  # mlflow.set_registry_uri sets it as well
    monkeypatch.delenv("MLFLOW_REGISTRY_URI")
    monkeypatch.setattr(mlflow.tracking._model_registry.utils, "_registry_uri", None)
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "true")


def report(i: int) -> str:
    return (f"FINDINGS: Patient number {i} has a moderate right pleural effusion. Heart size is normal. "
            "IMPRESSION: Right pleural effusion.")


def make_pairs(tmp: Path, reports: list[str]) -> Path:
    rows = [{"pair_id": f"p{i:03d}", "patient_id": f"pt{i:03d}", "study_id": f"s{i:03d}", "split": "train",
             "image": f"images/{i}.png", "report": r, "view": "PA", **empty_labels(), "label_source": "labeler"}
            for i, r in enumerate(reports)]
    path = tmp / "pairs.parquet"
    pairs_frame(rows).to_parquet(path)
    return path


def store(tmp: Path) -> tuple[str, str, MlflowClient]:
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    exp_id = client.create_experiment("pairaug", artifact_location=(tmp / "mlartifacts").as_uri(),
                                      tags={"mlflow.experimentKind": "custom_model_development"})
    return uri, exp_id, client


def rules_cfg(prompts: dict | None = None, **over) -> RewriteConfig:
    cfg = RewriteConfig(**{"backend": "rules", "valid_reports": 0, "min_retention": 0.0, **over})
    cfg.prompts = PromptsConfig(**(prompts or {}))
    cfg.validate("rewrite")
    return cfg


def llm_cfg(tmp: Path, url: str, prompts: dict | None = None, **over) -> RewriteConfig:
    base = dict(backend="openai", tasks=["inter"], valid_reports=0, concurrency=3, timeout_s=2.0, max_retries=2,
                backoff_s=0.01, max_backoff_s=0.05, max_failed_fraction=1.0, cache_path=str(tmp / "cache.sqlite"))
    cfg = RewriteConfig(**{**base, **over})
    cfg.openai = OpenAIConfig(base_url=url, model="test-model")
    cfg.prompts = PromptsConfig(**(prompts or {}))
    cfg.validate("rewrite")
    return cfg


def versions(client: MlflowClient, task: str) -> list[str]:
    return sorted(v.template for v in client.search_prompt_versions(prompt_name(task)))


def rows(out: Path, task: str) -> pd.DataFrame:
    return pd.read_parquet(out / f"{task}.parquet")


def test_prompts_registered_once_per_text_and_loadable_by_alias(tmp_path):
    uri, exp_id, client = store(tmp_path)
    target = RegistryTarget(uri, exp_id)
    pairs, out = make_pairs(tmp_path, [report(i) for i in range(4)]), tmp_path / "rewritten"

    metrics = run_rewrite(rules_cfg(), 0, pairs, out, None, progress=False, registry=target)
    for task in ("inter", "intra", "paraphrase"):
        assert versions(client, task) == [DEFAULT_PROMPTS[task]]
        df = rows(out, task)
        assert set(df["prompt_uri"]) == {f"prompts:/pairaug-rewrite-{task}/1"}
        assert set(df["prompt_sha"]) == {prompt_sha(task, DEFAULT_PROMPTS[task])}
        assert metrics["prompts"][task] == {"sha": prompt_sha(task, DEFAULT_PROMPTS[task]),
                                            "uri": f"prompts:/pairaug-rewrite-{task}/1"}
    # The experiment's Prompts tab lists the three.
    listed = client.search_prompts(filter_string=f"experiment_id = '{exp_id}'")
    assert sorted(p.name for p in listed) == [prompt_name(t) for t in ("inter", "intra", "paraphrase")]
    first = (out / "inter.parquet").read_bytes()

    # The same text again: no new version, the same bytes.
    run_rewrite(rules_cfg(), 0, pairs, out, None, progress=False, registry=target)
    assert versions(client, "inter") == [DEFAULT_PROMPTS["inter"]]
    assert (out / "inter.parquet").read_bytes() == first

    # An edited text is a new version; going back to the old text reuses version 1.
    edited = "Rewrite this chest X-ray report so that its findings are partly reversed. At most 50 words."
    run_rewrite(rules_cfg(prompts={"inter": edited}), 0, pairs, out, None, progress=False, registry=target)
    assert versions(client, "inter") == sorted([DEFAULT_PROMPTS["inter"], edited])
    assert set(rows(out, "inter")["prompt_uri"]) == {"prompts:/pairaug-rewrite-inter/2"}
    assert versions(client, "intra") == [DEFAULT_PROMPTS["intra"]]  # the other tasks are untouched
    run_rewrite(rules_cfg(), 0, pairs, out, None, progress=False, registry=target)
    assert len(versions(client, "inter")) == 2 and (out / "inter.parquet").read_bytes() == first

    # A team moves an alias; params name the alias: the rows record the version it pointed at.
    mlflow.genai.set_prompt_alias(prompt_name("inter"), alias="production", version=2)
    cfg = rules_cfg(prompts={"inter": "prompts:/pairaug-rewrite-inter@production"})
    run_rewrite(cfg, 0, pairs, out, None, progress=False, registry=target)
    df = rows(out, "inter")
    assert set(df["prompt_sha"]) == {prompt_sha("inter", edited)}
    assert set(df["prompt_uri"]) == {"prompts:/pairaug-rewrite-inter/2"} and len(versions(client, "inter")) == 2

    # A URI that names nothing: one line naming the param, nothing written over.
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    cfg = rules_cfg(prompts={"intra": "prompts:/pairaug-rewrite-intra@nobody"})
    with pytest.raises(ParamError, match=r"rewrite\.prompts\.intra.*prompts:/pairaug-rewrite-intra@nobody"):
        run_rewrite(cfg, 0, pairs, out, None, progress=False, registry=target)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_tracking_off_works_as_before(tmp_path):
    pairs, out = make_pairs(tmp_path, [report(i) for i in range(3)]), tmp_path / "rewritten"
    metrics = run_rewrite(rules_cfg(), 0, pairs, out, None, progress=False, registry=None)
    df = rows(out, "inter")
    assert df["prompt_uri"].isna().all() and (df["status"] == "ok").all()
    assert metrics["prompts"]["inter"]["uri"] is None
    assert not (tmp_path / "mlflow.db").exists()
    with pytest.raises(ParamError, match=r"rewrite\.prompts\.inter: names a registered prompt"):
        run_rewrite(rules_cfg(prompts={"inter": "prompts:/pairaug-rewrite-inter/1"}), 0, pairs, out, None,
                    progress=False, registry=None)


def traces(exp_id: str) -> list:
    return mlflow.search_traces(locations=[exp_id], return_type="list", flush=True)


def test_llm_rewrite_makes_one_trace_per_uncached_request(tmp_path):
    uri, exp_id, client = store(tmp_path)
    target = RegistryTarget(uri, exp_id, trace=True)
    reports = [report(i) for i in range(5)]
    plan = {reports[1]: ["500"], reports[2]: ["400"]}  # one retried, one rejected for good
    pairs, out = make_pairs(tmp_path, [*reports, reports[0]]), tmp_path / "rewritten"  # p005 repeats p000
    with FakeLLM(plan=plan) as server:
        metrics = run_rewrite(llm_cfg(tmp_path, server.url), 0, pairs, out, None, progress=False, registry=target)
        assert metrics["requests"] == 6 and metrics["cache_hits"] == 0

        got = {t.info.tags["pair_id"]: t for t in traces(exp_id)}
        assert sorted(got) == ["p000", "p001", "p002", "p003", "p004"]  # one per request, the repeat asked once
        for t in got.values():
            root = t.data.spans[0]
            assert root.name == "rewrite inter" and root.parent_id is None
            a = root.attributes
            assert a["model"] == "test-model" and a["backend"] == "openai" and a["cache"] == "miss"
            assert a["prompt_uri"] == "prompts:/pairaug-rewrite-inter/1" == t.info.tags["prompt_uri"]
            assert a["prompt_sha"] == prompt_sha("inter", DEFAULT_PROMPTS["inter"])
            assert a["latency_ms"] >= 0 and t.info.execution_duration is not None
            assert '"pairaug-rewrite-inter"' in t.info.tags["mlflow.linkedPrompts"]  # linked to the version
            attempts = [s for s in t.data.spans if s.name == "chat.completions"]
            assert len(attempts) == a["requests"] == a["retries"] + 1
        assert got["p000"].info.tags["pair_id"] == "p000" and got["p000"].data.spans[0].attributes["pair_ids"] == [
            "p000", "p005"]
        ok = got["p001"]
        assert ok.info.state == "OK" and ok.data.spans[0].attributes["retries"] == 1
        assert ok.info.token_usage == {"input_tokens": 50, "output_tokens": 20, "total_tokens": 70}
        assert ok.data.spans[0].outputs["report_new"].startswith("FINDINGS:")
        bad = got["p002"]
        assert bad.info.state == "ERROR" and bad.info.tags["status"] == "failed"
        assert "HTTP 400" in bad.data.spans[0].attributes["reason"]
        # A search finds the call behind a row.
        (found,) = mlflow.search_traces(locations=[exp_id], filter_string="tags.pair_id = 'p003'", return_type="list")
        assert found.data.spans[0].inputs["report"] == reports[3]

        # All from the cache: no new trace.
        n = len(server.seen)
        metrics = run_rewrite(llm_cfg(tmp_path, server.url), 0, pairs, out, None, progress=False, registry=target)
        assert len(server.seen) == n and metrics["cache_hits"] == 5
        assert len(traces(exp_id)) == 5

        # tracking.trace_rewrites false: requests go out, no trace is written.
        cfg = llm_cfg(tmp_path, server.url, prompts={"inter": "Reverse some findings of this report."})
        run_rewrite(cfg, 0, pairs, out, None, progress=False, registry=RegistryTarget(uri, exp_id, trace=False))
        assert len(server.seen) > n and len(traces(exp_id)) == 5


@pytest.mark.parametrize(("uri", "private_hosts", "private"), [
    ("sqlite:////repo/mlflow.db", [], True),
    ("file:///repo/mlruns", [], True),
    ("/repo/mlruns", [], True),
    ("http://127.0.0.1:5000", [], True),
    ("http://localhost:5000", [], True),
    ("https://mlflow.hospital.internal", [], False),
    ("https://mlflow.hospital.internal", ["*.hospital.internal"], True),
    ("https://user:pw@10.1.2.3:5000", ["10.1.0.0/16"], True),
    ("postgresql://u:p@db.example.com/mlflow", [], False),
    ("postgresql+psycopg2://u:p@127.0.0.1/mlflow", [], True),
    ("databricks", [], False),
    ("databricks-uc", [], False),
])
def test_which_stores_may_hold_reports(uri, private_hosts, private):
    assert store_is_private(uri, private_hosts)[0] is private


# ------------------------------------------------------------------ a real tracking server, not private


def _outward_ip() -> str | None:
    """This machine's address on its network (not loopback): the server seen as another host."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, the kernel only picks the route
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


@pytest.fixture(scope="module")
def server_on_network(tmp_path_factory):
    ip = _outward_ip()
    if ip is None:
        pytest.skip("no non-loopback network address to reach a tracking server by")
    tmp = tmp_path_factory.mktemp("server")
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "0.0.0.0", "--port", str(port),
                             "--workers", "1", "--allowed-hosts", f"{ip}:{port},{ip}", "--backend-store-uri", f"sqlite:///{tmp / 'server.db'}",
                             "--artifacts-destination", str(tmp / "artifacts")],
                            cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://{ip}:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        yield ip, url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


@pytest.mark.slow
def test_no_trace_reaches_a_store_that_is_not_private(tmp_path, server_on_network, caplog):
    ip, url = server_on_network
    client = MlflowClient(url, url)
    exp_id = client.create_experiment("pairaug-traces")
    target = RegistryTarget(url, exp_id, trace=True)
    pairs, out = make_pairs(tmp_path, [report(i) for i in range(3)]), tmp_path / "rewritten"
    with FakeLLM() as server, caplog.at_level(logging.INFO, logger="pairaug.rewrite"):
        run_rewrite(llm_cfg(tmp_path, server.url), 0, pairs, out, None, progress=False, registry=target)
        assert len(server.seen) == 3
    said = [r.getMessage() for r in caplog.records if "not traced" in r.getMessage()]
    assert len(said) == 1 and ip in said[0] and "rewrite.private_hosts" in said[0]
    assert traces(exp_id) == []
    assert set(rows(out, "inter")["prompt_uri"]) == {"prompts:/pairaug-rewrite-inter/1"}  # prompts are no patient data

    # The same server listed as private: the requests are traced there.
    with FakeLLM() as server:
        cfg = llm_cfg(tmp_path, server.url, private_hosts=[ip], cache_path=str(tmp_path / "other.sqlite"))
        run_rewrite(cfg, 0, pairs, out, None, progress=False, registry=target)
    assert sorted(t.info.tags["pair_id"] for t in traces(exp_id)) == ["p000", "p001", "p002"]
