"""MLflow conventions, unit level: the store's URI, flattened params, metric names, failures that only warn."""

from __future__ import annotations

import json
import logging
import re
import shutil
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from conftest import REPO, pairaug_ui

from pairaug.errors import ParamError
from pairaug.params import section
from pairaug.tracking.audit import parse_model_ref
from pairaug.tracking.cli import render
from pairaug.tracking.evaluation import eval_metrics
from pairaug.tracking.lineage import audit_pairs, flatten, prompt_versions
from pairaug.tracking.runs import not_fatal
from pairaug.tracking.store import TrackingConfig, load_config, tracking_uri
from pairaug.tracking.ui import KEY_METRICS, VIEW_KEY, VIEW_NAME


def test_tracking_uri_is_absolute_from_the_repo_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "main"))  # what `dvc exp run` sets for queued runs
    monkeypatch.chdir(tmp_path)
    assert tracking_uri() == f"sqlite:///{(tmp_path / 'main').resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.team:5000")
    assert tracking_uri() == "http://mlflow.team:5000"


def test_flatten_gives_dotted_keys_and_yaml_like_values():
    params = {"data": {"phantom": {"train_patients": 40}, "max_pairs": None, "views": ["PA", "AP"], "official": True},
              "mixes": {"none": []}}
    assert flatten(params["data"], "data") == {"data.phantom.train_patients": "40", "data.max_pairs": "null",
                                               "data.views": '["PA", "AP"]', "data.official": "true"}
    assert flatten(params["mixes"]["none"], "pretrain.mixes.none") == {"pretrain.mixes.none": "[]"}


def test_eval_metrics_names_are_valid_mlflow_keys():
    result = {"zeroshot": {"auc": {"Pleural Effusion": 0.8, "Edema": None}, "mean_auc": 0.7},
              "linear_probe": {"auc": {"1%": {"Edema": 0.6}, "100%": {"Edema": 0.9}},
                               "mean_auc": {"1%": 0.6, "100%": 0.9}}}
    assert eval_metrics(result) == {"zeroshot.auc.Pleural Effusion": 0.8, "zeroshot.mean_auc": 0.7,
                                    "linear_probe.1pct.auc.Edema": 0.6, "linear_probe.100pct.auc.Edema": 0.9,
                                    "linear_probe.1pct.mean_auc": 0.6, "linear_probe.100pct.mean_auc": 0.9}


def test_bad_tracking_params_name_the_key():
    with pytest.raises(ParamError, match=r"tracking\.registered_model"):
        section(TrackingConfig, {"tracking": {"registered_model": "has space"}}, "tracking")
    with pytest.raises(ParamError, match=r"tracking\.http_timeout_s"):
        section(TrackingConfig, {"tracking": {"http_timeout_s": 0}}, "tracking")


def test_a_logging_failure_only_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="pairaug.tracking"), not_fatal("pretrain@none") as out:
        raise ConnectionError("tracking server http://127.0.0.1:1 unreachable")
    assert not out.logged
    assert "run not logged: pretrain@none: tracking server http://127.0.0.1:1 unreachable" in caplog.text


def test_model_references():
    assert parse_model_ref("models:/pairaug-vlp/3", "x") == ("pairaug-vlp", "3", None)
    assert parse_model_ref("models:/pairaug-vlp@champion", "x") == ("pairaug-vlp", None, "champion")
    assert parse_model_ref("@champion", "pairaug-vlp") == ("pairaug-vlp", None, "champion")
    assert parse_model_ref("7", "pairaug-vlp") == ("pairaug-vlp", "7", None)
    assert parse_model_ref("models/vlp/pairaug", "pairaug-vlp") is None


def test_audit_pairs_lists_only_synthetic_pairs_with_repo_relative_images():
    import pandas as pd

    training = pd.DataFrame({"pair_id": ["r1", "s1"], "branch": ["real", "inter"], "report": ["a", "b"],
                             "path": ["data/prepared/images/r1.png", "data/validated/../synthetic/inter/images/s1.png"]})
    validated = pd.DataFrame({"pair_id": ["s1", "s2"], "branch": ["inter", "intra"], "report": ["b", "c"],
                              "source_pair_id": ["r1", "r1"], "source_report": ["a", "a"],
                              "image": ["../synthetic/inter/images/s1.png", "../synthetic/intra/images/s2.png"],
                              "image_sha256": ["ab", "cd"], "s_a": [0.4, None], "s1": [None, 0.5],
                              "s2": [None, 0.6], "s3": [None, 0.1]})
    out = audit_pairs(training, validated)
    assert out["pair_id"].tolist() == ["s1"]
    assert out.loc[0, "image"] == str(Path("data/synthetic/inter/images/s1.png"))
    assert out.loc[0, "source_pair_id"] == "r1" and out.loc[0, "s_a"] == 0.4
    csv = render(out.assign(status="verified"), "csv")
    assert csv.splitlines()[0].startswith("pair_id,branch,source_pair_id,source_report,report,image,image_sha256")


def test_audit_of_a_control_mix_lists_each_replicates_own_copy_of_a_pair():
    """real_dup / pool_real repeat the same pair ids in every replicate: one model's audit lists its own."""
    import pandas as pd

    training = pd.DataFrame({"pair_id": ["r1", "r1", "r1", "r1"], "branch": ["real", "real", "real_dup", "real_dup"],
                             "replicate": [-1, -1, 0, 1], "report": ["a"] * 4, "path": ["p"] * 4})
    validated = pd.DataFrame({"pair_id": ["r1", "r1"], "branch": ["real_dup"] * 2, "replicate": [0, 1],
                              "source_pair_id": ["r1", "r1"], "report": ["a", "a"], "image": ["../x.png", "../y.png"],
                              "image_sha256": ["ab", "cd"]})
    one = audit_pairs(training, validated, replicate=1)
    assert one[["pair_id", "replicate", "image_sha256"]].values.tolist() == [["r1", 1, "cd"]]
    assert audit_pairs(training, validated)["image_sha256"].tolist() == ["ab", "cd"]  # the mix: both copies


def _ui_routes(base: str) -> tuple[str, bool]:
    """(the runs tab's route pattern, whether routes live in the URL's #fragment) in the UI bundle `base` serves."""
    index = urllib.request.urlopen(base + "/", timeout=30).read().decode()
    main_js = re.search(r"static-files/static/js/main[.\w]*\.js", index)[0]
    bundle = urllib.request.urlopen(f"{base}/{main_js}", timeout=60).read().decode()
    route = re.search(r'experimentPageTabRuns\(\)\{return\(0,[\w$.]+\)\("([^"]+)"\)', bundle)
    assert route, "MLflow's UI bundle no longer names its runs-tab route experimentPageTabRuns: update this test"
    return route[1], "createHashRouter" in bundle


@pytest.mark.slow
def test_runs_url_opens_the_runs_table(tmp_path):
    """`pairaug ui` on a fresh repository: the link it prints is, by the routes of the MLflow UI that it started,
    the runs tab of the configured experiment, with no share key (no banner), and the experiment holds the saved
    view with the key metrics as columns."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy2(REPO / name, repo / name)
    with pairaug_ui(repo, tmp_path / "ui.log") as (base, url):
        route, hash_routes = _ui_routes(base)
        assert hash_routes and url.startswith(base + "/#/")
        path, _, query = url.removeprefix(base + "/#").partition("?")
        match = re.fullmatch(re.sub(r":(\w+)", r"(?P<\1>[^/?#]+)", route), path)
        assert match, f"{path} is not the UI's runs tab ({route})"
        api = f"{base}/ajax-api/2.0/mlflow/experiments/get?experiment_id={match['experimentId']}"
        experiment = json.loads(urllib.request.urlopen(api, timeout=30).read())["experiment"]
        assert experiment["name"] == load_config(repo / "params.yaml").experiment
        # No share key: MLflow would open the table under its "You're viewing a shared view" banner.
        assert "viewStateShareKey" not in parse_qs(query) and parse_qs(query)["workflowType"] == ["machine_learning"]
        tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
        view = json.loads(tags[f"mlflow.sharedViewState.{VIEW_KEY}"])  # the saved view of the "Views" menu
        assert view["name"] == VIEW_NAME
        assert {f"metrics.`{m}`" for m in KEY_METRICS} <= set(json.loads(view["state"])["selectedColumns"])


def test_a_run_records_the_prompts_of_its_own_manifest_only(tmp_path):
    """The prompt URIs a pretrain run records come from the datasheet written for the very manifest it trained
    on (its md5), for the rewrite tasks its synthetic branches came from."""
    sheet = {"validated": {"mixes": {"pairaug": "md5-a"}},
             "prompts": {"inter": {"prompt_sha": ["aaa"], "prompt_uri": ["prompts:/pairaug-rewrite-inter/2"]},
                         "intra": {"prompt_sha": ["bbb"], "prompt_uri": ["prompts:/pairaug-rewrite-intra/1"]},
                         "paraphrase": {"prompt_sha": ["ccc"], "prompt_uri": []}}}
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "datasheet.json").write_text(json.dumps(sheet))
    got = prompt_versions(tmp_path, "pairaug", {"inter", "intra", "real_dup"}, "md5-a")
    assert got == {"inter": {"sha": ["aaa"], "uri": ["prompts:/pairaug-rewrite-inter/2"]},
                   "intra": {"sha": ["bbb"], "uri": ["prompts:/pairaug-rewrite-intra/1"]}}
    assert prompt_versions(tmp_path, "pairaug", {"inter"}, "md5-other") == {}  # another manifest's datasheet
    assert prompt_versions(tmp_path, "pairaug", {"image_only"}, "md5-a") == {}  # no rewritten report
