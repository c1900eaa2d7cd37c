"""params.schema.json: the JSON Schema of params.yaml, made by pydantic from every section's dataclass.

params.yaml's first line points editors at it (`# yaml-language-server: $schema=params.schema.json`), so
an editor completes keys and flags a wrong type, bound or unknown key as the stages would. Regenerate it
with `pairaug params schema` after changing a config; tests/test_params_schema.py checks it is current.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

from annotated_types import MinLen

from pairaug.data.prepare import DataConfig
from pairaug.evaluate.run import EvaluateConfig
from pairaug.generate.config import IntraConfig, SamplingConfig
from pairaug.io import atomic_path
from pairaug.launch import LaunchConfig
from pairaug.params import SECTIONS, NonNegative, Params, json_schema
from pairaug.prune.config import PruneConfig
from pairaug.quality.gate import ValidateConfig
from pairaug.quality.privacy import PrivacyConfig
from pairaug.report.ablation import ReportConfig
from pairaug.rewrite.config import RewriteConfig
from pairaug.tracking.store import TrackingConfig
from pairaug.train.generator import GeneratorConfig
from pairaug.train.pretrain import PretrainConfig
from pairaug.train.scorer import ScorerConfig

SCHEMA_FILE = "params.schema.json"

# Each top-level key of params.yaml and what validates it (the `pool` section is a `data` source).
SECTION_TYPES: dict[str, Any] = {
    "seed": int, "replicates": Annotated[list[Annotated[int, NonNegative]], MinLen(1)],
    "launch": LaunchConfig, "data": DataConfig, "pool": DataConfig, "rewrite": RewriteConfig,
    "scorer": ScorerConfig, "generator": GeneratorConfig, "generate": SamplingConfig, "intra": IntraConfig,
    "prune": PruneConfig, "privacy": PrivacyConfig, "validate": ValidateConfig, "pretrain": PretrainConfig,
    "tracking": TrackingConfig, "evaluate": EvaluateConfig, "report": ReportConfig,
}
assert list(SECTION_TYPES) == list(SECTIONS), "SECTION_TYPES follows pairaug.params.SECTIONS"

_DEFAULTS: dict[str, Any] = {"seed": lambda: 0, "replicates": lambda: [0]}


def _file_type() -> type:
    """params.yaml as one dataclass: a field per section (pydantic names the nested models uniquely)."""
    fields = [(name, tp, dataclasses.field(default_factory=_DEFAULTS.get(name, tp))) for name, tp in SECTION_TYPES.items()]
    return dataclasses.make_dataclass("ParamsFile", fields, bases=(Params,))


def params_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of params.yaml."""
    schema = json_schema(_file_type())
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": "pairaug params.yaml",
            "description": "One section per stage; see docs/ and each section's config class in src/pairaug."}


def write_schema(path: str | Path = SCHEMA_FILE) -> Path:
    """Write the schema to `path` atomically (sorted keys, so a regenerated file diffs cleanly)."""
    import json

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(params_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return Path(path)
