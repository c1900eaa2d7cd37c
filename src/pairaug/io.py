"""Atomic, deterministic writes: a killed stage never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from pairaug.errors import InputError
from pairaug.hashing import stable_hash

# A temp output is named for its owner, `.<name>.<host>-<pid>-<random>.tmp`, so that a later run can tell
# the leftovers of a killed process (SIGKILL runs no cleanup) from the temp of a writer still at work.
_HOST = stable_hash(socket.gethostname(), length=8)
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-\w+\.tmp$")
_swept: set[str] = set()  # folders already cleared by this process (once each: image folders hold many files)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Delete the temp outputs in `folder` left by processes of this host that died; return them.

    A process killed between moving the old output aside and moving the new one in leaves the old one
    inside its temp folder: it is put back first, so the output a rerun started from is never lost.
    """
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            m = _LEFTOVER.match(entry.name)
            if not m or m["host"] != _HOST or _alive(int(m["pid"])):
                continue
            leftover, output = Path(entry.path), Path(folder) / m["name"]
            if (leftover / ".old").exists() and not output.exists():
                (leftover / ".old").rename(output)
            shutil.rmtree(leftover, ignore_errors=True)
            removed.append(leftover)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it replaces `path` (file or folder) in one rename.

    First removes what killed runs left in the same folder (see `remove_leftovers`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if str(path.parent) not in _swept:
        remove_leftovers(path.parent)
        _swept.add(str(path.parent))
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_HOST}-{os.getpid()}-", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        if path.is_dir() and not path.is_symlink():
            old = tmp / ".old"
            path.rename(old)
            target.rename(path)
        else:
            os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file another stage wrote; missing or corrupt is an InputError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError("missing JSON file", file=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"not valid JSON ({e})", file=path) from None


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Parquet without the pandas index, so equal frames give equal bytes."""
    with atomic_path(path) as tmp:
        df.reset_index(drop=True).to_parquet(tmp, index=False, compression="zstd")


def save_png(array: np.ndarray, path: str | os.PathLike, text: dict[str, str] | None = None) -> None:
    """Save a uint8 gray image as PNG (PIL's zlib output is deterministic for equal pixels), with `text` as
    tEXt chunks in the given order (no time stamp: equal pixels and text give equal bytes)."""
    info = None
    if text:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(tmp, format="PNG", optimize=False,
                                                                          pnginfo=info)
