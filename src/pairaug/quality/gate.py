"""The quality gate: run the committed GX checkpoint on the pruned pairs, summarise, pass or stop.

The GX project (gx/) is committed and declarative: datasource + asset + batch definition in
great_expectations.yml, the suite in expectations/pruned_pairs.json, the validation definition and the
checkpoint (with its Data Docs action) as JSON. Nothing here adds to it: a run only reads those files
and writes validation results and Data Docs under gx/uncommitted/. `great_expectations` is imported
inside the functions that use it (it takes ~5 s to import).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pandas as pd

from pairaug.errors import InputError, ParamError, QualityGateError
from pairaug.params import Params, Positive, Share

log = logging.getLogger(__name__)

DATA_DOCS_INDEX = "uncommitted/data_docs/local_site/index.html"


@dataclass
class ValidateConfig(Params):
    checkpoint: str = "pruned_pairs"  # gx/checkpoints/<name>.json (its validation definition names the suite)
    data_docs: bool = True  # run the checkpoint's UpdateDataDocsAction (gx/uncommitted/data_docs/)
    examples: Annotated[int, Positive] = 3  # failing pair ids quoted per failed expectation in the error line
    # The suite's parameters ({"$PARAMETER": name} in gx/expectations): the change_read that at least half
    # of the kept intra pairs reach (the share of their changed findings a pixel probe reads in x' as y' has them)
    min_change_read: Annotated[float, Share] = 0.3

    def rules(self) -> None:
        if not self.checkpoint:
            raise ParamError("checkpoint", "must name a checkpoint in gx/checkpoints/")


def run_suite(frame: pd.DataFrame, gx_root: str | Path, cfg: ValidateConfig,
              branches_with_candidates: list[str] | None = None) -> dict[str, Any]:
    """Validate `frame` with the checkpoint `cfg.checkpoint` of the file-mode GX project in `gx_root`
    (the folder holding gx/); return the validation result as a JSON-able dict. `branches_with_candidates`:
    the branches prune had candidates of, each of which must keep a pair (None: the branches of `frame`)."""
    root = Path(gx_root)
    if not (root / "gx" / "great_expectations.yml").exists():
        raise InputError("Great Expectations project not found", file=root / "gx" / "great_expectations.yml")
    for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.exceptions import DataContextError

    context = gx.get_context(mode="file", project_root_dir=str(root))
    try:
        checkpoint = context.checkpoints.get(cfg.checkpoint)
    except DataContextError:
        raise ParamError("validate.checkpoint", f"no checkpoint {cfg.checkpoint!r} in {root / 'gx' / 'checkpoints'}") from None
    if branches_with_candidates is None:
        branches_with_candidates = frame["branch"].dropna().unique().tolist() if "branch" in frame.columns else []
    parameters = suite_parameters(cfg, branches_with_candidates)
    if cfg.data_docs:
        result = checkpoint.run(batch_parameters={"dataframe": frame}, expectation_parameters=parameters)
        runs = list(result.run_results.values())
    else:  # the same validation, without the Data Docs action
        runs = [vd.run(batch_parameters={"dataframe": frame}, expectation_parameters=parameters,
                       result_format=checkpoint.result_format)
                for vd in checkpoint.validation_definitions]
    if len(runs) != 1:
        raise ParamError("validate.checkpoint", f"expected one validation definition in {cfg.checkpoint!r}, got {len(runs)}")
    return stable(runs[0].to_json_dict())


def suite_parameters(cfg: ValidateConfig, branches_with_candidates: list[str]) -> dict[str, Any]:
    """The values of the suite's `$PARAMETER`s: bounds from params.yaml's `validate` section, and the
    branches that must keep pairs."""
    return {"min_change_read": cfg.min_change_read, "branches_with_candidates": sorted(map(str, branches_with_candidates))}


def stable(result: dict[str, Any]) -> dict[str, Any]:
    """The result without its run times, so the same pairs give the same bytes (run ids stay in gx/uncommitted)."""
    meta = dict(result.get("meta") or {})
    for key in ("run_id", "validation_time"):
        meta.pop(key, None)
    if isinstance(meta.get("batch_markers"), dict):
        meta["batch_markers"] = {k: v for k, v in meta["batch_markers"].items() if k != "ge_load_time"}
    return {**result, "meta": meta}


# ------------------------------------------------------------------------------------------ summary


def describe(config: dict[str, Any]) -> str:
    """`type(condition[ where row_condition])` of one expectation, e.g.
    `expect_column_values_to_be_in_set(image_exists in [True])`."""
    kw = config.get("kwargs", {})
    kind = config.get("type", "?")
    col = kw.get("column")
    if "column_A" in kw:
        op = {"expect_column_pair_values_a_to_be_greater_than_b": ">=" if kw.get("or_equal") else ">",
              "expect_column_pair_values_to_be_equal": "=="}.get(kind, ",")
        cond = f"{kw['column_A']} {op} {kw['column_B']}"
    elif "value_set" in kw:
        cond = f"{col} in {list(kw['value_set'])}"
    elif "min_value" in kw or "max_value" in kw:
        lo, hi = (_bound(kw.get(k)) for k in ("min_value", "max_value"))
        what = col if col else "rows"
        cond = " ".join(p for p in (f"{_num(lo)} <=" if lo is not None else "", what,
                                    f"<= {_num(hi)}" if hi is not None else "") if p)
    elif "type_" in kw:
        cond = f"{col} of type {kw['type_']}"
    elif "column_set" in kw:
        cond = f"columns include {len(kw['column_set'])} required"
    elif kind.endswith("not_be_null"):
        cond = f"{col} not null"
    elif kind.endswith("be_unique"):
        cond = f"{col} unique"
    else:
        cond = col or ", ".join(f"{k}={v}" for k, v in kw.items() if k not in ("row_condition", "mostly"))
    if kw.get("mostly") is not None:
        cond += f", mostly {kw['mostly']}"
    where = _condition_text(kw.get("row_condition"))
    return f"{kind}({cond}{' where ' + where if where else ''})"


def _bound(x: Any) -> Any:
    """A bound as stated: a number, or the name of the suite parameter it reads."""
    return f"${x['$PARAMETER']}" if isinstance(x, dict) and "$PARAMETER" in x else x


def _num(x: Any) -> Any:
    """50.0 → 50 (GX stores bounds as floats)."""
    return int(x) if isinstance(x, float) and x.is_integer() else x


def _condition_text(cond: Any) -> str:
    if not cond:
        return ""
    if isinstance(cond, str):
        return cond
    if isinstance(cond, dict):
        if "conditions" in cond:
            joiner = " and " if cond.get("type") == "and" else " or "
            return joiner.join(_condition_text(c) for c in cond["conditions"])
        column = cond.get("column", {})
        name = column.get("name") if isinstance(column, dict) else column
        if cond.get("type") == "nullity":
            return f"{name} is {'null' if cond.get('is_null') else 'not null'}"
        return f"{name} {cond.get('operator')} {cond.get('parameter')!r}"
    return str(cond)


def failures(result: dict[str, Any], examples: int = 3) -> list[str]:
    """One text per failed expectation: what was expected, how many rows broke it, which pair ids."""
    out = []
    for r in result.get("results", []):
        if r.get("success"):
            continue
        config = r.get("expectation_config", {})
        text = describe(config)
        info = r.get("exception_info") or {}
        if info.get("raised_exception"):
            message = str(info.get("exception_message", "")).splitlines()[0][:200]
            out.append(f"{text}: could not be evaluated ({message})")
            continue
        res = r.get("result") or {}
        detail = ""
        if "unexpected_count" in res:
            detail = f": {res['unexpected_count']} of {res.get('element_count', '?')} rows"
            ids = [row.get("pair_id") for row in res.get("partial_unexpected_index_list") or []
                   if isinstance(row, dict) and row.get("pair_id") is not None]
            if ids:
                detail += f" (pair_id {', '.join(map(str, ids[:examples]))}{', …' if len(ids) > examples else ''})"
        elif res.get("partial_missing_list"):  # a set the column must contain: name what no row has
            column = config.get("kwargs", {}).get("column")
            missing = ", ".join(map(str, res["partial_missing_list"]))
            detail = f": no kept pair of branch(es) {missing}" if column == "branch" else f": no row with {column} {missing}"
        elif "observed_value" in res:
            observed = res["observed_value"]
            if isinstance(observed, list) and "column_set" in config.get("kwargs", {}):
                missing = [c for c in config["kwargs"]["column_set"] if c not in observed]
                observed = f"missing {missing}"
            detail = f": observed {observed}"
        out.append(text + detail)
    return out


def summary(result: dict[str, Any], frame: pd.DataFrame, examples: int = 3) -> dict[str, Any]:
    """metrics/validate.json: pass/fail, counts, and the failed expectations."""
    stats = result.get("statistics", {})
    return {
        "success": bool(result.get("success")),
        "suite": result.get("suite_name"),
        "expectations": stats.get("evaluated_expectations"),
        "failed": stats.get("unsuccessful_expectations"),
        "rows": len(frame),
        "rows_per_branch": {str(k): int(v) for k, v in frame["branch"].value_counts().sort_index().items()}
        if "branch" in frame.columns else {},
        "failures": failures(result, examples),
    }


def gate(result: dict[str, Any], examples: int = 3, docs: str | None = None) -> None:
    """Raise QualityGateError with one line naming each failed expectation; return when all passed."""
    if result.get("success"):
        return
    stats = result.get("statistics", {})
    failed = failures(result, examples)
    where = f" — Data Docs: {docs}" if docs else ""
    raise QualityGateError(f"quality gate failed: {stats.get('unsuccessful_expectations', len(failed))} of "
                           f"{stats.get('evaluated_expectations', '?')} expectations in suite "
                           f"'{result.get('suite_name')}': " + "; ".join(failed) + where)
