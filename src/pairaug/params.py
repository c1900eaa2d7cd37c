"""params.yaml → typed, validated config objects (one dataclass per section, validated by pydantic).

Each stage reads only its own section plus the shared `seed`; `dvc.yaml` declares exactly those, so a
change reruns only the stages downstream of it. A wrong key, type or value fails with the dotted key,
and so does a top-level section no stage reads (`dataa:` would otherwise leave `data` at its defaults).

A section is a plain dataclass deriving from `Params`: pydantic validates the YAML
into it (strict types, unknown keys refused, the bounds its `Annotated` fields declare, then its cross-field
`rules()`), and writes its JSON Schema (`pairaug params schema`). Built in code, a config is not validated.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from annotated_types import Ge, Gt, Interval
from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic_core import core_schema
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
    """`data` validated by pydantic into `cls` (a `Params` dataclass); the first error as a ParamError."""
    try:
        return _adapter(cls).validate_python(data)
    except ValidationError as e:
        raise _param_error(cls, prefix, e.errors()[0]) from None


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` laid onto `base`, mappings merged key by key (a section's own defaults under the user's values)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# ------------------------------------------------------------------------------ the section models

# Bounds for `Annotated` fields (pydantic checks them and writes them into the JSON Schema).
Positive = Gt(0)  # > 0
NonNegative = Ge(0)  # >= 0
Share = Interval(ge=0.0, le=1.0)  # a fraction, a probability, a quantile
Cosine = Interval(ge=-1.0, le=1.0)


class Rule(ValueError):
    """A cross-field rule broken: `key` relative to the section (or nested config) that states the rule."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(message)


class Params:
    """The base of a params section's dataclass: pydantic validates YAML into it with strict types (no
    "3" for 3, no 1 for true), refuses unknown keys, checks the bounds of its `Annotated` fields, then runs
    `rules()` (cross-field rules: raise ParamError with a key relative to this config). Constructing the
    dataclass in code validates nothing, as before."""

    __pydantic_config__ = ConfigDict(extra="forbid", strict=True)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        schema = handler(source)
        if schema.get("type") == "dataclass":
            schema["strict"] = False  # a mapping from YAML builds it; its fields stay strict

        def after(obj: Any) -> Any:
            try:
                obj.rules()
            except ParamError as e:
                raise Rule(e.key, e.message) from None
            return obj

        return core_schema.no_info_after_validator_function(after, schema)

    def rules(self) -> None:
        """Cross-field rules, after every field is valid (none by default)."""

    def validate(self, prefix: str) -> None:
        """Check a config built in code as params.yaml's `prefix` would be (raises ParamError)."""
        from_dict(type(self), dataclasses.asdict(self), prefix)


@functools.cache
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


def json_schema(cls: type) -> dict[str, Any]:
    """The JSON Schema of a section's dataclass (what editors check params.yaml with)."""
    return _adapter(cls).json_schema()


_EXPECTED = {"int_type": "an integer", "float_type": "a number", "bool_type": "true or false", "tuple_type": "a list",
             "string_type": "a string", "list_type": "a list", "dict_type": "a mapping"}


def _param_error(cls: type, prefix: str, error: dict) -> ParamError:
    """pydantic's first error as the ParamError a user reads: the dotted key, what was wrong, the value."""
    loc, kind, value, ctx = tuple(error["loc"]), error["type"], error.get("input"), error.get("ctx") or {}
    key = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
    bounds = {n: getattr(m, n) for m in _walk(cls, loc)[1] for n in ("ge", "le") if getattr(m, n, None) is not None}
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        known = sorted(_fields(_walk(cls, loc[:-1])[0]))
        near = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean '{near[0]}'? " if near else ""
        return ParamError(key, f"unknown key ({hint}known: {', '.join(known)})")
    if kind == "value_error" and isinstance(ctx.get("error"), Rule):
        rule = ctx["error"]
        return ParamError(f"{key}.{rule.key}" if rule.key else key, rule.message)
    if kind in _EXPECTED:
        return ParamError(key, f"expected {_EXPECTED[kind]}, got {value!r}")
    if kind == "dataclass_type":
        return ParamError(key, f"expected a mapping, got {type(value).__name__}")
    if kind == "literal_error":
        return ParamError(key, f"got {value!r}, expected one of {ctx['expected'].replace(' or ', ', ')}")
    if kind in ("greater_than_equal", "less_than_equal") and "ge" in bounds and "le" in bounds:
        return ParamError(key, f"must be within [{bounds['ge']}, {bounds['le']}], got {value!r}")
    for name, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if kind.startswith(("greater", "less")) and name in ctx:
            return ParamError(key, f"must be {op} {ctx[name]}, got {value!r}")
    if kind == "multiple_of":
        return ParamError(key, f"must be a multiple of {ctx['multiple_of']}, got {value!r}")
    if kind == "finite_number":
        return ParamError(key, f"must be a finite number, got {value!r}")
    if kind == "too_short":
        return ParamError(key, "must list at least one value")
    return ParamError(key, f"{error['msg']}, got {value!r}")


def _strip(tp: Any) -> tuple[Any, list]:
    """(the type inside Annotated and Optional, the Annotated metadata)."""
    meta: list = []
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            meta += list(tp.__metadata__)
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp, meta
            tp = args[0]
        else:
            return tp, meta


def _fields(tp: Any) -> dict[str, Any]:
    return typing.get_type_hints(tp, include_extras=True) if isinstance(tp, type) and issubclass(tp, Params) else {}


def _walk(cls: type, loc: tuple) -> tuple[Any, list]:
    """(the type at `loc` inside `cls`, through nested configs, lists and mappings; its Annotated metadata)."""
    tp: Any = cls
    meta: list = []
    for part in loc:
        base, _ = _strip(tp)
        if isinstance(part, int) or typing.get_origin(base) is dict:
            args = typing.get_args(base)
            tp = args[-1] if args else Any
        else:
            tp = _fields(base).get(part, Any)
        tp, meta = _strip(tp)
    return tp, meta
