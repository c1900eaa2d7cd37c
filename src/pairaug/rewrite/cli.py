"""`pairaug rewrite --task inter|intra|paraphrase "report"`: preview one rewrite with the configured backend."""

from __future__ import annotations

import argparse
import json
import sys

from pairaug.data.schema import LABELS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rewrite", help="preview one report rewrite with the configured backend (params.yaml: rewrite)",
        description="Rewrite one report as the `rewrite` stage would, to try prompts and backends before a full "
                    "run. Reads the `rewrite` section of params.yaml; LLM answers go through the same cache.")
    p.add_argument("text", nargs="?", help="the report (reads stdin when omitted; UTF-8, undecodable bytes "
                                           "become U+FFFD)")
    p.add_argument("--task", choices=["inter", "intra", "paraphrase"], default="inter")
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--backend", choices=["rules", "openai", "azure"], help="override rewrite.backend")
    p.add_argument("--seed", type=int, help="override the seed (rules backend)")
    p.add_argument("--no-cache", action="store_true", help="always ask the backend, and do not store the answer")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_rewrite)


def _cmd_rewrite(args: argparse.Namespace) -> None:
    from pairaug.console import clean_arg, read_stdin_text
    from pairaug.errors import InputError, PairaugError
    from pairaug.params import load_params, section
    from pairaug.rewrite.config import RewriteConfig
    from pairaug.rewrite.preview import preview
    from pairaug.rewrite.prompts import is_registry_uri
    from pairaug.rewrite.registry import RegistryTarget

    params = load_params(args.params)
    if args.backend:
        params = {**params, "rewrite": {**(params.get("rewrite") or {}), "backend": args.backend}}
    cfg = section(RewriteConfig, params, "rewrite")
    text = clean_arg(args.text) if args.text is not None else read_stdin_text()
    if not text.strip():
        raise InputError("no report text given (pass it as an argument or on stdin)")
    seed = args.seed if args.seed is not None else int(params.get("seed", 0))
    registry = None
    if is_registry_uri(cfg.prompt_overrides().get(args.task)):
        import mlflow

        # MLflow's own default store ($MLFLOW_TRACKING_URI, else ./mlflow.db: the repository's from its root)
        registry = RegistryTarget(mlflow.get_tracking_uri(), None, register=False, trace=False)
    out = preview(cfg, seed, args.task, text.strip(), use_cache=not args.no_cache, registry=registry)
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        if out["status"] != "ok":
            raise PairaugError(f"rewrite {_outcome(out)}: {out['reason']}")
        return
    src, new = out["source_labels"], out["labels"]
    origin = " (from cache)" if out["from_cache"] else ""
    uri = f" ({out['prompt_uri']})" if out.get("prompt_uri") else ""
    print(f"{args.task} · {out['backend']} · {out['model']} · prompt {out['prompt_sha']}{uri}{origin}")
    if out["status"] != "ok":
        raise PairaugError(f"rewrite {_outcome(out)}: {out['reason']}")  # exit 2: a script must not take it for a rewrite
    print(out["report_new"] + ("   [cut to rewrite.max_words]" if out["truncated"] else ""))
    name = {1: "positive", 0: "negative", -1: "uncertain", None: "-"}
    changes = [f"  {lab}: {name[src[lab]]} -> {name[new[lab]]}" for lab in LABELS if src[lab] != new[lab]]
    print("label changes:" if changes else "labels: unchanged")
    for line in changes:
        print(line)


def _outcome(out: dict) -> str:
    return "skipped (too long)" if out["status"] == "skipped_long" else "failed"
