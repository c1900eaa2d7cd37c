"""LLM backends through the official `openai` SDK: OpenAI or any OpenAI-compatible server, and Azure.

The SDK's own retries are off (`max_retries=0`); `ChatBackend.rewrite` retries 408/409/429/5xx,
timeouts, connection errors and malformed or empty answers itself, with exponential backoff and
jitter, honouring `Retry-After` / `retry-after-ms`, so every retry is counted and bounded. The
request follows the paper: the instruction as the system message, the report as the user message,
temperature / max_tokens / top_p from params, n = 1.

The API key is read from the environment variable named in params, handed to the SDK, and kept out
of everything else: error reasons are scrubbed of it and a logging filter redacts it.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pairaug.errors import PairaugError
from pairaug.rewrite.config import RewriteConfig
from pairaug.rewrite.guard import check_destination, is_listed, is_loopback

log = logging.getLogger("pairaug.rewrite")

_RETRY_STATUS = {408, 409, 429}
_FATAL_STATUS = {401, 403, 404}
_MAX_RETRY_AFTER_S = 600.0
_PLACEHOLDER_KEY = "EMPTY"  # what vLLM / llama.cpp / Ollama accept when they run without a key


class FatalBackendError(PairaugError):
    """The server refuses every request (bad key, no access, unknown model): stop the run."""


@dataclass
class Answer:
    """The outcome of one report: ok with text, or failed with a reason; plus what it cost."""

    status: str  # ok | failed
    text: str | None = None
    reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    retries: int = 0
    final: bool = True  # False: failed for a passing reason (server down, rate limit): never cached
    transient: bool = False  # the failure says the server is unreachable or overloaded


@dataclass
class _Attempt:
    kind: str  # transient | bad_answer | rejected
    reason: str
    retry_after: float | None = None


# (attempt number, the call making the request, the messages sent) -> the call's result
AttemptHook = Callable[[int, Callable[[], "Answer | _Attempt"], list[dict]], "Answer | _Attempt"]


@dataclass
class _Redactor(logging.Filter):
    secrets: list[str] = field(default_factory=list)

    def scrub(self, text: str) -> str:
        for s in self.secrets:
            if s:
                text = text.replace(s, "<redacted>")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            try:
                message = record.getMessage()
            except Exception:  # a record that cannot format is left to logging's own handling
                return True
            clean = self.scrub(message)
            if clean != message:
                record.msg, record.args = clean, None
        return True


_REDACTOR = _Redactor()


def _install_redactor(secret: str) -> None:
    """Redact `secret` from every log record of the SDK, its HTTP stack and the root handlers; quiet the
    HTTP stack's per-request INFO lines unless the user configured those loggers."""
    if secret and secret not in _REDACTOR.secrets:
        _REDACTOR.secrets.append(secret)
    for name in ("openai", "httpx", "httpx2", "httpcore", "pairaug"):
        logger = logging.getLogger(name)
        if _REDACTOR not in logger.filters:
            logger.addFilter(_REDACTOR)
    for name in ("httpx", "httpx2"):  # one INFO line per request would bury the progress bar
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        if _REDACTOR not in handler.filters:
            handler.addFilter(_REDACTOR)


class ChatBackend:
    """`rewrite.backend: openai | azure` — one chat completion per report."""

    def __init__(self, cfg: RewriteConfig, *, abort: threading.Event | None = None):
        import openai  # imported here: the rules backend and the CLI start without it

        self._openai = openai
        self.cfg = cfg
        self.name = cfg.backend
        self.abort = abort or threading.Event()
        if cfg.backend == "openai":
            url, param, env = cfg.openai.base_url, "rewrite.openai.base_url", cfg.openai.api_key_env
            self.model = cfg.openai.model
        elif cfg.backend == "azure":
            url, param, env = cfg.azure.endpoint, "rewrite.azure.endpoint", cfg.azure.api_key_env
            self.model = cfg.azure.deployment
        else:
            raise ValueError(f"not an LLM backend: {cfg.backend}")
        # The guard runs before a client exists: nothing can be sent anywhere it refuses.
        host = check_destination(url, allow_external=cfg.allow_external, private_hosts=cfg.private_hosts, param=param)
        self.url, self.host = url, host
        self.address = _address(url, host)
        key = os.environ.get(env, "")
        if not key:
            if not (is_loopback(host) or is_listed(host, cfg.private_hosts)):
                raise PairaugError(f"rewrite.backend {cfg.backend} needs an API key for {host}: set the environment "
                                   f"variable {env} (named by rewrite.{cfg.backend}.api_key_env)")
            key = _PLACEHOLDER_KEY
        self.key_env = env
        self._key = key
        _install_redactor(key if key != _PLACEHOLDER_KEY else "")
        # No redirects: a redirect could carry the reports to a host the guard never saw.
        http_client = openai.DefaultHttpxClient(follow_redirects=False)
        common = dict(api_key=key, max_retries=0, timeout=cfg.timeout_s, http_client=http_client)
        if cfg.backend == "openai":
            self.client = openai.OpenAI(base_url=url, **common)
        else:
            self.client = openai.AzureOpenAI(azure_endpoint=url, azure_deployment=cfg.azure.deployment,
                                             api_version=cfg.azure.api_version, **common)

    def sampling(self) -> dict:
        s = self.cfg.sampling
        return {"temperature": s.temperature, "max_tokens": s.max_tokens, "top_p": s.top_p, "n": 1}

    def describe(self) -> str:
        return f"{self.name} model {self.model} at {self.host}"

    # ------------------------------------------------------------ one report

    def rewrite(self, instruction: str, report: str, once: AttemptHook | None = None) -> Answer:
        """Rewrite one report, retrying what is worth retrying; never raises for a per-report failure.

        `once(attempt, call, messages)`, when given, makes each attempt (`call()`) and returns its result:
        the tracer (pairaug.rewrite.traces) records it as a span."""
        cfg = self.cfg
        out = Answer("failed")
        for attempt in range(cfg.max_retries + 1):
            if self.abort.is_set():
                out.reason = out.reason or "not attempted: the run was aborted"
                out.final = False
                out.transient = True
                return out
            out.requests += 1
            if once is None:
                result = self._once(instruction, report)
            else:
                result = once(attempt + 1, lambda: self._once(instruction, report), self.messages(instruction, report))
            if isinstance(result, Answer):
                result.requests, result.retries = out.requests, out.retries
                return result
            out.reason = result.reason
            out.transient = result.kind == "transient"
            out.final = result.kind != "transient"
            if result.kind == "rejected" or attempt == cfg.max_retries:
                break
            out.retries += 1
            if result.retry_after is not None:
                delay = min(result.retry_after, _MAX_RETRY_AFTER_S)
            else:  # exponential backoff with jitter, so many workers do not retry in lockstep
                delay = min(cfg.max_backoff_s, cfg.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)
            if self.abort.wait(delay):
                continue  # the loop top reports the abort
        if out.retries and out.reason and not out.reason.startswith("after"):
            out.reason = f"after {out.requests} attempts: {out.reason}"
        return out

    @staticmethod
    def messages(instruction: str, report: str) -> list[dict]:
        """The paper's request: the instruction as the system message, the report as the user message."""
        return [{"role": "system", "content": instruction}, {"role": "user", "content": report}]

    def _once(self, instruction: str, report: str) -> Answer | _Attempt:
        openai = self._openai
        s = self.cfg.sampling
        try:
            resp = self.client.chat.completions.create(
                model=self.model,
                messages=self.messages(instruction, report),
                temperature=s.temperature, max_tokens=s.max_tokens, top_p=s.top_p, n=1,
            )
        except openai.APITimeoutError:
            return _Attempt("transient", f"timeout after {self.cfg.timeout_s:g} s")
        except openai.APIConnectionError as e:
            return _Attempt("transient", self._scrub(f"connection error: cannot reach {self.address} ({e})"))
        except openai.APIStatusError as e:
            code = e.status_code
            detail = self._scrub(_short(getattr(e, "message", "") or str(e)))
            if code in _FATAL_STATUS:
                raise FatalBackendError(
                    f"{self.describe()} refused the request with HTTP {code} ({detail}); check the model / "
                    f"deployment name and the key in the environment variable {self.key_env}") from None
            if code in _RETRY_STATUS or code >= 500:
                return _Attempt("transient", f"HTTP {code}: {detail}", _retry_after(e.response))
            return _Attempt("rejected", f"HTTP {code}: {detail}")
        except (ValueError, TypeError, AttributeError, KeyError) as e:  # undecodable body (JSON, schema)
            return _Attempt("bad_answer", self._scrub(f"malformed response: {type(e).__name__}: {_short(str(e))}"))
        return self._read(resp)

    def _read(self, resp: object) -> Answer | _Attempt:
        choices = getattr(resp, "choices", None)
        if not isinstance(choices, list):
            return _Attempt("bad_answer", f"malformed response: not a chat completion ({_short(repr(resp))})")
        if not choices:
            return _Attempt("bad_answer", "empty answer: no choices")
        choice = choices[0]
        if getattr(choice, "finish_reason", None) == "content_filter":
            return _Attempt("rejected", "refused by the provider's content filter")
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None)
        if not isinstance(content, str):
            return _Attempt("bad_answer", "empty answer: no message content")
        text = clean_answer(content)
        if not text:
            return _Attempt("bad_answer", "empty answer: blank message content")
        usage = getattr(resp, "usage", None)
        return Answer("ok", text=text, prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                      completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0))

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "<redacted>") if self._key != _PLACEHOLDER_KEY else text

    def close(self) -> None:
        self.client.close()


def clean_answer(content: str) -> str:
    """The report text of an answer: whitespace collapsed, wrapping quotes and code fences removed."""
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`").strip()
        if "\n" in text and text.split("\n", 1)[0].strip().isalpha():
            text = text.split("\n", 1)[1]  # a language tag on the fence line
    text = " ".join(text.split())
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def _retry_after(response: object) -> float | None:
    """Seconds to wait per the response's `retry-after-ms` or `Retry-After` (seconds or HTTP date)."""
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _address(url: str, host: str) -> str:
    """host:port of `url` ("127.0.0.1:8000"); the scheme's default port when none is given."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url if "://" in url else f"//{url}")
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme or "https", 443)
    except ValueError:
        port = None
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port else shown


def _short(text: str, n: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"
