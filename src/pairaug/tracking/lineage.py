"""What made a model, as DVC, git and the manifests say it: no MLflow here.

- the params DVC declares for a stage and every stage upstream of it (read through `dvc.repo.Repo`);
- git's HEAD and dirty flag, the DVC experiment a run belongs to, the revision whose dvc.lock pins a
  mix's manifests;
- dvc.lock's output and dependency md5s, and the DVC cache's copy of a file of a recorded output
  (located through DVC's own object database, so the cache layout and `.dir` format stay DVC's);
- the synthetic pairs a model trained on, joined with their provenance from the validated manifest.

The MLflow side (pairaug.tracking.runs) logs these; `pairaug audit` (pairaug.tracking.audit) reads them back.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from pairaug.errors import InputError, ParamError
from pairaug.hashing import file_digest
from pairaug.layout import DATASHEET_JSON, DATASHEET_MD, DECISIONS, VALIDATED, mix_manifest
from pairaug.layout import PREPARED as REAL_MANIFEST
from pairaug.params import read_yaml

DATASHEET = (DATASHEET_MD, DATASHEET_JSON)  # written by `validate` (quality/datasheet.py)
AUDIT_COLUMNS = ("pair_id", "branch", "source_pair_id", "source_report", "report", "image", "image_sha256",
                 "s_a", "s1", "s2", "s3", "review", "replicate")  # review: the decision prune applied to the pair


def decisions_input(lock: dict, workspace: Path) -> dict[str, str]:
    """{review/decisions.csv: md5} of the decisions the pruned pairs were made with: the md5 dvc.lock
    records for prune's dependency, else (no lock entry yet) the file's; {} without a decisions file."""
    md5 = lock_dep(lock, "prune", DECISIONS)
    if md5 is None and (workspace / DECISIONS).exists():
        md5 = file_digest(workspace / DECISIONS, "md5")
    return {DECISIONS: md5} if md5 else {}


# The rewrite task whose instruction made a synthetic branch's reports (image_only keeps the source report)
TASK_OF_BRANCH = {"inter": "inter", "intra": "intra", "paraphrase": "paraphrase"}


def prompt_versions(workspace: Path, mix: str, branches: set[str], manifest_md5: str | None) -> dict[str, dict]:
    """{task: {"sha": [...], "uri": [...]}}: the rewrite instructions the mix's synthetic reports came from, their
    hashes and Prompt Registry URIs, as the datasheet `validate` wrote for this very manifest (its md5) records
    them; {} when it describes another manifest, or none."""
    sheet_path = workspace / DATASHEET[1]
    if not manifest_md5 or not sheet_path.exists():
        return {}
    try:
        sheet = json.loads(sheet_path.read_text())
    except json.JSONDecodeError:
        return {}
    if (sheet.get("validated") or {}).get("mixes", {}).get(mix) != manifest_md5:
        return {}
    out = {}
    for task in sorted({TASK_OF_BRANCH[b] for b in branches if b in TASK_OF_BRANCH}):
        entry = (sheet.get("prompts") or {}).get(task) or {}
        out[task] = {"sha": list(entry.get("prompt_sha") or []), "uri": list(entry.get("prompt_uri") or [])}
    return out


def synthetic_manifest(mix: str) -> str:
    """The validated synthetic pairs a mix trains on (written by `validate`, read by `pretrain@<mix>`)."""
    return mix_manifest(mix)


# ------------------------------------------------------------------------------------------- params


def flatten(value: Any, prefix: str) -> dict[str, str]:
    """{'a.b.c': 'value'} for nested mappings; lists and scalars as their YAML/JSON text."""
    if isinstance(value, dict) and value:
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}"))
        return out
    if value is None:
        return {prefix: "null"}
    if isinstance(value, bool):
        return {prefix: "true" if value else "false"}
    if isinstance(value, (list, tuple, dict)):
        return {prefix: json.dumps(value)}
    return {prefix: str(value)}


def _lookup(params: dict, key: str) -> Any:
    value: Any = params
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ParamError(key, "declared in dvc.yaml but missing from params.yaml")
        value = value[part]
    return value


def stage_params(stages: list[str], workspace: str | Path = ".") -> dict[str, str]:
    """Flattened params.yaml values of every key DVC declares for `stages` and all stages upstream.

    DVC says which keys (`repo.stage.collect(..., with_deps=True)`, the pipeline `dvc repro` runs); the
    values come from params.yaml read as the stages read it (`read_yaml`, YAML 1.2 like DVC), so the logged text is what they used."""
    from dvc.repo import Repo
    from dvc.stage.exceptions import StageNotFound

    workspace = Path(workspace)
    params = read_yaml((workspace / "params.yaml").read_text()) or {}
    keys: set[str] = set()
    with Repo(str(workspace)) as repo:
        for name in stages:
            try:
                pipeline = repo.stage.collect(name, with_deps=True)
            except StageNotFound:
                raise ParamError("stage argument", f"no DVC stage {name!r} in dvc.yaml") from None
            for stage in pipeline:
                for dep in stage.params:
                    keys.update(dep.params or [])
    out: dict[str, str] = {}
    for key in sorted(keys):
        out.update(flatten(_lookup(params, key), key))
    return out


# ------------------------------------------------------------------------------------- git, dvc.lock


def _git(workspace: str | Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=workspace, capture_output=True, text=True, check=True).stdout


def git_state(workspace: str | Path = ".") -> tuple[str | None, bool | None]:
    """(HEAD commit, whether tracked or untracked-but-not-ignored files differ from it)."""
    try:
        return _git(workspace, "rev-parse", "HEAD").strip(), bool(_git(workspace, "status", "--porcelain").strip())
    except (OSError, subprocess.CalledProcessError):
        return None, None


def _lock_stages(text: str) -> dict:
    # libyaml's loader where PyYAML has it: the lock runs to hundreds of KB (every stage's code deps)
    return (yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}).get("stages", {})


def read_lock(workspace: str | Path = ".") -> dict:
    """The `stages` of the workspace's dvc.lock ({} before the first `dvc repro`)."""
    path = Path(workspace) / "dvc.lock"
    return _lock_stages(path.read_text()) if path.exists() else {}


def lock_outs(lock: dict) -> dict[str, str]:
    """{output path: md5} over every stage of a parsed dvc.lock (folders: their `.dir` md5)."""
    return {o["path"]: o["md5"] for entry in lock.values() for o in entry.get("outs", []) if "md5" in o}


def lock_dep(lock: dict, stage: str, path: str) -> str | None:
    for dep in lock.get(stage, {}).get("deps", []):
        if dep.get("path") == path:
            return dep.get("md5")
    return None


def run_tags(mix: str, seed: int, weights_sha: str, stage: str, workspace: str | Path = ".") -> dict[str, str]:
    commit, dirty = git_state(workspace)
    tags = {"mix": mix, "seed": str(seed), "weights_sha256": weights_sha, "stage": stage,
            "dvc_exp_name": os.environ.get("DVC_EXP_NAME", ""),
            "dvc_baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", ""),
            "git_commit": commit or "", "git_dirty": "" if dirty is None else str(dirty).lower()}
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def weights_sha256(seed_dir: str | Path) -> str:
    seed_dir = Path(seed_dir)
    files = sorted(seed_dir.glob("*.safetensors")) or sorted(seed_dir.glob("*.bin"))
    if not files:
        raise InputError("no model weights (*.safetensors) in the model folder", file=seed_dir)
    if len(files) == 1:
        return file_digest(files[0])
    return hashlib.sha256("".join(file_digest(f) for f in files).encode()).hexdigest()


def reproducing_revision(root: Path, lineage: dict, mix: str | None, limit: int = 300) -> dict[str, Any]:
    """The git / DVC revision whose dvc.lock trained `mix` on exactly these manifests (md5s)."""
    out: dict[str, Any] = {k: lineage.get(k) or None for k in ("git_commit", "git_dirty", "dvc_exp_name", "dvc_baseline_rev")}
    inputs = lineage.get("inputs") or {}
    exp, base = lineage.get("dvc_exp_name"), lineage.get("dvc_baseline_rev")
    try:
        if exp and base:  # a DVC experiment: its commit lives under refs/exps/<baseline>/<name>
            ref = f"refs/exps/{base[:2]}/{base[2:]}/{exp}"
            sha = _git(root, "rev-parse", "--verify", "--quiet", ref).strip()
            if sha:
                return {**out, "revision": sha, "source": f"DVC experiment {exp}",
                        "reproduce": f"dvc exp apply {exp} && dvc pull && dvc repro pretrain@{mix}"}
        if mix and inputs:
            revs = _git(root, "log", "--all", f"-n{limit}", "--format=%H", "--", "dvc.lock").split()
            for rev in revs:
                try:
                    lock = _lock_stages(_git(root, "show", f"{rev}:dvc.lock"))
                except subprocess.CalledProcessError:
                    continue
                if all(lock_dep(lock, f"pretrain@{mix}", p) == m for p, m in inputs.items()):
                    return {**out, "revision": rev, "source": "commit whose dvc.lock records these manifests' md5s",
                            "reproduce": f"git checkout {rev[:12]} && dvc pull && dvc repro pretrain@{mix}"}
    except (OSError, subprocess.CalledProcessError):
        pass
    commit, dirty = out.get("git_commit"), out.get("git_dirty")
    if commit and dirty == "false":
        return {**out, "revision": commit, "source": "the run's git commit (clean workspace)",
                "reproduce": f"git checkout {commit[:12]} && dvc repro pretrain@{mix}"}
    return {**out, "revision": None, "source": "no committed dvc.lock records these manifests "
            "(commit dvc.lock, or `dvc exp run`, to pin them)", "reproduce": None}


# ---------------------------------------------------------------------------------------- the cache


class DvcCache:
    """The DVC cache's copy of each file of the outputs recorded in a lineage (`dvc_outs`: path → md5).

    Paths come from DVC's object database (`oid_to_path`); a folder output's files from its tree object,
    loaded with dvc-data (`Tree.load`): the md5s recorded at training time, not today's workspace."""

    def __init__(self, root: Path, outs: dict[str, str]):
        self.outs = outs
        self.odb = None
        if outs:
            from dvc.repo import Repo

            with Repo(str(root)) as repo:
                self.odb = repo.cache.local
        self._trees: dict[str, dict[tuple[str, ...], str]] = {}

    def object_for(self, rel: str) -> Path | None:
        """The cached object holding the file at repo-relative `rel`, None when no recorded output holds it."""
        if self.odb is None:
            return None
        for out, md5 in self.outs.items():
            out = out.rstrip("/")
            if rel == out and not md5.endswith(".dir"):
                return Path(self.odb.oid_to_path(md5))
            if rel.startswith(out + "/") and md5.endswith(".dir"):
                oid = self._tree(md5).get(tuple(rel[len(out) + 1:].split("/")))
                return Path(self.odb.oid_to_path(oid)) if oid else None
        return None

    def _tree(self, md5: str) -> dict[tuple[str, ...], str]:
        if md5 not in self._trees:
            from dvc_data.hashfile.hash_info import HashInfo
            from dvc_data.hashfile.tree import Tree
            from dvc_objects.errors import ObjectFormatError

            try:
                tree = Tree.load(self.odb, HashInfo("md5", md5))
                self._trees[md5] = {key: hi.value for key, _, hi in tree if hi and hi.value}
            except (FileNotFoundError, ObjectFormatError):  # gc'ed or never pushed here: unknown, not an error
                self._trees[md5] = {}
        return self._trees[md5]


# ------------------------------------------------------------------------------- what a model trained on


def audit_pairs(training_pairs: pd.DataFrame, validated: pd.DataFrame | None,
                validated_dir: str = VALIDATED, replicate: int | None = None) -> pd.DataFrame:
    """The synthetic pairs a model trained on, with what an audit needs (image paths repo-relative).

    `replicate`: one model's pairs (a mix's tables hold every replicate's; a control such as `real_dup`
    or `pool_real` repeats the same pair ids in each, so a pair is a (pair_id, replicate))."""
    used = training_pairs[training_pairs["branch"] != "real"]
    if replicate is not None and "replicate" in used.columns:
        used = used[used["replicate"] == replicate]
    keys = [k for k in ("pair_id", "replicate") if k in used.columns]
    used = used[[*keys, "branch", "report"]]
    if validated is None:
        out = used.assign(**{c: pd.NA for c in AUDIT_COLUMNS if c not in used.columns})
        return out[list(AUDIT_COLUMNS)].reset_index(drop=True)
    keys = [k for k in keys if k in validated.columns]
    cols = [c for c in AUDIT_COLUMNS if c in validated.columns and c not in ("branch", "report")]
    out = used.merge(validated[list(dict.fromkeys([*keys, *cols]))], on=keys, how="left", validate="one_to_one")
    out["image"] = [None if pd.isna(p) else os.path.normpath(f"{validated_dir}/{p}") for p in out["image"]]
    for c in AUDIT_COLUMNS:
        if c not in out.columns:
            out[c] = pd.NA
    return out[list(AUDIT_COLUMNS)].reset_index(drop=True)


def split_rows(pairs_path: str | Path, split: str) -> tuple[pd.DataFrame, str]:
    """The rows of one split of the real pairs (sorted by pair id) and their md5: the hash of those rows
    written as CSV, so it changes exactly when a pair, image path, label or report of the split does."""
    pairs = read_table(pairs_path)
    rows = pairs[pairs["split"] == split].sort_values("pair_id").reset_index(drop=True)
    return rows, hashlib.md5(rows.to_csv(index=False).encode()).hexdigest()


def read_table(path: str | Path) -> pd.DataFrame:
    """A Parquet table (a mix's training pairs, a manifest); a damaged one is an InputError naming the file."""
    try:
        return pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise InputError(f"cannot read Parquet: {str(e).strip().splitlines()[0]}", file=path) from None


@dataclass
class TrainingRecord:
    """What one (mix, seed) model is made of: enough to log its training run from pretrain or evaluate."""

    mix: str
    seed: int
    seed_dir: Path
    params: dict[str, str]
    tags: dict[str, str]
    inputs: dict[str, str]  # manifest path → md5
    audit: pd.DataFrame
    lineage: dict
    prompts: dict[str, dict] = field(default_factory=dict)  # rewrite task → {"sha": [...], "uri": [...]}


def training_records(mix: str, mix_dir: str | Path, stage: str, workspace: str | Path = ".",
                     extra_stages: tuple[str, ...] = (), inputs: dict[str, str] | None = None) -> list[TrainingRecord]:
    """One record per seed-<s>/ folder of a mix's model folder (params and lineage from the workspace).

    `inputs`: the manifests' md5s (pretrain hashes the files; evaluate reads what dvc.lock recorded)."""
    workspace, mix_dir = Path(workspace), Path(mix_dir)
    params = stage_params([f"pretrain@{mix}", *extra_stages], workspace)
    lock = read_lock(workspace)
    syn_rel = synthetic_manifest(mix)
    if inputs is None:
        inputs = {p: file_digest(workspace / p, "md5") for p in (REAL_MANIFEST, syn_rel) if (workspace / p).exists()}
    training = read_table(mix_dir / "training_pairs.parquet")
    validated = None
    syn_path = workspace / syn_rel
    # Only the version of the synthetic manifest that trained the model (its md5 was recorded).
    if (training["branch"] != "real").any() and syn_path.exists() and inputs.get(syn_rel) == file_digest(syn_path, "md5"):
        validated = read_table(syn_path)
    prompts = prompt_versions(workspace, mix, set(training["branch"]) - {"real"}, inputs.get(syn_rel))
    if not (training["branch"] != "real").any():
        inputs = {k: v for k, v in inputs.items() if k != syn_rel}  # `none` trains on real pairs only
    else:  # the review decisions chose among the synthetic pairs: they are an input of the model too
        inputs = {**inputs, **decisions_input(lock, workspace)}
    records = []
    for seed_dir in sorted(mix_dir.glob("seed-*")):
        seed = int(seed_dir.name.removeprefix("seed-"))
        tags = run_tags(mix, seed, weights_sha256(seed_dir), stage, workspace)
        lineage = {"mix": mix, "seed": seed, "stage": stage, "inputs": inputs, "prompts": prompts,
                   "dvc_outs": {p: m for p, m in lock_outs(lock).items() if p.startswith("data/")},
                   **{k: tags[k] for k in ("git_commit", "git_dirty", "dvc_exp_name", "dvc_baseline_rev", "weights_sha256")}}
        audit = audit_pairs(training, validated, replicate=seed)  # this model's pairs: its replicate's
        records.append(TrainingRecord(mix, seed, seed_dir, {k: v for k, v in params.items()}, tags, inputs, audit, lineage,
                                      prompts))
    return records
