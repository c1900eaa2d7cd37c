"""DVC stage `rewrite`: train reports of data/prepared/pairs.parquet → data/rewritten/<task>.parquet.

With tracking on, the instructions go to MLflow's Prompt Registry and LLM requests become traces in the
repository's store (pairaug.rewrite.registry, pairaug.rewrite.traces); a store that cannot be opened only
warns, unless `rewrite.prompts` names a registered prompt (then there is no text to send without it).
"""

import logging

from pairaug import layout
from pairaug.errors import InputError
from pairaug.params import load_params, section
from pairaug.rewrite.config import RewriteConfig
from pairaug.rewrite.prompts import is_registry_uri
from pairaug.rewrite.registry import RegistryTarget
from pairaug.rewrite.run import run_rewrite
from pairaug.stage import run_stage
from pairaug.tracking.store import TrackingConfig, display_uri, open_existing_store, open_store, tracking_uri

log = logging.getLogger("pairaug.rewrite")


def registry_target(tracking: TrackingConfig, cfg: RewriteConfig) -> RegistryTarget | None:
    """The MLflow store the stage registers, loads and traces prompts in; None: tracking off or unreachable."""
    named = [t for t, v in cfg.prompt_overrides().items() if t in cfg.tasks and is_registry_uri(v)]
    if not tracking.enabled:
        if not named:
            return None
        open_existing_store(tracking)  # only read: a missing store is an error naming it
        return RegistryTarget(tracking_uri(), None, register=False, trace=False)
    try:
        exp_id, uri, _ = open_store(tracking)
    except Exception as e:  # noqa: BLE001 - the registry is a record; the rewrite does not need it
        if named:
            raise InputError(f"rewrite.prompts.{named[0]} names a registered prompt, but the MLflow store "
                             f"{display_uri(tracking_uri())} cannot be opened: {e}") from None
        log.warning("rewrite: MLflow store not opened (%s): prompts not registered, LLM calls not traced", e)
        return None
    return RegistryTarget(uri, exp_id, register=True, trace=tracking.trace_rewrites)


def main() -> None:
    params = load_params()
    cfg = section(RewriteConfig, params, "rewrite")
    tracking = section(TrackingConfig, params, "tracking")
    run_rewrite(cfg, params.get("seed", 0), layout.PREPARED, layout.REWRITTEN, layout.REWRITE_METRICS,
                registry=registry_target(tracking, cfg))


if __name__ == "__main__":
    run_stage(main)
