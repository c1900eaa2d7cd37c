"""`pairaug rewrite`: one report rewritten with the configured backend, as the stage would, nothing written
but the LLM cache."""

from __future__ import annotations

from pathlib import Path

from pairaug.data.labeler import label_report
from pairaug.hashing import stable_hash
from pairaug.paths import repo_root
from pairaug.rewrite.cache import CachedAnswer, ResponseCache, cache_key
from pairaug.rewrite.config import RewriteConfig
from pairaug.rewrite.registry import RegistryTarget, resolve_prompts
from pairaug.rewrite.rules import RulesRewriter
from pairaug.rewrite.run import make_backend
from pairaug.rewrite.words import limit_words


def preview_cache_path(cfg: RewriteConfig) -> Path | None:
    """The cache a preview uses: None outside a repository when the path is relative (no stray .cache/)."""
    p = Path(cfg.cache_path).expanduser()
    if p.is_absolute():
        return p
    root = repo_root()
    return root / p if (root / "dvc.yaml").exists() else None


def preview(cfg: RewriteConfig, seed: int, task: str, report: str, *, use_cache: bool = True,
            registry: RegistryTarget | None = None) -> dict:
    """Rewrite one report with the configured backend, as the stage would; nothing is written but the cache
    (`registry`: the store a `prompts:/` URI in params is loaded from; nothing is registered or traced)."""
    prompt = resolve_prompts([task], cfg.prompt_overrides(), registry)[task]
    backend = make_backend(cfg, seed)
    source_labels = label_report(report)
    out = {"task": task, "backend": backend.name, "model": backend.model, "prompt_sha": prompt.sha,
           "prompt_uri": prompt.uri,
           "source_labels": source_labels, "from_cache": False, "truncated": False, "reason": None}
    if isinstance(backend, RulesRewriter):
        pair_id = stable_hash("preview", report)
        out["cache_key"] = cache_key("rules", backend.model, task, prompt.sha, {"seed": seed, "source": pair_id}, report)
        answer = backend.rewrite(task, report, pair_id)
        text = answer.text if answer.too_long is None else None
        status, reason = ("ok", None) if answer.too_long is None else ("skipped_long", answer.too_long)
    else:
        key = cache_key(backend.name, backend.model, task, prompt.sha, backend.sampling(), report)
        out["cache_key"] = key
        path = preview_cache_path(cfg) if use_cache else None
        out["cache"] = str(path) if path is not None else None
        cache = ResponseCache(path) if path is not None else None
        try:
            hit = cache.get(key) if cache is not None else None
            if hit is not None and (hit.status == "ok" or not cfg.retry_failed):
                out["from_cache"] = True
                status, text, reason = hit.status, hit.text, hit.reason
            else:
                ans = backend.rewrite(prompt.text, report)
                status, text, reason = ans.status, ans.text, ans.reason
                if cache is not None and (ans.status == "ok" or ans.final):
                    cache.put(key, CachedAnswer(ans.status, ans.text, ans.reason, ans.prompt_tokens,
                                                ans.completion_tokens),
                              backend=backend.name, model=backend.model, prompt_sha=prompt.sha)
        finally:
            if cache is not None:
                cache.close()
            backend.close()
    out["status"] = status
    out["reason"] = reason
    if status == "ok" and text is not None:
        text, out["truncated"] = limit_words(text, cfg.max_words)
        out["report_new"] = text
        out["labels"] = label_report(text)
    else:
        out["report_new"] = None
        out["labels"] = None
    return out
