"""A local OpenAI-compatible chat-completions server with a scripted fault plan, for the rewrite tests.

It speaks the real protocol (POST /v1/chat/completions, and Azure's
/openai/deployments/<name>/chat/completions), so the tests drive the backends through the real
`openai` SDK. Per report (the user message) a plan lists the actions to take on successive
requests; once the list runs out the server answers normally:

  ok          a valid chat completion            429         rate limited, with Retry-After
  500         internal server error              timeout     sleep past the client's timeout
  malformed   200 with a body that is not JSON   empty       200 with an empty `choices` list
  blank       200 with empty message content     400         a rejected request
  drop        close the connection, no answer

`stop_after_ok=n` makes the server go down (drop every connection, refuse new ones) once it has
sent n good answers. Run as a script it serves until killed (`--latency` seconds per request),
printing its port, for the benchmarks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def default_answer(system: str, report: str) -> str:
    if "LONG" in report:  # an over-long answer, to exercise the word limit
        return " ".join(["FINDINGS: There is a small left pleural effusion."] * 12) + " IMPRESSION: Effusion."
    return "FINDINGS: Small left pleural effusion. Heart size is normal. IMPRESSION: Left pleural effusion."


@dataclass
class Seen:
    path: str
    report: str
    system: str
    body: dict
    action: str
    auth: str | None
    api_key: str | None
    at: float


@dataclass
class FakeLLM:
    plan: dict[str, list[str]] = field(default_factory=dict)
    latency: float = 0.0
    timeout_sleep: float = 1.5
    retry_after: str = "1"
    stop_after_ok: int | None = None
    answer: Callable[[str, str], str] = default_answer
    seen: list[Seen] = field(default_factory=list)
    ok_counts: Counter = field(default_factory=Counter)
    down: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._plan = {k: list(v) for k, v in self.plan.items()}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else delayed ACKs add ~40 ms to every keep-alive request

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                fake._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeLLM:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.down = True
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if not self._server.socket.fileno() < 0:
            self.stop()

    def requests_for(self, report: str) -> list[Seen]:
        return [s for s in self.seen if s.report == report]

    # ------------------------------------------------------------ one request

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        if self.down:
            return self._drop(h)
        if not h.path.split("?")[0].endswith("/chat/completions"):
            return self._send(h, 404, {"error": {"message": "not found"}})
        body = json.loads(h.rfile.read(int(h.headers.get("Content-Length", 0))) or b"{}")
        messages = body.get("messages", [])
        system = next((m["content"] for m in messages if m.get("role") == "system"), "")
        report = next((m["content"] for m in messages if m.get("role") == "user"), "")
        with self._lock:
            steps = self._plan.get(report)
            action = steps.pop(0) if steps else "ok"
            self.seen.append(Seen(h.path, report, system, body, action, h.headers.get("Authorization"),
                                  h.headers.get("api-key"), time.monotonic()))
        if self.latency:
            time.sleep(self.latency)
        if action == "ok":
            if not self._reserve_ok(report):
                return self._drop(h)
            self._send(h, 200, self._completion(body, self.answer(system, report)))
        elif action == "429":
            self._send(h, 429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                       {"Retry-After": self.retry_after})
        elif action == "500":
            self._send(h, 500, {"error": {"message": "boom", "type": "server_error"}})
        elif action == "400":
            self._send(h, 400, {"error": {"message": "context length exceeded", "type": "invalid_request_error"}})
        elif action == "timeout":
            time.sleep(self.timeout_sleep)
            self._send(h, 200, self._completion(body, self.answer(system, report)))
        elif action == "malformed":
            self._send_raw(h, 200, b'{"id": "x", "choices": [', "application/json")
        elif action == "empty":
            self._send(h, 200, {**self._completion(body, ""), "choices": []})
        elif action == "blank":
            self._send(h, 200, self._completion(body, "   "))
        elif action == "drop":
            self._drop(h)
        else:
            raise ValueError(f"unknown action {action}")

    def _reserve_ok(self, report: str) -> bool:
        """Count one good answer before sending it; False once the server has gone down."""
        with self._lock:
            if self.down:
                return False
            self.ok_counts[report] += 1
            if self.stop_after_ok is not None and sum(self.ok_counts.values()) >= self.stop_after_ok:
                self.down = True
                threading.Thread(target=self.stop, daemon=True).start()
            return True

    @staticmethod
    def _completion(body: dict, content: str) -> dict:
        return {
            "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70},
        }

    def _send(self, h: BaseHTTPRequestHandler, code: int, payload: dict, headers: dict | None = None) -> None:
        self._send_raw(h, code, json.dumps(payload).encode(), "application/json", headers)

    @staticmethod
    def _send_raw(h: BaseHTTPRequestHandler, code: int, data: bytes, ctype: str, headers: dict | None = None) -> None:
        try:
            h.send_response(code)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        except OSError:
            h.close_connection = True  # the client gave up (timeout): nothing to do

    @staticmethod
    def _drop(h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        with contextlib.suppress(OSError):
            h.connection.shutdown(socket.SHUT_RDWR)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--latency", type=float, default=0.0)
    args = ap.parse_args()
    fake = FakeLLM(latency=args.latency).start()
    print(fake.port, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
