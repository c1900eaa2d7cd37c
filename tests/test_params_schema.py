"""params.schema.json: the JSON Schema editors check params.yaml with (its first line points at it)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from pairaug.cli import main
from pairaug.params import read_yaml
from pairaug.params_schema import SCHEMA_FILE, params_schema

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"


@pytest.fixture(scope="module")
def schema() -> dict:
    return params_schema()


def validator(schema: dict) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_params_yaml_points_editors_at_the_committed_schema(schema) -> None:
    assert PARAMS.read_text().splitlines()[0] == f"# yaml-language-server: $schema={SCHEMA_FILE}"
    # the committed file is what the configs give now (`pairaug params schema` rewrites it)
    assert json.loads((REPO / SCHEMA_FILE).read_text()) == schema


def test_the_schema_validates_params_yaml(schema) -> None:
    params = read_yaml(PARAMS.read_text())  # as DVC and the stages read it: YAML 1.2
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(schema).iter_errors(params)]
    assert not errors, errors
    assert set(schema["properties"]) == set(params)


@pytest.mark.parametrize(("section", "patch", "where"), [
    ("prune", {"intra_rank": "best"}, ["prune", "intra_rank"]),
    ("prune", {"intra_min_change_read": 2}, ["prune", "intra_min_change_read"]),
    ("generate", {"sampler": "ddim"}, ["generate"]),  # an unknown key
    ("generate", {"steps": 0}, ["generate", "steps"]),
    ("data", {"image_size": 30}, ["data", "image_size"]),
    ("rewrite", {"sampling": {"temperature": "hot"}}, ["rewrite", "sampling", "temperature"]),
    ("launch", {"mixed_precision": "fp8"}, ["launch", "mixed_precision"]),
])
def test_the_schema_flags_what_the_stages_refuse(schema, section, patch, where) -> None:
    params = read_yaml(PARAMS.read_text())
    params[section] = {**(params.get(section) or {}), **patch}
    errors = list(validator(schema).iter_errors(params))
    assert [list(e.absolute_path) for e in errors] == [where], [e.message for e in errors]


def test_unknown_sections_are_flagged(schema) -> None:
    params = {**read_yaml(PARAMS.read_text()), "genrate": {"steps": 3}}
    assert [e.validator for e in validator(schema).iter_errors(params)] == ["additionalProperties"]


def test_pairaug_params_schema_writes_the_file(tmp_path: Path, capsys) -> None:
    out = tmp_path / "schema.json"
    assert main(["params", "schema", "--out", str(out)]) == 0
    assert out.read_text() == (REPO / SCHEMA_FILE).read_text()
    assert str(out) in capsys.readouterr().out


def test_every_section_of_params_yaml_loads_as_the_stages_load_it() -> None:
    """The schema is JSON's view (a tuple is an array); the stages go through `section`, which must agree."""
    import dataclasses

    from pairaug.params import load_params, section
    from pairaug.params_schema import SECTION_TYPES

    params = load_params(PARAMS)
    for name, tp in SECTION_TYPES.items():
        if dataclasses.is_dataclass(tp):
            assert isinstance(section(tp, params, name), tp), name
