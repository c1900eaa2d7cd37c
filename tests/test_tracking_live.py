"""Live MLflow runs: `pretrain@mix` opens its run as training starts and logs the curve as it goes.

The stage runs in its own process, paused inside its last evaluation (still training); this process
then reads the store the way the MLflow UI does. Afterwards the run's start and end bracket the
training, and the stage's outputs are byte-identical to a run with tracking off.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import run
from mlflow import MlflowClient

import pairaug.tracking.runs as runs
from pairaug.tracking.lineage import weights_sha256
from pairaug.tracking.store import TrackingConfig

# Runs the stage script with `train_clip` wrapped: the training's start and end times are recorded, and
# the second valid evaluation (step 6 of 6 on the tiny params: training is not over) waits for `go`.
DRIVER = """\
import inspect, json, runpy, sys, time
from pathlib import Path

import pairaug.train.pretrain as pretrain

marks, original, times = Path(sys.argv[1]), pretrain.train_clip, {}

def train_clip(*args, **kwargs):
    bound = inspect.signature(original).bind(*args, **kwargs)
    select, calls = bound.arguments["select"], []

    def paused_select(model):
        calls.append(1)
        if len(calls) == 2:
            (marks / "paused").write_text("")
            deadline = time.monotonic() + 600
            while not (marks / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return select(model)

    bound.arguments["select"] = paused_select
    times["train_start"] = time.time()
    try:
        return original(*bound.args, **bound.kwargs)
    finally:
        times["train_end"] = time.time()
        (marks / "times.json").write_text(json.dumps(times))

pretrain.train_clip = train_clip
sys.argv = ["stages/pretrain.py", "none"]
runpy.run_path("stages/pretrain.py", run_name="__main__")
"""


def stage_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    for key in ("DVC_ROOT", "MLFLOW_TRACKING_URI"):  # the copy's own mlflow.db, never a team server
        env.pop(key, None)
    return env


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow  # prepare, then the pretrain stage twice (tracking on and off): minutes on 2 cores
def test_pretrain_run_is_live_while_training_and_spans_it(fresh_repo: Path, tmp_path: Path):
    repo = fresh_repo
    params = yaml.safe_load((repo / "params.yaml").read_text())
    train = params["pretrain"]["train"]
    assert (train["min_steps"], train["select_every"], params["replicates"]) == (6, 3, [0])  # none: evals at 3, 6
    run([sys.executable, "stages/prepare.py"], repo)
    marks = tmp_path / "marks"
    marks.mkdir()
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    uri = f"sqlite:///{repo / 'mlflow.db'}"
    log = open(tmp_path / "stage.log", "w+")  # noqa: SIM115 - the stage writes to it until it ends
    proc = subprocess.Popen([sys.executable, str(driver), str(marks)], cwd=repo, env=stage_env(), stdout=log,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 900
        while not (marks / "paused").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        log.seek(0)
        assert (marks / "paused").exists(), f"the stage never reached its last evaluation:\n{log.read()[-4000:]}"
        # Mid-training, as the MLflow UI sees it (another process, the same store).
        client = MlflowClient(uri, uri)
        exp = client.get_experiment_by_name(params["tracking"]["experiment"])
        assert exp is not None, "no MLflow experiment while pretrain@none is training"
        (live,) = client.search_runs([exp.experiment_id])
        assert live.info.status == "RUNNING" and live.info.end_time is None
        assert live.data.tags["mix"] == "none" and live.data.tags["seed"] == "0"
        assert live.data.params["pretrain.train.min_steps"] == "6"  # params are there from the start
        assert [m.step for m in client.get_metric_history(live.info.run_id, "train_loss")] == [3]
        assert [m.step for m in client.get_metric_history(live.info.run_id, "valid_score")] == [3]
        assert not (repo / "models" / "vlp" / "none").exists()  # the stage's outputs are not written yet
        (marks / "go").write_text("")
        rc = proc.wait(timeout=900)
        log.seek(0)
        assert rc == 0, f"the stage failed:\n{log.read()[-4000:]}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        log.close()

    times = json.loads((marks / "times.json").read_text())
    (done,) = client.search_runs([exp.experiment_id])
    assert done.info.run_id == live.info.run_id  # the live run was completed, no second run
    assert done.info.status == "FINISHED"
    # Its duration covers the training (which includes the pause above).
    assert done.info.start_time <= times["train_start"] * 1000
    assert done.info.end_time >= int(times["train_end"] * 1000)
    curve = client.get_metric_history(done.info.run_id, "train_loss")
    assert [m.step for m in curve] == [3, 6]  # each point once: logged live, not again at the end
    assert curve[0].timestamp < times["train_end"] * 1000  # ... and when it was computed
    history = json.loads((repo / "models/vlp/none/seed-0/history.json").read_text())
    assert [m.value for m in curve] == history["train_loss"]
    # Completed as before: the weights' tag (evaluate finds the run by it), inputs, audit trail, model.
    assert done.data.tags["weights_sha256"] == weights_sha256(repo / "models/vlp/none/seed-0")
    assert done.data.tags["stage"] == "pretrain@none" and done.data.tags.get("model_version")
    assert {"best_step", "best_valid_score"} <= set(done.data.metrics)
    assert [i.dataset.name for i in done.inputs.dataset_inputs] == ["real_pairs"]
    assert "audit/lineage.json" in {f.path for f in client.list_artifacts(done.info.run_id, "audit")}

    # The DVC outputs: no run id in them, and the same bytes with tracking off.
    outputs = tree_bytes(repo / "models" / "vlp" / "none")
    assert not [name for name, data in outputs.items() if done.info.run_id.encode() in data]
    params["tracking"]["enabled"] = False
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run([sys.executable, "stages/pretrain.py", "none"], repo)
    assert tree_bytes(repo / "models" / "vlp" / "none") == outputs
    assert len(client.search_runs([exp.experiment_id])) == 1  # tracking off: nothing logged


def test_a_store_failure_while_training_warns_once_and_never_stalls_training(monkeypatch, caplog, tmp_path):
    """The hooks never raise; after the first failure they stop calling MLflow (a down server would
    otherwise cost a timeout per evaluation); the completion after the outputs are written warns as before."""
    calls = []

    def down(cfg, root=None):
        calls.append(cfg)
        raise ConnectionError("tracking server http://127.0.0.1:1 unreachable (ConnectionError)")

    monkeypatch.setattr(runs, "open_store", down)
    hooks = runs.PretrainRuns("none", TrackingConfig(), tmp_path)
    with caplog.at_level(logging.WARNING, logger="pairaug.tracking"):
        for seed in (0, 1):
            hooks.seed_started(seed)
            for step in (3, 6):
                hooks.evaluated(seed, step, 1.0, 0.5)
            hooks.seed_finished(seed)
        assert len(calls) == 1 and not hooks.live
        assert caplog.text.count("live run not logged: pretrain@none seed 0: tracking server") == 1
        out = hooks.complete(tmp_path / "models")
    assert not out.logged and len(calls) == 2
    assert "run not logged: pretrain@none: tracking server http://127.0.0.1:1 unreachable" in caplog.text

    disabled = runs.PretrainRuns("none", TrackingConfig(enabled=False), tmp_path)
    disabled.seed_started(0)
    disabled.evaluated(0, 3, 1.0, 0.5)
    assert disabled.complete(tmp_path / "models").logged and len(calls) == 2  # tracking off: MLflow untouched
