"""The `rewrite` stage: every train report → one new report per task, with labels and accounting.

For LLM backends the unique (task, report) requests not yet in the cache go through a bounded thread
pool; each answer is committed to the cache as it arrives, so a crash, a kill or a dead server costs
only the requests in flight, and a rerun requests only what is missing. After
`rewrite.abort_after_failures` consecutive transient failures (server down) the run stops asking and
records the rest as not attempted. LLM answers longer than `max_words` are cut at a sentence boundary;
the rules backend shortens by dropping restated and less informative sentences (`rules.fit_words`)
and, when `max_words` cannot hold what the rewrite must keep, the row is `skipped_long` with the
reason. Reports shorter than `min_words` are skipped. Every train pair gets a row: `ok`, `failed` (with
the reason), `skipped_short`, `skipped_long` or `unchanged` (the answer is the source report itself: no
new pair, and the quality gate would refuse it) — nothing is dropped silently.

With an MLflow store (`registry`, opened by the stage): the instructions are registered in the Prompt
Registry and each row records its prompt's URI beside the hash (pairaug.rewrite.registry); each LLM
request is a trace where the store may hold reports (pairaug.rewrite.traces).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pairaug.data.labeler import label_report
from pairaug.data.report_text import normalize_text
from pairaug.data.schema import LABELS, read_pairs
from pairaug.errors import PairaugError
from pairaug.hashing import seed_from
from pairaug.io import atomic_path, write_json, write_parquet
from pairaug.paths import repo_root
from pairaug.rewrite.accounting import (
    TaskStats,
    build_metrics,
    check_retention,
    label_change_stats,
    label_many,
)
from pairaug.rewrite.cache import CachedAnswer, ResponseCache, cache_key
from pairaug.rewrite.config import RewriteConfig
from pairaug.rewrite.llm import Answer, ChatBackend
from pairaug.rewrite.prompts import Prompt, get_prompt, is_registry_uri
from pairaug.rewrite.registry import RegistryTarget, load_registered, register_prompts, resolve_prompts
from pairaug.rewrite.retention import compare
from pairaug.rewrite.rules import RulesRewriter
from pairaug.rewrite.traces import Tracer, flush, tracer_for
from pairaug.rewrite.words import count_words, limit_words

log = logging.getLogger("pairaug.rewrite")

COLUMNS: tuple[str, ...] = (
    "source_pair_id", "task", "report_new", *LABELS, "backend", "model", "prompt_sha", "prompt_uri", "cache_key",
    "prompt_tokens", "completion_tokens", "status", "reason", "truncated",
)


def cache_path(cfg: RewriteConfig) -> Path:
    """The cache file; relative paths are taken from the repository root (DVC_ROOT under `dvc exp run`)."""
    p = Path(cfg.cache_path).expanduser()
    return p if p.is_absolute() else repo_root() / p


# ---------------------------------------------------------------- backends


def make_backend(cfg: RewriteConfig, seed: int, abort: threading.Event | None = None) -> RulesRewriter | ChatBackend:
    if cfg.backend == "rules":
        return RulesRewriter(seed, cfg.max_words)
    return ChatBackend(cfg, abort=abort)


def _row(pair_id: str, task: str, text: str | None, labels: dict | None, backend: str, model: str, prompt: Prompt,
         key: str, pt: int, ct: int, status: str, reason: str | None, truncated: bool) -> dict:
    row = {"source_pair_id": pair_id, "task": task, "report_new": text}
    row.update({lab: (labels or {}).get(lab) for lab in LABELS})
    row.update(backend=backend, model=model, prompt_sha=prompt.sha, prompt_uri=prompt.uri, cache_key=key, prompt_tokens=pt,
               completion_tokens=ct, status=status, reason=reason, truncated=truncated)
    return row


def rows_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    for col in ("source_pair_id", "task", "report_new", "backend", "model", "prompt_sha", "prompt_uri", "cache_key",
                "status", "reason"):
        df[col] = df[col].astype("string")
    for lab in LABELS:
        df[lab] = df[lab].astype("Int8")
    for col in ("prompt_tokens", "completion_tokens"):
        df[col] = df[col].astype("int64")
    df["truncated"] = df["truncated"].astype(bool)
    return df


# ---------------------------------------------------------------- one task


def _prompt(cfg: RewriteConfig, task: str, prompt: Prompt | None) -> Prompt:
    if prompt is not None:
        return prompt
    if is_registry_uri(cfg.prompt_overrides().get(task)):
        return load_registered(task, cfg.prompt_overrides()[task], None)  # raises: no store to load it from
    return get_prompt(task, cfg.prompt_overrides())


def rewrite_rules(rw: RulesRewriter, cfg: RewriteConfig, task: str, pairs: pd.DataFrame, seed: int,
                  progress: bool = True, prompt: Prompt | None = None) -> tuple[pd.DataFrame, TaskStats]:
    prompt = _prompt(cfg, task, prompt)
    stats = TaskStats(task, rows=len(pairs))
    rows, src_labels, new_labels = [], [], []
    for pair_id, report in tqdm(list(zip(pairs["pair_id"], pairs["report"])), desc=f"rewrite {task}", unit="report",
                                disable=not progress, mininterval=0.5):
        key = cache_key("rules", rw.model, task, prompt.sha, {"seed": seed, "source": pair_id}, report)
        if count_words(report) < cfg.min_words:
            stats.skipped_short += 1
            rows.append(_row(pair_id, task, None, None, "rules", rw.model, prompt, key, 0, 0, "skipped_short",
                             f"report has {count_words(report)} words (< rewrite.min_words = {cfg.min_words})", False))
            continue
        answer = rw.rewrite(task, report, pair_id)
        if answer.too_long is not None:
            stats.skipped_long += 1
            stats.long_reasons[re.sub(r"\d+ words", "N words", answer.too_long)] += 1
            rows.append(_row(pair_id, task, None, None, "rules", rw.model, prompt, key, 0, 0, "skipped_long",
                             answer.too_long, False))
            continue
        text, truncated = limit_words(answer.text, cfg.max_words)
        if normalize_text(text) == normalize_text(report):
            stats.unchanged += 1
            rows.append(_row(pair_id, task, None, None, "rules", rw.model, prompt, key, 0, 0, "unchanged",
                             "the rewrite is the source report itself", False))
            continue
        labels = label_report(text)
        stats.ok += 1
        stats.truncated += truncated
        stats.retention.append((pair_id, compare(report, text, task)))
        src_labels.append(label_report(report))
        new_labels.append(labels)
        rows.append(_row(pair_id, task, text, labels, "rules", rw.model, prompt, key, 0, 0, "ok", None, truncated))
    stats.labels = label_change_stats(src_labels, new_labels)
    return rows_frame(rows), stats


def rewrite_llm(backend: ChatBackend, cfg: RewriteConfig, task: str, pairs: pd.DataFrame, cache: ResponseCache,
                progress: bool = True, prompt: Prompt | None = None,
                tracer: Tracer | None = None) -> tuple[pd.DataFrame, TaskStats]:
    prompt = _prompt(cfg, task, prompt)
    sampling = backend.sampling()
    stats = TaskStats(task, rows=len(pairs))
    ids = [str(x) for x in pairs["pair_id"]]
    reports = [str(x) for x in pairs["report"]]
    keys = [cache_key(backend.name, backend.model, task, prompt.sha, sampling, r) for r in reports]
    short = [count_words(r) < cfg.min_words for r in reports]
    wanted: dict[str, str] = {}  # key -> report, in first-seen order (identical reports are asked once)
    for k, r, s in zip(keys, reports, short):
        if not s:
            wanted.setdefault(k, r)
    stats.deduplicated = sum(not s for s in short) - len(wanted)

    answers: dict[str, CachedAnswer] = {}
    cached = cache.get_many(wanted)
    for k, a in cached.items():
        if a.status == "ok" or not cfg.retry_failed:
            answers[k] = a
    stats.cache_hits = len(answers)
    todo = [k for k in wanted if k not in answers]
    failures: dict[str, Answer] = {}  # transient failures: reported, not cached
    if todo:
        log.info("rewrite %s: %d reports, %d from the cache, %d to request from %s (concurrency %d)", task,
                 len(wanted), stats.cache_hits, len(todo), backend.describe(), cfg.concurrency)
        sources: dict[str, list[str]] = {}  # key -> the pairs whose report it is (for the traces)
        for k, pid, s in zip(keys, ids, short):
            if not s:
                sources.setdefault(k, []).append(pid)
        # A trace says why the report was asked: not in the cache, or a cached failure asked again.
        requests = {k: (sources[k], "retry_failed" if k in cached else "miss") for k in todo}
        _request_all(backend, cfg, prompt, todo, wanted, cache, answers, failures, stats, progress, tracer, requests)

    ok_texts: dict[str, tuple[str, bool]] = {k: limit_words(a.text or "", cfg.max_words)
                                             for k, a in answers.items() if a.status == "ok"}
    labels = label_many([t for t, _ in ok_texts.values()] + [r for k, r in zip(keys, reports) if k in ok_texts], cache)
    rows, src_labels, new_labels = [], [], []
    for pair_id, report, key, is_short in zip(ids, reports, keys, short):
        if is_short:
            stats.skipped_short += 1
            rows.append(_row(pair_id, task, None, None, backend.name, backend.model, prompt, key, 0, 0, "skipped_short",
                             f"report has {count_words(report)} words (< rewrite.min_words = {cfg.min_words})", False))
            continue
        a = answers.get(key)
        if a is not None and a.status == "ok" and normalize_text(ok_texts[key][0]) == normalize_text(report):
            stats.unchanged += 1
            rows.append(_row(pair_id, task, None, None, backend.name, backend.model, prompt, key, a.prompt_tokens,
                             a.completion_tokens, "unchanged", "the rewrite is the source report itself", False))
        elif a is not None and a.status == "ok":
            text, truncated = ok_texts[key]
            stats.ok += 1
            stats.truncated += truncated
            src_labels.append(labels[report])
            new_labels.append(labels[text])
            stats.retention.append((pair_id, compare(report, text, task)))
            rows.append(_row(pair_id, task, text, labels[text], backend.name, backend.model, prompt, key,
                             a.prompt_tokens, a.completion_tokens, "ok", None, truncated))
        else:
            reason = a.reason if a is not None else failures[key].reason
            stats.failed += 1
            stats.reasons[_reason_kind(reason)] += 1
            pt, ct = (a.prompt_tokens, a.completion_tokens) if a is not None else (0, 0)
            rows.append(_row(pair_id, task, None, None, backend.name, backend.model, prompt, key, pt, ct, "failed",
                             reason, False))
    stats.labels = label_change_stats(src_labels, new_labels)
    return rows_frame(rows), stats


def _reason_kind(reason: str | None) -> str:
    text = re.sub(r"^after \d+ attempts: ", "", reason or "unknown")
    return text[:80]


def _request_all(backend: ChatBackend, cfg: RewriteConfig, prompt: Prompt, todo: list[str], wanted: dict[str, str],
                 cache: ResponseCache, answers: dict[str, CachedAnswer], failures: dict[str, Answer],
                 stats: TaskStats, progress: bool, tracer: Tracer | None = None,
                 requests: dict[str, tuple[list[str], str]] | None = None) -> None:
    """Ask for every key in `todo` with at most `cfg.concurrency` requests in flight."""
    abort = backend.abort
    abort.clear()
    consecutive, last_reason = 0, ""
    queue = iter(todo)
    pending: dict[Future, str] = {}
    bar = tqdm(total=len(todo), desc=f"rewrite {prompt.task}", unit="report", disable=not progress, mininterval=0.5)
    pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="rewrite")

    def submit_next() -> bool:
        key = next(queue, None)
        if key is None:
            return False
        if abort.is_set():
            failures[key] = Answer("failed", reason=f"not attempted: the run stopped after {consecutive} consecutive "
                                                    f"failures (last: {last_reason})", final=False)
            bar.update(1)
            return True
        if tracer is not None:
            pair_ids, why = (requests or {}).get(key, ([], "miss"))
            pending[pool.submit(tracer.rewrite, prompt, wanted[key], pair_ids, why)] = key
        else:
            pending[pool.submit(backend.rewrite, prompt.text, wanted[key])] = key
        return True

    try:
        for _ in range(cfg.concurrency * 2):  # a short queue keeps memory flat and aborts prompt
            if not submit_next():
                break
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                key = pending.pop(fut)
                ans = fut.result()  # FatalBackendError propagates and stops the run
                stats.requests += ans.requests
                stats.retries += ans.retries
                if ans.status == "ok" or ans.final:
                    entry = CachedAnswer(ans.status, ans.text, ans.reason, ans.prompt_tokens, ans.completion_tokens)
                    cache.put(key, entry, backend=backend.name, model=backend.model, prompt_sha=prompt.sha)
                    answers[key] = entry
                    stats.prompt_tokens += ans.prompt_tokens
                    stats.completion_tokens += ans.completion_tokens
                else:
                    failures[key] = ans
                if ans.status == "failed" and ans.transient and not abort.is_set():
                    consecutive, last_reason = consecutive + 1, ans.reason or ""
                    if consecutive >= cfg.abort_after_failures:
                        log.error("rewrite %s: %d consecutive failures (last: %s); not sending the remaining reports",
                                  prompt.task, consecutive, last_reason)
                        abort.set()
                elif ans.status == "ok" or not ans.transient:
                    consecutive = 0
                bar.update(1)
                bar.set_postfix(retries=stats.retries, failed=len(failures), refresh=False)
                while len(pending) < cfg.concurrency * 2 and submit_next():
                    pass
    except BaseException:
        abort.set()  # workers stop retrying; queued requests are cancelled below
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()


# ---------------------------------------------------------------- the stage


def run_rewrite(cfg: RewriteConfig, seed: int, pairs_path: str | Path, out_dir: str | Path,
                metrics_path: str | Path | None, *, progress: bool = True,
                registry: RegistryTarget | None = None) -> dict:
    """Rewrite the train split for every configured task (and `valid_reports` valid reports for IntraAug,
    `intra_valid`); write the manifests and metrics; return metrics.

    `registry`: the MLflow store for the Prompt Registry and the traces (None: tracking off, as offline)."""
    pairs = read_pairs(pairs_path)
    train = pairs[pairs["split"] == "train"].reset_index(drop=True)
    valid = pairs[pairs["split"] == "valid"]
    valid = valid.iloc[np.sort(np.random.default_rng(seed_from("rewrite-valid", seed)).permutation(len(valid))
                               [:cfg.valid_reports])].reset_index(drop=True)
    if cfg.limit is not None:
        train = train.head(cfg.limit)
    if train.empty:
        raise PairaugError(f"no train pairs to rewrite in {pairs_path}")
    # Before the backend: a registry URI in params that cannot be loaded fails before anything is sent.
    prompts = register_prompts(resolve_prompts(list(cfg.tasks), cfg.prompt_overrides(), registry), registry)
    backend = make_backend(cfg, seed)
    cache = ResponseCache(cache_path(cfg)) if isinstance(backend, ChatBackend) else None
    tracer = tracer_for(backend, registry, cfg.private_hosts) if isinstance(backend, ChatBackend) else None
    started = time.monotonic()
    frames: dict[str, pd.DataFrame] = {}
    task_stats: dict[str, TaskStats] = {}
    jobs = [(task, task, train) for task in cfg.tasks]
    if "intra" in cfg.tasks and not valid.empty:
        jobs.append(("intra_valid", "intra", valid))
    try:
        for name, task, source in jobs:
            if isinstance(backend, ChatBackend):
                frames[name], task_stats[name] = rewrite_llm(backend, cfg, task, source, cache, progress,
                                                             prompts[task], tracer)
            else:
                frames[name], task_stats[name] = rewrite_rules(backend, cfg, task, source, seed, progress,
                                                               prompts[task])
            s = task_stats[name]
            log.info("rewrite %s: %d ok, %d failed, %d skipped (short), %d skipped (long), %d truncated; %d requests, "
                     "%d retries, %d cache hits", name, s.ok, s.failed, s.skipped_short, s.skipped_long, s.truncated,
                     s.requests, s.retries, s.cache_hits)
    finally:
        if cache is not None:
            cache.close()
        if isinstance(backend, ChatBackend):
            backend.close()
        if tracer is not None:
            flush()
            log.info("rewrite: %d LLM request(s) traced in MLflow", tracer.traced)

    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for task, df in frames.items():
            write_parquet(df, tmp / f"{task}.parquet")
    metrics = build_metrics(cfg, backend, task_stats, prompts)
    if metrics_path is not None:
        write_json(metrics_path, metrics)
    log.info("rewrite: done in %.1f s; %d requests, %d cache hits, %d failed, est. cost $%.4f",
             time.monotonic() - started, metrics["requests"], metrics["cache_hits"], metrics["failures"],
             metrics["estimated_cost_usd"])
    if cfg.backend == "rules":
        check_retention(cfg, task_stats)
    attempted = metrics["rows"] - metrics["skipped_short"] - metrics["skipped_long"]
    if attempted and metrics["failures"] / attempted > cfg.max_failed_fraction:
        reasons = Counter()
        for s in task_stats.values():
            reasons.update(s.reasons)
        top = "; ".join(f"{n}× {r}" for r, n in reasons.most_common(3))
        raise PairaugError(
            f"rewrite: {metrics['failures']} of {attempted} reports failed (more than rewrite.max_failed_fraction = "
            f"{cfg.max_failed_fraction}): {top}. Outputs list each failure with its reason in {out_dir}; answers "
            f"received are cached, so a rerun requests only the missing reports.")
    return metrics
