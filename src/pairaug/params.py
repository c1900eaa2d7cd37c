"""params.yaml → typed, validated config objects (one dataclass per section).

Each stage reads only its own section plus the shared `seed`; `dvc.yaml` declares exactly those, so a
change reruns only the stages downstream of it. A wrong key, type or value fails with the dotted key,
and so does a top-level section no stage reads (`dataa:` would otherwise leave `data` at its defaults).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from pairaug.errors import ParamError

T = TypeVar("T")

# Every top-level key params.yaml may hold: `seed` and one section per concern. The one list, checked
# by `load_params` for every stage and CLI; `section` only reads names from it, and a test keeps it equal
# to params.yaml's keys and to what dvc.yaml declares.
SECTIONS: tuple[str, ...] = (
    "seed", "replicates", "launch", "data", "pool", "rewrite", "scorer", "generator", "generate", "intra", "prune", "privacy",
    "validate", "pretrain", "tracking", "evaluate", "report",
)


def read_yaml(text: str) -> Any:
    """params.yaml text as DVC reads and writes it: YAML 1.2, so `no`/`on` stay strings after `dvc exp run -S`
    writes a value back unquoted (PyYAML's YAML 1.1 would turn `mixed_precision: no` into false)."""
    return YAML(typ="safe", pure=True).load(text)


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ParamError(str(path), "file not found (run from the repository root)")
    try:
        data = read_yaml(path.read_text()) or {}
    except YAMLError as e:
        raise ParamError(str(path), f"not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ParamError(str(path), "must be a mapping of sections")
    for key in data:
        if key not in SECTIONS:
            near = difflib.get_close_matches(str(key), SECTIONS, n=1)
            hint = f"did you mean '{near[0]}'? " if near else ""
            raise ParamError(str(key), f"unknown section ({hint}known: {', '.join(SECTIONS)})")
    return data


def replicates(params: dict[str, Any]) -> list[int]:
    """The replicate seeds (`replicates`): everything the method draws is drawn once per entry, on the same
    data and priors (`seed`); a distinct non-negative integer each, at least one."""
    value = params.get("replicates", [0])
    if not isinstance(value, list) or not value:
        raise ParamError("replicates", f"must be a non-empty list of integers, got {value!r}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ParamError("replicates", f"must hold non-negative integers, got {v!r}")
    if len(set(value)) != len(value):
        raise ParamError("replicates", f"lists a seed twice: {value!r}")
    return list(value)


def section(cls: type[T], params: dict[str, Any], name: str) -> T:
    """Build the config dataclass `cls` from `params[name]`, naming the key on any error."""
    if name not in SECTIONS:  # a programming error: a new section goes into SECTIONS (and params.yaml)
        raise ValueError(f"{name!r} is not in pairaug.params.SECTIONS")
    return from_dict(cls, params.get(name) or {}, name)


def from_dict(cls: type[T], data: Any, prefix: str) -> T:
    if not isinstance(data, dict):
        raise ParamError(prefix, f"expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ParamError(f"{prefix}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(fields))})")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{prefix}.{name}")
    try:
        obj = cls(**kwargs)
    except TypeError as e:
        raise ParamError(prefix, str(e)) from None
    check = getattr(obj, "validate", None)
    if check is not None:
        check(prefix)
    return obj


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except ParamError as e:
                errors.append(str(e))
        raise ParamError(key, f"got {value!r}, expected {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ParamError(key, f"got {value!r}, expected one of {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ParamError(key, f"expected a list, got {value!r}")
        inner = args[0] if args else Any
        return [_coerce(inner, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamError(key, f"expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {k: _coerce(vt, v, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamError(key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(key, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamError(key, f"expected a string, got {value!r}")
        return value
    return value


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` laid onto `base`, mappings merged key by key (a section's own defaults under the user's values)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def positive(prefix: str, **values: float) -> None:
    """Raise ParamError for the first value that is not > 0."""
    for name, v in values.items():
        if v is None or v <= 0:
            raise ParamError(f"{prefix}.{name}", f"must be > 0, got {v!r}")


def in_range(prefix: str, name: str, value: float, lo: float, hi: float) -> None:
    if not (lo <= value <= hi):
        raise ParamError(f"{prefix}.{name}", f"must be within [{lo}, {hi}], got {value!r}")
