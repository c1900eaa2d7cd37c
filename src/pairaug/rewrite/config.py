"""`rewrite:` in params.yaml → a typed, validated RewriteConfig."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Literal

from annotated_types import Interval, MinLen

from pairaug.errors import ParamError
from pairaug.params import NonNegative, Params, Positive, Share
from pairaug.rewrite.prompts import TASKS, Task

Backend = Literal["rules", "openai", "azure"]
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class PromptsConfig(Params):
    """Instruction overrides; null keeps the default text (see pairaug.rewrite.prompts)."""

    inter: str | None = None
    intra: str | None = None
    paraphrase: str | None = None

    def rules(self) -> None:
        for task in TASKS:
            text = getattr(self, task)
            if text is not None and not text.strip():
                raise ParamError(task, "is empty (use null for the default prompt)")


@dataclass
class OpenAIConfig(Params):
    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-3.5-turbo"
    api_key_env: str = "OPENAI_API_KEY"  # the NAME of the environment variable holding the key

    def rules(self) -> None:
        _check_env_name("api_key_env", self.api_key_env)


@dataclass
class AzureConfig(Params):
    endpoint: str = ""  # https://<resource>.openai.azure.com
    deployment: str = ""
    api_version: str = "2024-10-21"
    api_key_env: str = "AZURE_OPENAI_API_KEY"

    def rules(self) -> None:
        _check_env_name("api_key_env", self.api_key_env)


@dataclass
class SamplingConfig(Params):
    temperature: Annotated[float, Interval(ge=0.0, le=2.0)] = 0.5
    max_tokens: Annotated[int, Positive] = 300
    top_p: Annotated[float, Share] = 1.0


@dataclass
class PriceConfig(Params):
    """USD per 1,000 tokens, for the cost estimate in metrics/rewrite.json."""

    prompt_per_1k: Annotated[float, NonNegative] = 0.0005
    completion_per_1k: Annotated[float, NonNegative] = 0.0015


@dataclass
class RewriteConfig(Params):
    backend: Backend = "rules"
    tasks: Annotated[list[Task], MinLen(1)] = field(default_factory=lambda: list(TASKS))
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    azure: AzureConfig = field(default_factory=AzureConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    price: PriceConfig = field(default_factory=PriceConfig)
    allow_external: bool = False
    private_hosts: list[str] = field(default_factory=list)
    max_words: Annotated[int, Positive] = 50
    min_words: Annotated[int, NonNegative] = 8
    limit: Annotated[int, Positive] | None = None  # rewrite only the first N train reports (quick, cheap trials)
    # IntraAug rewrites of this many valid reports (a seeded sample): the edits intra-sweep chooses the
    # edit settings on, so no tuned choice sees a train or test film (0: none, intra-sweep then fails)
    valid_reports: Annotated[int, NonNegative] = 32
    concurrency: Annotated[int, Positive] = 8
    timeout_s: Annotated[float, Positive] = 60.0
    max_retries: Annotated[int, NonNegative] = 5
    backoff_s: Annotated[float, NonNegative] = 1.0
    max_backoff_s: Annotated[float, Positive] = 60.0
    abort_after_failures: Annotated[int, Positive] = 20
    max_failed_fraction: Annotated[float, Share] = 0.01
    # The least share of the source the rules backend must keep (metrics/rewrite.json: retention_mean
    # per task); below it the stage fails naming the reports. LLM rewrites are measured, not held to it.
    min_retention: Annotated[float, Share] = 0.8
    retry_failed: bool = False
    cache_path: str = ".cache/rewrite.sqlite"

    def rules(self) -> None:
        if len(set(self.tasks)) != len(self.tasks):
            raise ParamError("tasks", f"duplicate task in {self.tasks}")
        if self.backend == "openai" and not self.openai.model:
            raise ParamError("openai.model", "is empty")
        if self.backend == "azure":
            for name in ("endpoint", "deployment", "api_version"):
                if not getattr(self.azure, name):
                    raise ParamError(f"azure.{name}", "is empty (needed by backend: azure)")

    def prompt_overrides(self) -> dict[str, str | None]:
        return {task: getattr(self.prompts, task) for task in TASKS}


def _check_env_name(key: str, value: str) -> None:
    # The param holds the variable's name; a key pasted here would end up in dvc.lock and git.
    looks_like_key = len(value or "") >= 20 and re.search(r"\d", value) and value != value.upper()
    if not _ENV_NAME.match(value or "") or looks_like_key:
        raise ParamError(key, "must be the name of an environment variable (e.g. OPENAI_API_KEY), "
                              "not a key: keys are read from the environment only")
