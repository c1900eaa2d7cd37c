"""`dvc repro validate` in a repository copy: prune, the memorisation check (privacy) and validate run through
DVC on a small world whose upstream outputs (real pairs, rewrites, synthetic manifests, a tiny CLIP scorer)
are committed with `dvc commit`, so no generator or model is trained here. A prune param change reruns
prune and what follows only; a failing gate stops `dvc repro` with one line and loses nothing upstream."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import TINY_PARAMS, copy_repo, deep_merge, run
from PIL import Image
from test_prune import CARDIO, EFFUSION, NORMAL, REWRITES, WORSE, make_scorer, make_world, redraw_generated

from pairaug.data.decisions import record_decision

pytestmark = pytest.mark.slow


def dvc(repo: Path, *args: str, check: bool = True):
    state = repo.parent / "dvc-state"
    env = {"DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(state / "site"),
           "DVC_GLOBAL_CONFIG_DIR": str(state / "global"), "DVC_SYSTEM_CONFIG_DIR": str(state / "system")}
    return run(["dvc", *args], repo, check=check, env=env, timeout=900)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _paths(entries: list) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries or []]


def upstream_of(stages: dict, name: str) -> list[str]:
    """The stages whose outputs `name` depends on, transitively (from dvc.yaml)."""
    found: list[str] = []
    todo = [name]
    while todo:
        deps = _paths(stages[todo.pop()].get("deps"))
        for other, spec in stages.items():
            outs = _paths(spec.get("outs")) + _paths(spec.get("metrics")) + _paths(spec.get("plots"))
            if other not in found and any(_inside(d, o) or _inside(o, d) for d in deps for o in outs):
                found.append(other)
                todo.append(other)
    return found


def fabricate_outputs(repo: Path, stages: dict, names: list[str]) -> None:
    """Stand-ins for outputs the small world does not provide (generator folder, metrics, plots)."""
    for name in names:
        spec = stages[name]
        for path in _paths(spec.get("outs")) + _paths(spec.get("metrics")) + _paths(spec.get("plots")):
            target = repo / path
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.suffix == ".json":
                target.write_text("{}\n")
            elif target.suffix == ".png":
                Image.new("L", (4, 4)).save(target)
            else:
                target.mkdir()
                (target / "stand-in.txt").write_text(f"committed for the test of {name}\n")


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def test_prune_and_validate_through_dvc(tmp_path: Path) -> None:
    # τ = -0.5: the tiny untrained scorer's cosines sit near 0, so most alignment pairs are kept.
    # The world below has a stand-in pool (its own real films): no `pool_real` mix, and PairAug's ranking of the
    # intra edits rather than one by their read change, with a λ that keeps the intra pairs of these random
    # images (validate requires every branch to keep a pair).
    repo = copy_repo(tmp_path / "repo", deep_merge(TINY_PARAMS, {"prune": {"inter_tau": -0.5, "intra_rank": "scores",
                                                                           "intra_lambda": 1.0}}))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["pretrain"]["mixes"].pop("pool_real")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    # prune's and privacy's inputs, and the pool
    upstream = [s for s in upstream_of(stages, "validate") if s not in ("prune", "privacy")]
    generators = [s for s in upstream if s.endswith("generate") or s.startswith("fit-")]
    assert {"prepare", "rewrite", "fit-scorer", "inter-generate", "image-only-generate"} <= set(upstream)
    make_world(repo)
    # intra-sweep (upstream of intra-generate) reads IntraAug rewrites of valid reports: any will do here
    shutil.copy(repo / "data/rewritten/intra.parquet", repo / "data/rewritten/intra_valid.parquet")
    redraw_generated(repo)
    # validate's judge reads the kept intra pairs' change with a probe fit on the pool: the real films stand in
    shutil.copytree(repo / "data/prepared", repo / "data/pool")
    make_scorer(repo / "models" / "scorer", [NORMAL, CARDIO, EFFUSION, WORSE] + [r[2][0] for r in REWRITES.values()])
    fabricate_outputs(repo, stages, upstream)
    dvc(repo, "commit", "-f", *upstream)

    out = dvc(repo, "repro", "validate").stdout
    assert ran(out) == {"prune", "privacy", "validate"}, out
    metrics = json.loads((repo / "metrics/prune.json").read_text())
    assert {b: v["total"] for b, v in metrics["branches"].items()} == \
        {"inter": 4, "intra": 4, "image_only": 4, "paraphrase": 4}
    assert (repo / "metrics/prune_scores.png").stat().st_size > 1000
    validated = pd.read_parquet(repo / "data/validated/pairs.parquet")
    assert len(validated) == metrics["kept"] > 0
    assert json.loads((repo / "metrics/validate.json").read_text())["success"] is True
    privacy = json.loads((repo / "metrics/privacy.json").read_text())
    assert privacy["images"] == 12 and privacy["near_copies"] == 0, privacy
    sheet = json.loads((repo / "metrics/datasheet.json").read_text())
    assert sheet["quality_gate"]["success"] and set(sheet["validated"]["mixes"]) == set(params["pretrain"]["mixes"])
    assert "## 7. Memorisation" in (repo / "metrics/datasheet.md").read_text()
    assert (repo / "gx/uncommitted/data_docs/local_site/index.html").is_file()
    assert "up to date" in dvc(repo, "status", "validate").stdout

    # A review decision (as `pairaug review` writes it): only prune is stale; the rejected pair leaves
    # the validated pairs, and its decisions file is prune's dependency in dvc.lock.
    kept = validated.iloc[0]
    record_decision(repo / "review/decisions.csv", kept["pair_id"], kept["image_sha256"], "reject", "dr-test")
    status = dvc(repo, "status", "--with-deps", "validate").stdout
    assert re.findall(r"^(\S+):\s*$", status, re.M) == ["prune"], status
    assert re.search(r"modified:\s+review/decisions.csv", status), status
    assert ran(dvc(repo, "repro", "validate").stdout) == {"prune", "privacy", "validate"}  # privacy reads the kept pairs
    assert kept["pair_id"] not in set(pd.read_parquet(repo / "data/validated/pairs.parquet")["pair_id"])
    assert json.loads((repo / "metrics/prune.json").read_text())["review"]["applied"]["reject"] == 1

    # A prune param: prune (and what follows) is stale, never a generator.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["prune"]["inter_tau"] = -0.4
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = dvc(repo, "status", "--with-deps", "validate").stdout
    assert re.findall(r"^(\S+):\s*$", status, re.M) == ["prune"], status  # validate follows once prune's output moves
    assert re.search(r"params.yaml:\s+modified:\s+prune", status), status
    dry = dvc(repo, "repro", "--dry", "validate").stdout
    assert ran(dry) == {"prune"} and all(f"Stage '{g}' didn't change" in dry for g in generators), dry

    # A generator output with wrong hashes (committed as that stage's output: DVC would otherwise restore
    # the cached one): prune reruns, and the gate stops the pipeline in one line.
    manifest = repo / "data/synthetic/inter/manifest.parquet"
    pruned_before = (repo / "dvc.lock").read_text()
    man = pd.read_parquet(manifest)
    man["image_sha256"] = "0" * 64  # every row: whichever inter pairs are kept, the gate sees a bad hash
    man.to_parquet(manifest)
    dvc(repo, "commit", "-f", "inter-generate")
    proc = dvc(repo, "repro", "validate", check=False)
    assert proc.returncode != 0
    assert ran(proc.stdout) == {"prune", "privacy", "validate"}  # the generators are not rerun
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: quality gate failed")]
    assert len(errors) == 1 and "sha256_matches in [True]" in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    # Upstream intact: prune's new output is there (and cached), nothing validated for pretrain.
    assert (repo / "data/pruned/pairs.parquet").is_file() and not (repo / "data/validated").exists()
    assert (repo / "data/synthetic/inter/manifest.parquet").is_file()
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert lock["prune"]["params"]["params.yaml"]["prune"]["inter_tau"] == -0.4
    assert yaml.safe_load(pruned_before)["stages"]["validate"] == lock["validate"]  # the gate's lock is unchanged
    assert not set(generators) & ran(proc.stdout)
