"""The rewrite instructions in MLflow's Prompt Registry: one prompt per task, one version per distinct text.

- `register_prompts` adds each task's instruction (the paper's, or the `rewrite.prompts` override) to the
  prompt `pairaug-rewrite-<task>` (`mlflow.genai.register_prompt`) only when no version of it holds that
  text yet, and links the prompt to the experiment (its Prompts tab). The rows then record the version's
  URI (`prompts:/pairaug-rewrite-inter/2`) beside the text's hash.
- `rewrite.prompts.<task>: prompts:/<name>@<alias>` (or `/<version>`) loads a registered text prompt
  (`mlflow.genai.load_prompt`), so a team moves an alias instead of editing params. The alias is resolved
  when the stage runs: the rows record the version it pointed at. DVC does not see an alias move: rerun
  with `dvc repro -f rewrite` (or pin `/<version>` in params, which DVC does see).

The store comes from the caller (`RegistryTarget`: the stage opens it through pairaug.tracking.store).
Registration is best effort: a store that fails warns once and the rows record no URI, as with tracking
off; loading a prompt the params name is not: without its text there is nothing to send.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

from pairaug.errors import ParamError
from pairaug.rewrite.prompts import Prompt, get_prompt, is_registry_uri, prompt_sha

log = logging.getLogger("pairaug.rewrite")

PROMPT_PREFIX = "pairaug-rewrite-"
SHA_TAG = "pairaug.prompt_sha"
TASK_TAG = "pairaug.task"


@dataclass(frozen=True)
class RegistryTarget:
    """The MLflow store the rewrite stage talks to (tracking URI and experiment, opened by the caller)."""

    uri: str
    experiment_id: str | None = None
    register: bool = True  # tracking.enabled: register the instructions (else only load what params name)
    trace: bool = False  # tracking.trace_rewrites, and the store may hold reports (pairaug.rewrite.traces)


def prompt_name(task: str) -> str:
    return f"{PROMPT_PREFIX}{task}"


def activate(target: RegistryTarget) -> None:
    """Point MLflow's fluent API (prompts, traces) at the target's store and experiment."""
    import mlflow

    mlflow.set_tracking_uri(target.uri)
    mlflow.set_registry_uri(target.uri)
    if target.experiment_id:
        mlflow.set_experiment(experiment_id=target.experiment_id)  # new prompt versions link to it


def _client(target: RegistryTarget):
    from mlflow import MlflowClient

    return MlflowClient(target.uri, target.uri)


def load_registered(task: str, uri: str, target: RegistryTarget | None) -> Prompt:
    """The instruction `rewrite.prompts.<task>` names by registry URI, with the URI of its version."""
    import mlflow

    key = f"rewrite.prompts.{task}"
    if target is None:
        raise ParamError(key, f"names a registered prompt ({uri}) but no MLflow store is open to load it from")
    try:
        activate(target)
        version = mlflow.genai.load_prompt(uri.strip(), link_to_model=False)
    except Exception as e:  # noqa: BLE001 - MLflow raises its own exception for a missing prompt or alias
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ParamError(key, f"cannot load {uri} from the MLflow store: {first[:300]}") from None
    if not version.is_text_prompt:
        raise ParamError(key, f"{uri} is a chat prompt; the rewrite instruction must be a text prompt (it is sent "
                              "as the system message, the report as the user message)")
    if version.variables:
        raise ParamError(key, f"{uri} has template variables ({', '.join(sorted(version.variables))}); the "
                              "instruction is sent as is, with the report as the user message")
    text = version.template.strip()
    if not text:
        raise ParamError(key, f"{uri} is an empty prompt")
    return Prompt(task, text, version.uri)


def resolve_prompts(tasks: list[str], overrides: dict[str, str | None],
                    target: RegistryTarget | None) -> dict[str, Prompt]:
    """Each task's instruction: a registry URI loaded from the store, else the params text or the default."""
    return {task: load_registered(task, overrides[task], target) if is_registry_uri(overrides.get(task))
            else get_prompt(task, overrides) for task in tasks}


def register_prompts(prompts: dict[str, Prompt], target: RegistryTarget | None) -> dict[str, Prompt]:
    """`prompts` with the registry URI of each text (registered where new); unchanged when the store is off or
    fails (one warning)."""
    if target is None or not target.register:
        return prompts
    try:
        activate(target)
        return {task: p if p.uri else replace(p, uri=_register(p, target)) for task, p in prompts.items()}
    except Exception as e:  # noqa: BLE001 - the registry is a record, not a reason to lose a rewrite
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        log.warning("rewrite: prompts not registered in MLflow (%s); the rows record no prompt URI", first[:300])
        return prompts


def _register(prompt: Prompt, target: RegistryTarget) -> str:
    import mlflow

    client = _client(target)
    name = prompt_name(prompt.task)
    same = None
    if client.get_prompt(name) is not None:
        same = next((v for v in _versions(client, name) if v.is_text_prompt and v.template == prompt.text), None)
    if same is None:
        same = mlflow.genai.register_prompt(
            name, prompt.text, commit_message=f"rewrite.prompts.{prompt.task} (sha {prompt.sha})",
            tags={SHA_TAG: prompt_sha(prompt.task, prompt.text), TASK_TAG: prompt.task})
        log.info("rewrite: registered %s", same.uri)
    if target.experiment_id:
        for wait in (0.05, 0.2, 0.5, 1.0, None):
            try:
                _link_to_experiment(client, name, target.experiment_id)
                break
            except Exception:
                # MLflow links a new version to the active experiment from a thread of its own: the two
                # writes of one tag can collide; the next read sees the link made
                if wait is None:
                    raise
                time.sleep(wait)
    return same.uri


def _versions(client, name: str):
    token = None
    while True:
        page = client.search_prompt_versions(name, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _link_to_experiment(client, name: str, experiment_id: str) -> None:
    """List the prompt in the experiment's Prompts tab (MLflow's own tag: a comma-wrapped list of ids)."""
    from mlflow.prompt.constants import PROMPT_EXPERIMENT_IDS_TAG_KEY

    ids = [i for i in (client.get_prompt(name).tags.get(PROMPT_EXPERIMENT_IDS_TAG_KEY) or "").split(",") if i]
    if experiment_id not in ids:
        client.set_prompt_tag(name, PROMPT_EXPERIMENT_IDS_TAG_KEY, f",{','.join([*ids, experiment_id])},")
