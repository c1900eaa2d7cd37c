"""The response cache: one SQLite file (WAL), so a rerun or a resume never pays twice for a report.

One row per answer, keyed by a hash of (backend, model, task, prompt hash, sampling params, report):
200k+ rows stay one indexed file, not 200k files. Every write is its own transaction, so a crash (or
a kill) in the middle of a run loses at most the answer being written, never the file. A second table
memoises labeler output per text, so a rerun served from the cache does not re-label everything.
Transient failures (rate limits, server errors, timeouts, connection errors) are never stored;
answers that failed for good (malformed or empty after retries, a rejected request) are stored with
their reason, so a rerun does not pay for them again unless `rewrite.retry_failed` is set.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pairaug.errors import InputError
from pairaug.hashing import stable_hash

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL,             -- ok | failed
    text TEXT,
    reason TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    backend TEXT, model TEXT, prompt_sha TEXT,
    created REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS labels (
    key TEXT PRIMARY KEY,             -- hash of (labeler version, text)
    labels TEXT NOT NULL
) WITHOUT ROWID;
"""
_CHUNK = 500  # keys per IN (...) query; well under SQLite's variable limit


def cache_key(backend: str, model: str, task: str, prompt_sha: str, sampling: dict, report: str) -> str:
    """The cache key of one request: everything that shapes the answer, and nothing secret."""
    return stable_hash("rewrite-v1", backend, model, task, prompt_sha, sampling, report, length=32)


@dataclass(frozen=True)
class CachedAnswer:
    status: str  # ok | failed
    text: str | None
    reason: str | None
    prompt_tokens: int
    completion_tokens: int


class ResponseCache:
    """A thread-safe handle on the cache file (one connection, one lock)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            # isolation_level=None: autocommit, so each statement is one atomic transaction.
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a process crash loses nothing committed; power loss may drop the
            # last few answers but never corrupts the file.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise InputError(f"the rewrite cache is not a readable SQLite file ({e}); move it away to start a "
                             "new cache", file=self.path) from None

    # ------------------------------------------------------------ answers

    def get_many(self, keys: Iterable[str]) -> dict[str, CachedAnswer]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, CachedAnswer] = {}
        with self._lock:
            for i in range(0, len(keys), _CHUNK):
                chunk = keys[i : i + _CHUNK]
                rows = self._db.execute(
                    "SELECT key, status, text, reason, prompt_tokens, completion_tokens FROM responses "
                    f"WHERE key IN ({','.join('?' * len(chunk))})", chunk).fetchall()
                for key, status, text, reason, pt, ct in rows:
                    out[key] = CachedAnswer(status, text, reason, int(pt or 0), int(ct or 0))
        return out

    def get(self, key: str) -> CachedAnswer | None:
        return self.get_many([key]).get(key)

    def put(self, key: str, answer: CachedAnswer, *, backend: str, model: str, prompt_sha: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, answer.status, answer.text, answer.reason, answer.prompt_tokens, answer.completion_tokens,
                 backend, model, prompt_sha, time.time()))

    def put_many(self, items: list[tuple[str, CachedAnswer]], *, backend: str, model: str, prompt_sha: str) -> None:
        """Many answers in one transaction (bulk loads, benchmarks)."""
        now = time.time()
        rows = [(k, a.status, a.text, a.reason, a.prompt_tokens, a.completion_tokens, backend, model, prompt_sha, now)
                for k, a in items]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    # ------------------------------------------------------------ labels memo

    def get_labels(self, keys: Iterable[str]) -> dict[str, dict[str, int | None]]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, dict[str, int | None]] = {}
        with self._lock:
            for i in range(0, len(keys), _CHUNK):
                chunk = keys[i : i + _CHUNK]
                rows = self._db.execute(
                    f"SELECT key, labels FROM labels WHERE key IN ({','.join('?' * len(chunk))})", chunk).fetchall()
                out.update((k, json.loads(v)) for k, v in rows)
        return out

    def put_labels(self, items: dict[str, dict[str, int | None]]) -> None:
        if not items:
            return
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR REPLACE INTO labels VALUES (?, ?)",
                                     [(k, json.dumps(v, sort_keys=True)) for k, v in items.items()])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
