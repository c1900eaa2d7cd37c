"""Each LLM request of the rewrite stage as an MLflow trace, where the store may hold patient reports.

One trace per request sent (a report not answered by the cache): a root span `rewrite <task>` with the
report in, the rewrite (or the failure) out, and as attributes the backend, model, prompt URI and hash,
the source pair ids, cache `miss`, requests, retries, latency and status; one `chat.completions` child span
per attempt with the request as sent, the answer or the error, and the token usage (MLflow sums it into
the trace's). The trace is linked to its prompt version (`mlflow.genai.load_prompt` inside the span) and
tagged `pair_id`, `task`, `status`, `prompt_uri`, so `tags.pair_id = '<id>'` finds the call behind a row.
Cached answers make no trace: nothing was asked.

Reports are patient data: traces go only to a store the privacy guard would let the reports go to — a
local store (SQLite, file), or a server or database whose host is loopback or listed in
`rewrite.private_hosts`. `rewrite.allow_external` (a data use agreement for the LLM) does not extend to
the tracking store. Anywhere else tracing is off and the stage says so once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from pairaug.net import is_loopback
from pairaug.rewrite.guard import is_listed
from pairaug.rewrite.llm import Answer, ChatBackend
from pairaug.rewrite.prompts import Prompt
from pairaug.rewrite.registry import RegistryTarget, activate

log = logging.getLogger("pairaug.rewrite")

_LOCAL_SCHEMES = ("sqlite", "file")
_DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")


def store_is_private(uri: str, private_hosts: list[str]) -> tuple[bool, str]:
    """(whether a tracking store at `uri` may hold reports, where it is in words)."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme in ("databricks", "databricks-uc", "uc"):
        return False, scheme
    if "://" not in uri or scheme in _LOCAL_SCHEMES:  # a folder path (MLflow's file store), SQLite, file:
        return True, "a local store"
    if scheme in ("http", "https", *_DATABASE_SCHEMES):
        try:
            host = (urlsplit(uri).hostname or "").lower().rstrip(".")
        except ValueError:
            host = ""
        if not host:
            # a database on a local socket (postgresql:///db): the host is this machine
            return scheme in _DATABASE_SCHEMES, "a database on this machine" if scheme in _DATABASE_SCHEMES else uri
        if is_loopback(host) or is_listed(host, private_hosts):
            return True, host
        return False, host
    return False, scheme or uri


def tracer_for(backend: ChatBackend, target: RegistryTarget | None, private_hosts: list[str]) -> Tracer | None:
    """A Tracer when tracing is asked for and the store may hold reports; else None (said once)."""
    if target is None or not target.trace:
        return None
    private, where = store_is_private(target.uri, private_hosts)
    if not private:
        log.warning("rewrite: LLM calls are not traced: the tracking store's host %s is not a loopback address and "
                    "not listed in rewrite.private_hosts, and traces would carry the reports (patient data). List "
                    "it there if it is your own server, or set tracking.trace_rewrites: false to silence this.", where)
        return None
    activate(target)
    return Tracer(backend, target.experiment_id)


class Tracer:
    """Wraps `ChatBackend.rewrite` in one trace per request (see the module doc)."""

    def __init__(self, backend: ChatBackend, experiment_id: str | None):
        self.backend = backend
        self.experiment_id = experiment_id
        self.traced = 0

    def rewrite(self, prompt: Prompt, report: str, pair_ids: list[str], cache: str = "miss") -> Answer:
        """`backend.rewrite(prompt.text, report)`, traced."""
        import mlflow
        from mlflow.entities import SpanType
        from mlflow.entities.trace_location import MlflowExperimentLocation

        b = self.backend
        where = MlflowExperimentLocation(self.experiment_id) if self.experiment_id else None
        with mlflow.start_span(f"rewrite {prompt.task}", span_type=SpanType.CHAIN, trace_destination=where) as span:
            if prompt.uri:
                try:  # links this trace to the prompt version (a cached lookup after the first)
                    mlflow.genai.load_prompt(prompt.uri, link_to_model=False)
                except Exception as e:  # noqa: BLE001 - a missing link must not fail the request
                    log.debug("rewrite: prompt %s not linked to the trace: %s", prompt.uri, e)
            tags = {"task": prompt.task, "pair_id": pair_ids[0] if pair_ids else "", "backend": b.name,
                    "model": b.model, "prompt_sha": prompt.sha, "cache": cache}
            if prompt.uri:
                tags["prompt_uri"] = prompt.uri
            mlflow.update_current_trace(tags=tags)
            span.set_inputs({"report": report, "pair_ids": pair_ids})
            started = time.monotonic()
            answer = b.rewrite(prompt.text, report, once=self._attempt)
            latency_ms = round((time.monotonic() - started) * 1000, 1)
            span.set_attributes({"backend": b.name, "model": b.model, "task": prompt.task, "prompt_sha": prompt.sha,
                                 "prompt_uri": prompt.uri or "", "pair_ids": pair_ids, "cache": cache,
                                 "requests": answer.requests, "retries": answer.retries, "status": answer.status,
                                 "latency_ms": latency_ms, "prompt_tokens": answer.prompt_tokens,
                                 "completion_tokens": answer.completion_tokens})
            mlflow.update_current_trace(tags={"status": answer.status})
            if answer.status == "ok":
                span.set_outputs({"report_new": answer.text})
            else:
                span.set_attribute("reason", answer.reason or "")
                span.set_outputs({"error": answer.reason})
                span.set_status("ERROR")
        self.traced += 1
        return answer

    def _attempt(self, attempt: int, call: Callable[[], object], messages: list[dict]) -> object:
        """One request to the server as a child span: the request, the answer or error, the tokens."""
        import mlflow
        from mlflow.entities import SpanType
        from mlflow.tracing.constant import SpanAttributeKey

        b = self.backend
        with mlflow.start_span("chat.completions", span_type=SpanType.CHAT_MODEL) as span:
            span.set_inputs({"model": b.model, "messages": messages, **b.sampling()})
            span.set_attributes({"attempt": attempt, SpanAttributeKey.MODEL: b.model})
            result = call()
            if isinstance(result, Answer):
                span.set_outputs({"content": result.text})
                span.set_attribute(SpanAttributeKey.CHAT_USAGE, {
                    "input_tokens": result.prompt_tokens, "output_tokens": result.completion_tokens,
                    "total_tokens": result.prompt_tokens + result.completion_tokens})
            else:
                span.set_attributes({"outcome": result.kind, "reason": result.reason})
                span.set_outputs({"error": result.reason})
                span.set_status("ERROR")
        return result


def flush() -> None:
    """Write the traces still queued (MLflow exports them in the background)."""
    import mlflow

    mlflow.flush_trace_async_logging()
