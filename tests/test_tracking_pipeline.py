"""MLflow through the real pipeline: the tiny `dvc repro`, a `dvc exp run --temp`, a real `mlflow server`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import run
from mlflow import MlflowClient

from pairaug.hashing import file_digest
from pairaug.tracking.lineage import flatten, split_rows

pytestmark = pytest.mark.slow
GIT = ["git", "-c", "user.email=test@pairaug", "-c", "user.name=test"]


def built_copy(tiny_repo: Path, dest: Path, fresh_store: bool = False) -> Path:
    """A copy of the built tiny repository (outputs, DVC cache) with everything committed."""
    shutil.copytree(tiny_repo, dest, symlinks=True)
    if fresh_store:
        (dest / "mlflow.db").unlink(missing_ok=True)
        shutil.rmtree(dest / "mlartifacts", ignore_errors=True)
    run([*GIT, "add", "-A"], dest)
    run([*GIT, "commit", "-qm", "built", "--allow-empty"], dest)
    return dest


def client_for(root: Path) -> MlflowClient:
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return MlflowClient(uri, uri)


def expected_params(params: dict, run_params: dict[str, str]) -> dict[str, str]:
    """params.yaml's values at the keys a run logged (each logged key must exist in params.yaml)."""
    out = {}
    for key in run_params:
        value, parts = params, key.split(".")
        for i, part in enumerate(parts):
            if isinstance(value, dict) and part in value:
                value = value[part]
            else:  # a flattened list or mapping: compare at the deepest existing key
                raise AssertionError(f"logged param {key} is not in params.yaml (stopped at {'.'.join(parts[:i])})")
        out.update(flatten(value, key))
    return out


def lock_dep_md5(lock: dict, stage: str, path: str) -> str:
    return next(d["md5"] for d in lock["stages"][stage]["deps"] if d["path"] == path)


def test_every_mix_logs_one_complete_run(tiny_repo):
    params = yaml.safe_load((tiny_repo / "params.yaml").read_text())
    lock = yaml.safe_load((tiny_repo / "dvc.lock").read_text())
    client = client_for(tiny_repo)
    exp = client.get_experiment_by_name(params["tracking"]["experiment"])
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.tags["mix"] for r in runs) == sorted(params["pretrain"]["mixes"])
    for r in runs:
        mix = r.data.tags["mix"]
        assert r.data.tags["stage"] == f"pretrain@{mix}" and r.data.tags["evaluated"] == "true"
        assert r.data.tags["git_commit"] and r.data.tags["git_dirty"] in ("true", "false")
        assert r.data.params == expected_params(params, r.data.params)
        assert {"seed", "data.phantom.train_patients", f"pretrain.mixes.{mix}", "evaluate.probe_draws"} <= set(r.data.params)
        digests = {i.dataset.name: i.dataset.digest for i in r.inputs.dataset_inputs}
        assert digests["real_pairs"] == lock_dep_md5(lock, f"pretrain@{mix}", "data/prepared/pairs.parquet")
        if params["pretrain"]["mixes"][mix]:
            assert digests["synthetic_pairs"] == lock_dep_md5(lock, f"pretrain@{mix}", f"data/validated/mixes/{mix}.parquet")
            # ... and the review decisions prune chose those pairs with
            assert digests["review_decisions"] == lock_dep_md5(lock, "prune", "review/decisions.csv")
        else:
            assert "review_decisions" not in digests
        # the split the metrics were computed on, as an evaluation input (its rows' md5)
        (evaluation,) = [i for i in r.inputs.dataset_inputs if {t.key: t.value for t in i.tags}.get(
            "mlflow.data.context") == "evaluation"]
        assert evaluation.dataset.name == "test_split"
        assert evaluation.dataset.digest == split_rows(tiny_repo / "data/prepared/pairs.parquet", "test")[1]
        # the rewrite instructions its synthetic reports came from: hash and registry URI, linked to the run
        tasks = {"inter": ["inter"], "intra": ["intra"], "pairaug": ["inter", "intra"], "text_only": ["paraphrase"]}
        for task in tasks.get(mix, []):
            assert r.data.tags[f"rewrite.{task}.prompt_uri"] == f"prompts:/pairaug-rewrite-{task}/1"
            assert len(r.data.tags[f"rewrite.{task}.prompt_sha"]) == 12
            assert f'"pairaug-rewrite-{task}"' in r.data.tags["mlflow.linkedPrompts"]
        assert "zeroshot.mean_auc" in r.data.metrics and "linear_probe.100pct.mean_auc" in r.data.metrics
        curve = client.get_metric_history(r.info.run_id, "train_loss")
        assert len(curve) >= 2 and len({m.step for m in curve}) == len(curve)
        paths = {f.path for f in client.list_artifacts(r.info.run_id, "audit")} | \
                {f.path for f in client.list_artifacts(r.info.run_id, "roc")}
        assert {"audit/synthetic_pairs.parquet", "audit/lineage.json", "roc/zeroshot_roc.png"} <= paths
        # the run's datasheet, logged with every model (it describes the pairs this model trained on)
        sheet = {f.path for f in client.list_artifacts(r.info.run_id, "audit/datasheet")}
        assert sheet == {"audit/datasheet/datasheet.md", "audit/datasheet/datasheet.json"}, (mix, paths)
    versions = client.search_model_versions(f"name = '{params['tracking']['registered_model']}'")
    assert sorted(v.tags["mix"] for v in versions) == sorted(params["pretrain"]["mixes"])
    # the three rewrite instructions, registered once each
    for task in params["rewrite"]["tasks"]:
        assert len(client.search_prompt_versions(f"pairaug-rewrite-{task}")) == 1


def test_the_registered_model_loads_as_a_pyfunc_and_embeds_text(tiny_repo, tmp_path):
    """What a consumer of the registry does: load `models:/pairaug-vlp/<v>` with MLflow alone (the "models from
    code" file must have been logged) and embed reports; the model is the workspace's weights."""
    import json

    import numpy as np

    from pairaug.tracking.lineage import weights_sha256

    params = yaml.safe_load((tiny_repo / "params.yaml").read_text())
    name = params["tracking"]["registered_model"]
    (version,) = client_for(tiny_repo).search_model_versions(f"name = '{name}' and tags.mix = 'pairaug'")
    script = ("import json, sys, mlflow\n"
              "local = mlflow.artifacts.download_artifacts(artifact_uri=sys.argv[1], dst_path=sys.argv[2])\n"
              "model = mlflow.pyfunc.load_model(local)\n"
              "print(json.dumps({'dir': local, 'emb': model.predict(['no pleural effusion', 'large pleural effusion'])}))\n")
    out = run([sys.executable, "-c", script, f"models:/{name}/{version.version}", str(tmp_path / "model")], tmp_path,
              env={"MLFLOW_TRACKING_URI": f"sqlite:///{tiny_repo / 'mlflow.db'}", "TMPDIR": str(tmp_path)})
    result = json.loads(out.stdout.strip().splitlines()[-1])
    emb = np.asarray(result["emb"])
    assert emb.shape[0] == 2 and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(emb[0], emb[1])  # the two reports embed differently
    # The MLmodel file names where the pyfunc's "clip" artifact lies inside the model.
    flavor = yaml.safe_load((Path(result["dir"]) / "MLmodel").read_text())["flavors"]["python_function"]
    clip = Path(result["dir"]) / flavor["artifacts"]["clip"]["path"]
    seed_dir = tiny_repo / "models" / "vlp" / "pairaug" / f"seed-{version.tags['seed']}"
    assert weights_sha256(clip) == weights_sha256(seed_dir)


def test_temp_experiment_logs_into_the_repository_store(tiny_repo, tmp_path):
    repo = built_copy(tiny_repo, tmp_path / "repo", fresh_store=True)
    baseline = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    # Only evaluate@none reruns (its params changed); everything upstream is in the cache.
    proc = run(["dvc", "exp", "run", "--temp", "-S", "evaluate.probe_draws=2", "evaluate@none"], repo, timeout=900)
    assert "run not logged" not in proc.stdout + proc.stderr
    client = client_for(repo)  # the main workspace's store (DVC_ROOT), not the temporary one
    exp = client.get_experiment_by_name("pairaug")
    (r,) = client.search_runs([exp.experiment_id], filter_string="tags.mix = 'none'")
    assert r.data.params["evaluate.probe_draws"] == "2"
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["evaluate"]["probe_draws"] = 2  # the experiment's params.yaml
    assert r.data.params == expected_params(params, r.data.params)
    assert r.data.tags["dvc_exp_name"] and r.data.tags["dvc_baseline_rev"] == baseline
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    digests = {i.dataset.name: i.dataset.digest for i in r.inputs.dataset_inputs}
    assert digests["real_pairs"] == lock_dep_md5(lock, "pretrain@none", "data/prepared/pairs.parquet")
    assert digests["real_pairs"] == file_digest(repo / "data/prepared/pairs.parquet", "md5")
    assert "zeroshot.mean_auc" in r.data.metrics
    assert not list((repo / ".dvc" / "tmp" / "exps").glob("tmp*/mlflow.db"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_health(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"mlflow server exited: {proc.stdout.read() if proc.stdout else ''}"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"mlflow server at {url} did not answer /health within {timeout} s")


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                             "--artifacts-destination", str(tmp_path / "server-artifacts")],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        _wait_health(url, proc)
        yield url, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=30)


def test_stage_logs_to_a_tracking_server_and_survives_it_going_down(tiny_repo, tmp_path, mlflow_server):
    url, proc = mlflow_server
    repo = built_copy(tiny_repo, tmp_path / "repo")
    env = {"MLFLOW_TRACKING_URI": url}
    out = run([sys.executable, "stages/evaluate.py", "none"], repo, env=env)
    assert "run not logged" not in out.stdout + out.stderr
    client = MlflowClient(url, url)
    exp = client.get_experiment_by_name("pairaug")
    (r,) = client.search_runs([exp.experiment_id])
    assert r.data.tags["mix"] == "none" and "zeroshot.mean_auc" in r.data.metrics
    assert r.info.artifact_uri.startswith("mlflow-artifacts:")  # stored by the server, not on this side
    assert {f.path for f in client.list_artifacts(r.info.run_id, "audit")} >= {"audit/lineage.json"}
    assert [v.tags["mix"] for v in client.search_model_versions("name = 'pairaug-vlp'")] == ["none"]

    os.killpg(proc.pid, 9)
    proc.wait(timeout=30)
    before = (repo / "metrics/eval/none.json").read_bytes()
    (repo / "metrics/eval/none.json").unlink()
    down = run([sys.executable, "stages/evaluate.py", "none"], repo, env=env)
    assert down.returncode == 0
    assert "run not logged: evaluate@none" in down.stderr and "unreachable" in down.stderr
    assert (repo / "metrics/eval/none.json").read_bytes() == before  # the DVC output is written all the same


def test_a_control_mix_with_several_replicates_logs_each_replicates_own_pairs(tmp_path):
    """`real_dup` repeats the same real pair ids in every replicate: each replicate's run must finish, be
    evaluated, and audit its own replicate's copies (a one-to-one merge on pair_id failed these runs)."""
    import pandas as pd
    from conftest import TINY_PARAMS, copy_repo, deep_merge

    repo = copy_repo(tmp_path / "repo", deep_merge(TINY_PARAMS, {"replicates": [0, 1]}))
    run(["dvc", "repro", "evaluate@real_dup"], repo)
    client = client_for(repo)
    exp = client.get_experiment_by_name(yaml.safe_load((repo / "params.yaml").read_text())["tracking"]["experiment"])
    runs = client.search_runs([exp.experiment_id], "tags.mix = 'real_dup'")
    assert sorted(r.data.tags["seed"] for r in runs) == ["0", "1"]
    for r in runs:
        assert r.info.status == "FINISHED" and r.data.tags["evaluated"] == "true", r.data.tags
        local = client.download_artifacts(r.info.run_id, "audit/synthetic_pairs.parquet", str(tmp_path))
        audit = pd.read_parquet(local)
        assert len(audit) and set(audit["replicate"]) == {int(r.data.tags["seed"])}
        assert audit["pair_id"].is_unique
