"""Model folders under `models/`: trained here, or a pointer to a user's external checkpoint.

When params name an external checkpoint (RoentGen, OpenAI CLIP, MedCLIP), the fit stage trains
nothing and writes `EXTERNAL.json` (path, kind, and a fingerprint of the folder's files) instead of a
copy of gigabytes of weights; every consumer resolves the folder through `resolve()`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pairaug.io import atomic_path

MARKER = "EXTERNAL.json"


def fingerprint(folder: Path) -> str:
    """sha256 over the relative names, sizes and mtimes of a folder's files (cheap for GB checkpoints)."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(folder)}\0{st.st_size}\0{int(st.st_mtime)}\n".encode())
    return h.hexdigest()


def folder_sha(folder: str | Path) -> str:
    """A model's fingerprint (16 hex): the external checkpoint's recorded one, or a hash of our saved files'
    names and bytes (what manifests record as `generator_sha`)."""
    folder = Path(folder)
    if (folder / MARKER).exists():
        return json.loads((folder / MARKER).read_text())["fingerprint"][:16]
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(folder)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def adopt_external(out_dir: str | Path, src: str | Path, kind: str) -> dict:
    src = Path(src).resolve()
    info = {"path": str(src), "kind": kind, "fingerprint": fingerprint(src)}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        (tmp / MARKER).write_text(json.dumps(info, indent=2) + "\n")
    return info


def resolve(folder: str | Path) -> tuple[Path, str]:
    """(the folder holding the weights, its kind) for a `models/<name>` folder."""
    folder = Path(folder)
    marker = folder / MARKER
    if marker.exists():
        info = json.loads(marker.read_text())
        return Path(info["path"]), info.get("kind", "clip")
    return folder, "clip"
