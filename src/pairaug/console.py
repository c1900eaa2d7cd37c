"""Text from the command line and standard input, whatever bytes a user's terminal sends."""

from __future__ import annotations

import sys


def read_stdin_text() -> str:
    """Standard input as text whatever its encoding: bytes that are not UTF-8 become U+FFFD (�)."""
    return sys.stdin.buffer.read().decode("utf-8", errors="replace")


def clean_arg(text: str) -> str:
    """A command-line argument with undecodable bytes (surrogate escapes such as \\udce9) as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
