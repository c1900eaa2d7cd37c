"""`rewrite:` in params.yaml → a typed, validated RewriteConfig."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from pairaug.errors import ParamError
from pairaug.params import in_range, positive
from pairaug.rewrite.prompts import TASKS, Task

Backend = Literal["rules", "openai", "azure"]
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class PromptsConfig:
    """Instruction overrides; null keeps the default text (see pairaug.rewrite.prompts)."""

    inter: str | None = None
    intra: str | None = None
    paraphrase: str | None = None


@dataclass
class OpenAIConfig:
    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-3.5-turbo"
    api_key_env: str = "OPENAI_API_KEY"  # the NAME of the environment variable holding the key


@dataclass
class AzureConfig:
    endpoint: str = ""  # https://<resource>.openai.azure.com
    deployment: str = ""
    api_version: str = "2024-10-21"
    api_key_env: str = "AZURE_OPENAI_API_KEY"


@dataclass
class SamplingConfig:
    temperature: float = 0.5
    max_tokens: int = 300
    top_p: float = 1.0


@dataclass
class PriceConfig:
    """USD per 1,000 tokens, for the cost estimate in metrics/rewrite.json."""

    prompt_per_1k: float = 0.0005
    completion_per_1k: float = 0.0015


@dataclass
class RewriteConfig:
    backend: Backend = "rules"
    tasks: list[Task] = field(default_factory=lambda: list(TASKS))
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    azure: AzureConfig = field(default_factory=AzureConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    price: PriceConfig = field(default_factory=PriceConfig)
    allow_external: bool = False
    private_hosts: list[str] = field(default_factory=list)
    max_words: int = 50
    min_words: int = 8
    limit: int | None = None  # rewrite only the first N train reports (quick, cheap trials)
    # IntraAug rewrites of this many valid reports (a seeded sample): the edits intra-sweep chooses the
    # edit settings on, so no tuned choice sees a train or test film (0: none, intra-sweep then fails)
    valid_reports: int = 32
    concurrency: int = 8
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    abort_after_failures: int = 20
    max_failed_fraction: float = 0.01
    # The least share of the source the rules backend must keep (metrics/rewrite.json: retention_mean
    # per task); below it the stage fails naming the reports. LLM rewrites are measured, not held to it.
    min_retention: float = 0.8
    retry_failed: bool = False
    cache_path: str = ".cache/rewrite.sqlite"

    def validate(self, prefix: str) -> None:
        positive(prefix, max_words=self.max_words, concurrency=self.concurrency, timeout_s=self.timeout_s,
                 abort_after_failures=self.abort_after_failures, max_backoff_s=self.max_backoff_s)
        if self.min_words < 0:
            raise ParamError(f"{prefix}.min_words", f"must be >= 0, got {self.min_words}")
        if self.max_retries < 0:
            raise ParamError(f"{prefix}.max_retries", f"must be >= 0, got {self.max_retries}")
        if self.backoff_s < 0:
            raise ParamError(f"{prefix}.backoff_s", f"must be >= 0, got {self.backoff_s}")
        if self.valid_reports < 0:
            raise ParamError(f"{prefix}.valid_reports", f"must be >= 0, got {self.valid_reports}")
        if self.limit is not None and self.limit <= 0:
            raise ParamError(f"{prefix}.limit", f"must be > 0 or null, got {self.limit}")
        if not self.tasks:
            raise ParamError(f"{prefix}.tasks", "must name at least one task")
        if len(set(self.tasks)) != len(self.tasks):
            raise ParamError(f"{prefix}.tasks", f"duplicate task in {self.tasks}")
        in_range(prefix, "max_failed_fraction", self.max_failed_fraction, 0.0, 1.0)
        in_range(prefix, "min_retention", self.min_retention, 0.0, 1.0)
        in_range(f"{prefix}.sampling", "temperature", self.sampling.temperature, 0.0, 2.0)
        in_range(f"{prefix}.sampling", "top_p", self.sampling.top_p, 0.0, 1.0)
        positive(f"{prefix}.sampling", max_tokens=self.sampling.max_tokens)
        for name in ("prompt_per_1k", "completion_per_1k"):
            if getattr(self.price, name) < 0:
                raise ParamError(f"{prefix}.price.{name}", "must be >= 0")
        for task in TASKS:
            text = getattr(self.prompts, task)
            if text is not None and not text.strip():
                raise ParamError(f"{prefix}.prompts.{task}", "is empty (use null for the default prompt)")
        for section in ("openai", "azure"):
            _check_env_name(f"{prefix}.{section}.api_key_env", getattr(self, section).api_key_env)
        if self.backend == "openai" and not self.openai.model:
            raise ParamError(f"{prefix}.openai.model", "is empty")
        if self.backend == "azure":
            for name in ("endpoint", "deployment", "api_version"):
                if not getattr(self.azure, name):
                    raise ParamError(f"{prefix}.azure.{name}", "is empty (needed by backend: azure)")

    def prompt_overrides(self) -> dict[str, str | None]:
        return {task: getattr(self.prompts, task) for task in TASKS}


def _check_env_name(key: str, value: str) -> None:
    # The param holds the variable's name; a key pasted here would end up in dvc.lock and git.
    looks_like_key = len(value or "") >= 20 and re.search(r"\d", value) and value != value.upper()
    if not _ENV_NAME.match(value or "") or looks_like_key:
        raise ParamError(key, "must be the name of an environment variable (e.g. OPENAI_API_KEY), "
                              "not a key: keys are read from the environment only")
