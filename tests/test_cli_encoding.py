"""The `pairaug` CLI whatever the terminal's encoding and whatever bytes arrive on stdin."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO


def pairaug(args: list[str], cwd: Path, *, stdin: bytes | None = None, env: dict | None = None):
    full = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
            "TQDM_DISABLE": "1", **(env or {})}
    full.pop("DVC_ROOT", None)
    return subprocess.run(["pairaug", *args], cwd=cwd, input=stdin, capture_output=True, env=full, timeout=120)


def params_here(folder: Path, **rewrite) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["rewrite"] = {**params["rewrite"], "backend": "rules", **rewrite}
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_ascii_terminal_gets_replacements_not_a_traceback(tmp_path):
    params_here(tmp_path)
    ascii_out = {"PYTHONIOENCODING": "ascii"}
    proc = pairaug(["rewrite", "--task", "paraphrase", "FINDINGS: Small left pleural effusion. No pneumothorax."],
                   tmp_path, env=ascii_out)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode("ascii").startswith("paraphrase ? rules ? rules-v2")  # the header's "·" as "?"
    proc = pairaug(["label", "--format", "csv", "Épanchement pleural: small effusion."], tmp_path, env=ascii_out)
    assert proc.returncode == 0, proc.stderr.decode()
    rows = list(csv.DictReader(io.StringIO(proc.stdout.decode("ascii"))))
    assert rows[0]["report"] == "?panchement pleural: small effusion." and rows[0]["Pleural Effusion"] == "1"


def test_non_utf8_stdin_is_decoded_with_replacement(tmp_path):
    params_here(tmp_path)
    latin1 = "Small pleural effusion, caf\xe9 view.\nNo pneumothorax.\n".encode("latin-1")
    for env in ({"PYTHONIOENCODING": "utf-8:strict"}, {"LC_ALL": "C.UTF-8"}):
        proc = pairaug(["label"], tmp_path, stdin=latin1, env=env)
        assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr.decode()
        assert b"\\udce9" not in proc.stdout  # no surrogate escapes in the JSON
        out = json.loads(proc.stdout)
        assert out[0]["report"] == "Small pleural effusion, caf\ufffd view." and out[0]["labels"]["Pleural Effusion"] == 1
        proc = pairaug(["rewrite", "--json", "--task", "inter"], tmp_path, stdin=latin1, env=env)
        assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr.decode()
        assert b"\\udce9" not in proc.stdout and json.loads(proc.stdout)["status"] == "ok"
    # An undecodable argument (a C-locale shell passing Latin-1 bytes) is cleaned the same way.
    proc = pairaug(["label", os.fsdecode(b"Mild caf\xe9 cardiomegaly.")], tmp_path, env={"LC_ALL": "C.UTF-8"})
    assert proc.returncode == 0 and b"\\udce9" not in proc.stdout
    assert json.loads(proc.stdout)["report"] == "Mild caf\ufffd cardiomegaly."


def test_rewrite_preview_fails_loudly_and_leaves_no_cache_outside_a_repository(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    params_here(tmp_path, backend="openai", max_retries=0, timeout_s=2,
                openai={"base_url": f"http://127.0.0.1:{port}/v1", "model": "m", "api_key_env": "OPENAI_API_KEY"})
    for extra in ([], ["--json"]):
        proc = pairaug(["rewrite", *extra, "Moderate left pleural effusion. Heart size is normal."], tmp_path)
        err = proc.stderr.decode()
        assert proc.returncode == 2, (proc.stdout, err)
        assert err.startswith("error: rewrite failed") and f"127.0.0.1:{port}" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # no stray .cache/rewrite.sqlite


def test_rewrite_preview_inside_a_repository_uses_its_cache(tmp_path):
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    params_here(tmp_path, backend="openai", max_retries=0, timeout_s=2,
                openai={"base_url": f"http://127.0.0.1:{port}/v1", "model": "m", "api_key_env": "OPENAI_API_KEY"})
    sub = tmp_path / "sub"
    sub.mkdir()
    proc = pairaug(["rewrite", "--params", str(tmp_path / "params.yaml"), "Moderate left pleural effusion."], sub)
    assert proc.returncode == 2
    assert (tmp_path / ".cache" / "rewrite.sqlite").exists() and not (sub / ".cache").exists()
