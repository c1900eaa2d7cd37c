"""Digests and derived ids: a file's digest, a short id from what made a thing, a seed from ids."""

from __future__ import annotations

import hashlib
import json
import os


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """The hex digest of a file's bytes: sha256 for our own manifests, md5 where DVC's digest is compared."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def stable_hash(*parts: object, length: int = 16) -> str:
    """A short hex id from what made a thing (deterministic across runs and machines)."""
    text = "\x1f".join(json.dumps(p, sort_keys=True, default=str) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def seed_from(*parts: object) -> int:
    """A 31-bit seed derived from ids, so any subset of items regenerates identically."""
    return int(stable_hash(*parts, length=8), 16) & 0x7FFFFFFF
