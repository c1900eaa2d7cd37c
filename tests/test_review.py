"""`pairaug review` and the decisions it writes: the real page in headless Chromium (Debian's package,
driven by Playwright) on a tiny workspace — a pair rejected with the keyboard shows in the summary and
the next `prune` drops it; a stale decision is reported, not applied; a broken decisions file names its
line; the app binds only to loopback unless told otherwise and serves only workspace images."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_prune import CARDIO, EFFUSION, NORMAL, REWRITES, WORSE, make_scorer, make_world, sources

from pairaug.cli import main
from pairaug.data.decisions import DECISION_COLUMNS, read_decisions, record_decision
from pairaug.errors import InputError
from pairaug.models.scorer import load_scorer
from pairaug.prune import PruneConfig, ReviewConfig, prune
from pairaug.review.app import create_app
from pairaug.review.cli import check_bind
from pairaug.review.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium", shutil.which("chromium-browser"))
                 if p and Path(p).exists()), None)
HEADER = ",".join(DECISION_COLUMNS) + "\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A tiny workspace: real pairs, rewrites, synthetic manifests, a tiny CLIP scorer, and a first prune."""
    root = tmp_path_factory.mktemp("review-world")
    make_world(root)
    make_scorer(root / "models" / "scorer", [NORMAL, CARDIO, EFFUSION, WORSE] + [r[2][0] for r in REWRITES.values()])
    _prune(root)
    return root


def _prune(root: Path, cfg: PruneConfig | None = None) -> tuple[pd.DataFrame, dict]:
    # τ = -0.5: the untrained scorer's cosines sit near 0, so most alignment pairs are kept
    return prune(cfg or PruneConfig(inter_tau=-0.5), load_scorer(root / "models" / "scorer"), root / "data/pruned",
                 sources(root), progress=False)


@pytest.fixture
def decisions(world: Path) -> Iterator[Path]:
    path = world / "review" / "decisions.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_text(HEADER)
    yield path
    path.write_text(HEADER)


@contextlib.contextmanager
def serve(root: Path, reviewer: str = "dr-test") -> Iterator[str]:
    """The real app under uvicorn on a free loopback port, in a thread; yields its base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(Workspace(root), reviewer, per_page=50, allowed_hosts=["127.0.0.1", "localhost"])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the review app did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _get(base: str, path: str) -> tuple[int, bytes]:
    """A raw GET (the path sent as written: a browser would fold `..` away before sending)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _digest(folder: Path) -> dict[str, str]:
    return {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in ("candidates.parquet", "pairs.parquet")}


# ----------------------------------------------------------------------------------- the browser loop


@pytest.mark.skipif(CHROMIUM is None,
                    reason="Chromium is not installed (Debian: apt-get install chromium; .ci/run tries it)")
def test_a_pair_rejected_with_the_keyboard_is_in_the_summary_and_prune_drops_it(world: Path, decisions: Path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[test]')")
    before = pd.read_parquet(world / "data/pruned/candidates.parquet")
    kept_inter = before[(before["branch"] == "inter") & before["kept"]]
    assert len(kept_inter) >= 2
    target = kept_inter["pair_id"].iloc[0]  # the first card of the filtered page is focused on load
    with serve(world) as base, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{base}/pairs?branch=inter&status=kept")
            card = page.locator(f"#pair-{target}")
            assert "focused" in card.get_attribute("class")
            assert page.locator(".card").count() == len(kept_inter)
            # The changed labels are highlighted; the images load from the workspace.
            assert card.locator("ul.labels li.changed").count() >= 1
            page.wait_for_function("Array.from(document.images).slice(0, 2).every(i => i.complete && i.naturalWidth > 0)")
            page.keyboard.press("z")  # zoom on the synthetic image, Esc closes it
            assert page.locator("#zoom").is_visible()
            page.keyboard.press("Escape")
            assert not page.locator("#zoom").is_visible()
            page.keyboard.press("r")
            card.locator(".decision b.v-reject").wait_for(timeout=10_000)
            # The verdict moved the focus on to the next pair.
            assert "focused" in page.locator(".card").nth(1).get_attribute("class")
            page.goto(f"{base}/summary")
            row = page.locator("#summary tr[data-branch=inter]")
            assert row.locator("td.reject").inner_text() == "1"
            assert page.locator("#decisions").get_by_text(target).count() == 1
        finally:
            browser.close()

    d = read_decisions(decisions)
    assert d[["pair_id", "decision", "reviewer"]].values.tolist() == [[target, "reject", "dr-test"]]
    assert d["image_sha256"].iloc[0] == kept_inter["image_sha256"].iloc[0]

    candidates, metrics = _prune(world)
    row = candidates.set_index("pair_id").loc[target]
    assert not row["kept"] and row["review"] == "reject" and "rejected in review" in row["reason"]
    assert target not in set(pd.read_parquet(world / "data/pruned/pairs.parquet")["pair_id"])
    assert metrics["review"]["applied"] == {"accept": 0, "reject": 1, "flag": 0} and metrics["review"]["stale"] == []
    assert metrics["branches"]["inter"]["rejected_in_review"] == 1
    # The same inputs and decisions give the same bytes.
    digest = _digest(world / "data/pruned")
    _prune(world)
    assert _digest(world / "data/pruned") == digest


# ------------------------------------------------------------------------------- how prune applies them


def test_a_stale_decision_is_reported_not_applied(world: Path, decisions: Path, caplog):
    cands = pd.read_parquet(world / "data/pruned/candidates.parquet")
    kept = cands[cands["kept"] & (cands["review"] == "")]
    pid = kept["pair_id"].iloc[0]
    decisions.write_text(HEADER + f"{pid},{'0' * 64},reject,dr-test,2026-01-01T00:00:00Z,saw another image\n")
    with caplog.at_level(logging.WARNING, logger="pairaug.prune"):
        candidates, metrics = _prune(world)
    assert candidates.set_index("pair_id").loc[pid, "kept"]  # not applied
    assert metrics["review"]["stale"] == [{"pair_id": pid, "line": 2, "decision": "reject"}]
    assert metrics["review"]["applied"] == {"accept": 0, "reject": 0, "flag": 0}
    assert any("stale" in r.message and pid in r.message and "line 2" in r.message for r in caplog.records)
    with serve(world) as base:  # the summary says so too
        status, body = _get(base, "/summary")
    assert status == 200 and b"Stale (ignored)" in body and pid.encode() in body


def test_accepted_pairs_keep_their_score_decision_unless_overridden(world: Path, decisions: Path):
    cands = pd.read_parquet(world / "data/pruned/candidates.parquet")
    dropped = cands[~cands["kept"]].iloc[0]
    record_decision(decisions, dropped["pair_id"], dropped["image_sha256"], "accept", "dr-test")
    candidates, _ = _prune(world)
    assert not candidates.set_index("pair_id").loc[dropped["pair_id"], "kept"]
    cfg = PruneConfig(inter_tau=-0.5, review=ReviewConfig(accepted_override=True))
    candidates, metrics = _prune(world, cfg)
    row = candidates.set_index("pair_id").loc[dropped["pair_id"]]
    assert row["kept"] and row["reason"].startswith("kept: accepted in review over ")
    assert metrics["review"]["kept_by_override"] == 1 and metrics["params"]["review"]["accepted_override"]
    decisions.write_text(HEADER)
    _prune(world)  # back to the module's first prune for the other tests


# ----------------------------------------------------------------------------------------- bad input

DUPLICATE = HEADER + '{pid},{sha},reject,a,t,\n{pid},{sha},accept,b,t,"two\nlines"\n{pid},{sha},flag,c,t,\n'


@pytest.mark.parametrize(("text", "message"), [
    ("pair_id,image_sha256,decision,reviewer,time\n", r"missing column 'note' .*line 1, field 'note'"),
    (HEADER + "nosuchpair,{sha},reject,a,t,\n", r"unknown pair id 'nosuchpair'.*line 2, field 'pair_id'"),
    (DUPLICATE, r"duplicate decision for pair '\w+' \(first on line 2\).*line 3, field 'pair_id'"),
    (HEADER + "{pid},{sha},maybe,a,t,\n", r"decision must be one of accept, reject, flag.*line 2, field 'decision'"),
], ids=["missing column", "unknown pair", "duplicate row", "unknown verdict"])
def test_a_broken_decisions_file_names_its_line(world: Path, decisions: Path, text: str, message: str, capsys):
    cands = pd.read_parquet(world / "data/pruned/candidates.parquet")
    decisions.write_text(text.format(pid=cands["pair_id"].iloc[0], sha=cands["image_sha256"].iloc[0]))
    digest = _digest(world / "data/pruned")
    with pytest.raises(InputError, match=message):
        _prune(world)
    assert _digest(world / "data/pruned") == digest  # nothing written
    # The app refuses to start on it, with the same line.
    assert main(["review", "--root", str(world), "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "decisions.csv, line" in err


def test_the_app_binds_to_loopback_unless_told_otherwise(world: Path, capsys):
    for host in ("0.0.0.0", "192.168.1.20", "llm.localhost"):
        with pytest.raises(InputError, match="--allow-external"):
            check_bind(host, allow_external=False)
        check_bind(host, allow_external=True)
    for host in ("127.0.0.1", "localhost", "::1"):
        check_bind(host, allow_external=False)
    assert main(["review", "--root", str(world), "--host", "0.0.0.0"]) == 2
    assert "not a loopback address" in capsys.readouterr().err


def test_images_are_served_from_inside_the_workspace_only(world: Path, decisions: Path):
    cands = pd.read_parquet(world / "data/pruned/candidates.parquet")
    with serve(world) as base:
        status, body = _get(base, "/image/" + os.path.normpath("data/pruned/" + cands["image"].iloc[0]))
        assert status == 200 and body.startswith(b"\x89PNG")
        assert _get(base, "/image/../../../etc/passwd")[0] == 403
        assert _get(base, "/image/data/%2e%2e/%2e%2e/%2e%2e/etc/passwd")[0] == 403
        assert _get(base, "/image//etc/passwd")[0] == 403
        assert _get(base, "/image/data/prepared/pairs.parquet")[0] == 404  # inside, but not an image
        status, body = _get(base, "/pairs?branch=intra&min=-1&max=1&score=s1")
        assert status == 200 and body.count(b'class="card ') == int((cands["branch"] == "intra").sum())
        status, body = _get(base, "/pairs?branch=intra&min=2&score=s1")
        assert status == 200 and b"No pair matches" in body


def test_decisions_are_a_dependency_of_prune_only():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    users = [name for name, spec in stages.items()
             if "review/decisions.csv" in json.dumps(spec.get("do", spec).get("deps", []))]
    assert users == ["prune"]
    assert "prune" in stages["prune"]["params"]  # prune.review.accepted_override is read through it
    assert yaml.safe_load((REPO / "params.yaml").read_text())["prune"]["review"] == {"accepted_override": False}
    assert (REPO / "review/decisions.csv").read_text().splitlines()[0] == HEADER.strip()


def test_a_rejected_intra_candidate_leaves_its_place_to_the_next_best(world: Path):
    from pairaug.prune import load_candidates, score_candidates

    cands = load_candidates(sources(world))
    twin = cands[cands["branch"] == "intra"].iloc[[0]].assign(pair_id="ffffffffffffffff")  # a second edit, same scores
    cands = pd.concat([cands, twin], ignore_index=True)
    cfg = PruneConfig(inter_tau=-0.5, intra_lambda=10.0)  # every intra candidate passes: only the ranking decides
    scorer = load_scorer(world / "models" / "scorer")
    first = twin["source_pair_id"].iloc[0]

    def kept_of_report(review: pd.Series | None) -> list[str]:
        df = score_candidates(cands, scorer, cfg, -0.5, progress=False, review=review)
        return sorted(df.loc[(df["branch"] == "intra") & (df["source_pair_id"] == first) & df["kept"], "pair_id"])

    (best,) = kept_of_report(None)
    (other,) = set(cands.loc[(cands["branch"] == "intra") & (cands["source_pair_id"] == first), "pair_id"]) - {best}
    assert kept_of_report(pd.Series({best: "reject"})) == [other]
