"""The response cache: one SQLite file that survives a kill in the middle of a write."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pairaug.errors import InputError
from pairaug.rewrite.cache import CachedAnswer, ResponseCache, cache_key

WRITER = """
import sys
from pairaug.rewrite.cache import CachedAnswer, ResponseCache
cache = ResponseCache(sys.argv[1])
print("ready", flush=True)
i = 0
while True:  # single answers and big batches, until killed
    cache.put(f"single-{i}", CachedAnswer("ok", "x" * 500, None, 1, 2), backend="b", model="m", prompt_sha="p")
    batch = [(f"batch-{i}-{j}", CachedAnswer("ok", "y" * 500, None, 1, 2)) for j in range(2000)]
    cache.put_many(batch, backend="b", model="m", prompt_sha="p")
    i += 1
"""


def test_answers_and_labels_persist(tmp_path):
    path = tmp_path / "c.sqlite"
    with ResponseCache(path) as cache:
        cache.put("k1", CachedAnswer("ok", "text", None, 3, 4), backend="openai", model="m", prompt_sha="abc")
        cache.put("k2", CachedAnswer("failed", None, "empty answer", 0, 0), backend="openai", model="m", prompt_sha="abc")
        cache.put_labels({"t1": {"Edema": 1}})
    with ResponseCache(path) as cache:
        got = cache.get_many(["k1", "k2", "missing"] + [f"x{i}" for i in range(1200)])  # > one IN chunk
        assert got == {"k1": CachedAnswer("ok", "text", None, 3, 4), "k2": CachedAnswer("failed", None, "empty answer", 0, 0)}
        assert cache.get_labels(["t1", "t2"]) == {"t1": {"Edema": 1}}
        assert len(cache) == 2
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_key_covers_what_shapes_the_answer():
    base = dict(backend="openai", model="m", task="inter", prompt_sha="p1", sampling={"temperature": 0.5}, report="r")
    key = cache_key(**base)
    for change in ({"backend": "azure"}, {"model": "m2"}, {"task": "intra"}, {"prompt_sha": "p2"},
                   {"sampling": {"temperature": 0.7}}, {"report": "r2"}):
        assert cache_key(**{**base, **change}) != key
    assert cache_key(**base) == key


def test_a_kill_mid_write_leaves_a_consistent_cache(tmp_path):
    path = tmp_path / "c.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    singles = db.execute("SELECT COUNT(*) FROM responses WHERE key LIKE 'single-%'").fetchone()[0]
    batches = db.execute("SELECT COUNT(*) FROM responses WHERE key LIKE 'batch-%'").fetchone()[0]
    assert singles >= 1 and batches % 2000 == 0  # a batch is all there or not at all
    assert batches // 2000 in (singles - 1, singles)
    db.close()
    with ResponseCache(path) as cache:  # and it opens and takes writes again
        cache.put("after", CachedAnswer("ok", "t", None, 0, 0), backend="b", model="m", prompt_sha="p")
        assert cache.get("after") is not None


def test_a_damaged_cache_is_reported_with_its_path(tmp_path: Path):
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(InputError, match="not a readable SQLite file") as e:
        ResponseCache(path)
    assert str(path) in str(e.value)
