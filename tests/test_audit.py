"""`pairaug audit` round trip on the tiny pipeline: registered model → exactly its synthetic pairs, every
image hash verified; an altered image shows up as modified; `--pair` finds the runs that used a pair.
Bad targets on a repository where nothing ran: one clear line, exit 2, and nothing written (audit only reads)."""

from __future__ import annotations

import json
import shutil
import sys
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, run

from pairaug.data.decisions import record_decision


def pairaug(repo: Path, *args: str, check: bool = True):
    return run([sys.executable, "-m", "pairaug.cli", *args], repo, check=check)


@pytest.fixture
def repo(tiny_repo, tmp_path) -> Path:
    """A copy: the tests set aliases and alter an image, the session's tiny repository stays as built."""
    return Path(shutil.copytree(tiny_repo, tmp_path / "repo", symlinks=True))


def synthetic_ids(repo: Path, mix: str) -> set[str]:
    used = pd.read_parquet(repo / "models" / "vlp" / mix / "training_pairs.parquet")
    return set(used.loc[used["branch"] != "real", "pair_id"])


@pytest.mark.slow
def test_registered_model_audit_round_trip(repo):
    out = pairaug(repo, "model", "alias", "set", "champion", "--mix", "pairaug")
    assert "pairaug-vlp@champion -> version" in out.stdout
    report = json.loads(pairaug(repo, "audit", "models:/pairaug-vlp@champion", "--format", "json").stdout)
    pairs = pd.DataFrame(report["pairs"])
    expected = synthetic_ids(repo, "pairaug")
    assert expected and set(pairs["pair_id"]) == expected and len(pairs) == len(expected)
    validated = pd.read_parquet(repo / "data/validated/pairs.parquet").set_index("pair_id")
    assert (pairs.set_index("pair_id")["image_sha256"] == validated.loc[list(pairs["pair_id"]), "image_sha256"]).all()
    assert set(pairs["branch"]) == {"inter", "intra"}
    assert (pairs["status"] == "verified").all() and (pairs["dvc_cache"] == "ok").all()
    assert (pairs["provenance"] == "ok").all()  # every generated image carries its pair's provenance chunks
    assert report["mix"] == "pairaug" and report["not_verified"] == 0
    assert report["revision"]["git_commit"]  # the commit the run was made at
    # The same answer from the model folder, against the workspace and dvc.lock.
    folder = pd.read_csv(StringIO(pairaug(repo, "audit", "models/vlp/pairaug", "--format", "csv").stdout))
    assert set(folder["pair_id"]) == expected and (folder["status"] == "verified").all()
    # Review lineage: the run's inputs hold the decisions file prune read (its md5 in dvc.lock); each pair
    # shows the decision prune applied (none here) and what the decisions file says now.
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["prune"]["deps"]
    assert report["inputs"]["review/decisions.csv"] == next(d["md5"] for d in lock if d["path"] == "review/decisions.csv")
    assert (pairs["review"] == "").all() and (pairs["review_now"] == "").all()
    victim = sorted(expected)[0]
    record_decision(repo / "review/decisions.csv", victim, validated.loc[victim, "image_sha256"], "reject", "dr-test")
    now = pd.DataFrame(json.loads(pairaug(repo, "audit", "models/vlp/pairaug", "--format", "json").stdout)["pairs"])
    assert now.set_index("pair_id")["review_now"].to_dict() == {p: "reject" if p == victim else "" for p in expected}


@pytest.mark.slow
def test_an_altered_image_is_reported_as_modified(repo):
    pairs = pd.read_parquet(repo / "data/validated/pairs.parquet")
    victim = pairs[pairs["branch"] == "inter"].iloc[0]
    image = repo / "data" / "validated" / victim["image"]
    image.chmod(0o644)  # DVC may leave cached files read-only
    image.write_bytes(image.read_bytes() + b"\0")
    proc = pairaug(repo, "audit", "models/vlp/pairaug", "--format", "csv", check=False)
    assert proc.returncode == 1 and f"{victim['pair_id']} (modified)" in proc.stderr
    table = pd.read_csv(StringIO(proc.stdout)).set_index("pair_id")
    assert table.loc[victim["pair_id"], "status"] == "modified"
    assert table.loc[victim["pair_id"], "dvc_cache"] == "ok"  # the cache still holds what trained the model
    assert (table.drop(index=victim["pair_id"])["status"] == "verified").all()


@pytest.mark.slow
def test_pair_lookup_names_the_runs_and_models_that_used_it(repo):
    pair_id = sorted(synthetic_ids(repo, "intra"))[0]
    report = json.loads(pairaug(repo, "audit", "--pair", pair_id, "--format", "json").stdout)
    used = pd.DataFrame(report["used_by"])
    runs = used[used["where"] == "mlflow run"]
    assert sorted(runs["mix"]) == ["intra", "pairaug"]  # the mixes with the intra branch
    assert all(v.startswith("pairaug-vlp/") for v in runs["model_versions"])
    assert sorted(used.loc[used["where"] == "workspace", "mix"]) == ["intra", "pairaug"]
    assert report["origin"]["branch"] == "intra" and report["origin"]["kept"] is True
    table = pairaug(repo, "audit", "--pair", pair_id).stdout
    assert "used by 4 run(s) / model folder(s)" in table


@pytest.mark.slow
def test_unknown_targets_fail_with_a_clear_line(repo):
    proc = pairaug(repo, "audit", "models:/pairaug-vlp/999", check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no registered model version")
    proc = pairaug(repo, "audit", "not a model", check=False)
    assert proc.returncode == 2 and "cannot read 'not a model'" in proc.stderr
    proc = pairaug(repo, "audit", "runs:/not-a-run", check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no MLflow run 'not-a-run' at sqlite:///")


@pytest.fixture
def bare_repo(tmp_path) -> Path:
    """The project's params.yaml and dvc.yaml, nothing run: no MLflow store, no DVC cache, no models."""
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy2(REPO / name, tmp_path / name)
    return tmp_path


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("target", ["runs:/not-a-run", "0123456789abcdef0123456789abcdef", "@champion"])
def test_auditing_an_unknown_run_writes_nothing(bare_repo, target):
    before = files(bare_repo)
    proc = pairaug(bare_repo, "audit", target, check=False)
    store = f"sqlite:///{bare_repo.resolve()}/mlflow.db"
    assert files(bare_repo) == before  # no mlflow.db, no .cache/mlflow-init.lock, no experiment
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"error: no MLflow store at {store}: nothing has been logged yet "
                                        "(`dvc repro` logs the pretrain and evaluate runs)"]


def test_a_corrupt_training_pairs_file_is_named_in_one_line(bare_repo):
    mix = bare_repo / "models" / "vlp" / "inter"
    (mix / "seed-0").mkdir(parents=True)
    (mix / "training_pairs.parquet").write_bytes(b"PAR1 truncated by a full disk")
    before = files(bare_repo)
    for args in (["models/vlp/inter"], ["models/vlp/inter/seed-0"], ["--pair", "0071c05879868d82"]):
        proc = pairaug(bare_repo, "audit", *args, check=False)
        assert proc.returncode == 2, proc.stderr
        line, *rest = proc.stderr.splitlines()
        assert not rest and line.startswith("error: cannot read Parquet") and "Traceback" not in proc.stderr
        assert line.endswith(f"(file {mix.resolve() / 'training_pairs.parquet'})")
    assert files(bare_repo) == before


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
