"""Jinja2 templates, kept under the package that owns them (`<package>/templates/`), Markdown and HTML
alike, as `review/` renders its pages.

Block tags on a line of their own leave no blank line (trim_blocks, lstrip_blocks), and a template's last
newline is kept, so a template reads as the file it writes. Nothing is escaped unless a template says so
(`|html`: html.escape, the entity forms the reports' pages have always used): Markdown must not be escaped.
"""

from __future__ import annotations

import functools
import html
from typing import Any

import jinja2


@functools.cache
def environment(package: str) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader(package, "templates"), autoescape=False,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["html"] = html.escape
    return env


def render(package: str, name: str, /, filters: dict[str, Any] | None = None, **context: Any) -> str:
    """`<package>/templates/<name>` rendered with `context`; `filters`: the package's own formatting filters."""
    env = environment(package)
    env.filters.update(filters or {})
    return env.get_template(name).render(**context)
