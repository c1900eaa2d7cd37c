"""The `rewrite` DVC stage: offline with `rules`, reruns on its own params only, keys never written."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, run
from rewrite_server import FakeLLM

from pairaug.data.schema import LABELS
from pairaug.hashing import file_digest

SECRET = f"sk-stage-{uuid.uuid4().hex}"  # made at run time: the test files hold no copy of it


def set_params(repo: Path, **rewrite) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["rewrite"] = {**params.get("rewrite", {}), **rewrite}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def outputs_md5(repo: Path) -> dict[str, str]:
    return {p.name: file_digest(p, "md5") for p in sorted((repo / "data" / "rewritten").glob("*.parquet"))}


@pytest.mark.slow
def test_dvc_repro_rewrite_offline_and_params_scope(fresh_repo):
    run(["dvc", "repro", "rewrite"], fresh_repo)
    metrics = json.loads((fresh_repo / "metrics" / "rewrite.json").read_text())
    assert metrics["backend"] == "rules" and metrics["failures"] == 0 and metrics["ok"] > 0
    assert metrics["tasks"]["inter"]["labels"]["changed_share"] >= 0.95
    assert metrics["tasks"]["paraphrase"]["labels"]["kept_share"] == 1.0
    train = pd.read_parquet(fresh_repo / "data" / "prepared" / "pairs.parquet").query("split == 'train'")
    for task in ("inter", "intra", "paraphrase"):
        df = pd.read_parquet(fresh_repo / "data" / "rewritten" / f"{task}.parquet")
        assert df["source_pair_id"].tolist() == train["pair_id"].tolist()
        assert set(df["task"]) == {task} and set(LABELS) <= set(df.columns)
    first = outputs_md5(fresh_repo)

    # Only rewrite.* changed: rewrite reruns, prepare does not.
    set_params(fresh_repo, min_words=9)
    status = json.loads(run(["dvc", "status", "--json"], fresh_repo).stdout)
    assert "rewrite" in status and "prepare" not in status
    out = run(["dvc", "repro", "rewrite"], fresh_repo).stdout
    assert "Running stage 'rewrite'" in out and "Running stage 'prepare'" not in out

    # Same params → same bytes.
    set_params(fresh_repo, min_words=8)
    run(["dvc", "repro", "-f", "-s", "rewrite"], fresh_repo)
    assert outputs_md5(fresh_repo) == first


@pytest.mark.slow
def test_openai_stage_uses_the_cache_and_never_writes_the_key(fresh_repo):
    env = {"OPENAI_API_KEY": SECRET, "OPENAI_LOG": "debug"}  # SDK debug logging on: it must not print the key
    with FakeLLM() as server:
        set_params(fresh_repo, backend="openai", tasks=["inter", "paraphrase"], openai={
            "base_url": server.url, "model": "local-model", "api_key_env": "OPENAI_API_KEY"}, concurrency=4)
        first = run(["dvc", "repro", "rewrite"], fresh_repo, env=env)
        assert server.seen and {s.auth for s in server.seen} == {f"Bearer {SECRET}"}  # the key was used
        assert "Sending HTTP Request" in first.stdout + first.stderr  # the SDK's debug log was on
        n = len(server.seen)
        second = run(["dvc", "repro", "-f", "-s", "rewrite"], fresh_repo, env=env)
        assert len(server.seen) == n  # a forced rerun is served from the cache
        metrics = json.loads((fresh_repo / "metrics" / "rewrite.json").read_text())
        assert metrics["requests"] == 0 and metrics["cache_hits"] > 0
    assert (fresh_repo / ".cache" / "rewrite.sqlite").exists()

    # Nowhere on disk (dvc.lock, params, cache incl. WAL, outputs, metrics, DVC's cache) nor in any log.
    secret = SECRET.encode()
    for path in fresh_repo.rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path
    for proc in (first, second):
        assert SECRET not in proc.stdout + proc.stderr


def test_cli_preview(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")  # the preview needs params only
    set_params(tmp_path, backend="rules")
    out = run(["pairaug", "rewrite", "--task", "paraphrase",
               "FINDINGS: Moderate left pleural effusion. No pneumothorax. IMPRESSION: Left pleural effusion."],
              tmp_path).stdout
    assert "paraphrase · rules · rules-v2" in out and "labels: unchanged" in out
    data = json.loads(run(["pairaug", "rewrite", "--task", "inter", "--json", "Moderate cardiomegaly. No edema."],
                          tmp_path).stdout)
    assert data["status"] == "ok" and data["labels"] != data["source_labels"]
    refused = run(["pairaug", "rewrite", "--backend", "openai", "No pleural effusion."], tmp_path, check=False)
    assert refused.returncode == 2 and "refusing to send patient reports to api.openai.com" in refused.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "params.yaml"]  # a preview writes nothing (no cache for rules)
