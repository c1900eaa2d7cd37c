"""Redraw the README's screenshots from a repository (the default run's workspace and mlflow.db):

    python docs/screenshots.py /path/to/repo      # writes docs/mlflow-runs.png, docs/mlflow-training-curve.png,
                                                  # docs/mlflow-prompts.png
    python docs/screenshots.py /path/to/repo --only review    # writes docs/review.png

Serves the store with `pairaug ui`, opens its runs-table link in Debian's Chromium (Playwright), and
takes the runs table as the link lands on it (no "shared view" banner), the first `pairaug` run's
live-logged `valid_score` curve, and the Prompt Registry page with the rewrite instructions; serves the
workspace with `pairaug review` (it records nothing: no key is pressed) and takes a page of intra pairs.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

DOCS = Path(__file__).resolve().parent


def ui_link(repo: Path, log_path: Path, port: int, command: tuple[str, ...] = ("ui", "--wait", "240")
            ) -> tuple[subprocess.Popen, str]:
    """Start `pairaug <command> --port <port>` in `repo`; return the process and the link it prints."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    log = open(log_path, "w+")  # noqa: SIM115 - the server writes to it until the end
    proc = subprocess.Popen([sys.executable, "-m", "pairaug.cli", *command, "--port", str(port)],
                            cwd=repo, stdout=log, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    for _ in range(600):
        time.sleep(0.5)
        log.seek(0)
        if found := re.findall(r"^http://\S+$", log.read(), re.M):
            return proc, found[0]
    os.killpg(proc.pid, signal.SIGTERM)
    sys.exit(f"pairaug {command[0]} printed no link (log: {log_path})")


def review_screenshot(repo: Path, port: int) -> None:
    """docs/review.png: a page of intra pairs (source film, source-branch image, edit, reports, scores)."""
    proc, url = ui_link(repo, repo / "review.log", port, ("review", "--reviewer", "screenshot", "--per-page", "6"))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(url.replace("/pairs", "/pairs?branch=intra&per_page=6"))
            page.wait_for_function("Array.from(document.images).filter(i => i.closest('#cards') && "
                                   "i.getBoundingClientRect().top < innerHeight).every(i => i.complete)")
            page.screenshot(path=str(DOCS / "review.png"))
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("repo", type=Path)
    ap.add_argument("--port", type=int, default=5123)
    ap.add_argument("--only", choices=["mlflow", "review"], help="only these screenshots (default: all)")
    args = ap.parse_args()
    if args.only != "mlflow":
        review_screenshot(args.repo, args.port + 1)
    if args.only == "review":
        return
    run_id, exp_id = sqlite3.connect(args.repo / "mlflow.db").execute(
        "select r.run_uuid, r.experiment_id from runs r join tags t on t.run_uuid = r.run_uuid "
        "where t.key = 'mix' and t.value = 'pairaug' order by r.start_time limit 1").fetchone()
    proc, url = ui_link(args.repo, args.repo / "ui.log", args.port)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.goto(url)
            page.get_by_text("pairaug-seed0", exact=True).first.wait_for(timeout=120_000)
            page.locator('[aria-label="Close"]').last.click(timeout=10_000)  # MLflow 3's assistant side panel
            time.sleep(2)
            if page.get_by_text("viewing a shared view").count():
                sys.exit("the runs table opened under MLflow's shared-view banner")
            page.screenshot(path=str(DOCS / "mlflow-runs.png"))
            page.goto(f"{url.split('#')[0]}#/experiments/{exp_id}/runs/{run_id}/model-metrics")
            page.get_by_placeholder("Search metric charts").fill("valid_score")
            time.sleep(5)
            curve = DOCS / "mlflow-training-curve.png"
            page.screenshot(path=str(curve))
            page.goto(f"{url.split('#')[0]}#/prompts")
            for task in ("inter", "intra", "paraphrase"):
                page.get_by_text(f"pairaug-rewrite-{task}", exact=True).first.wait_for(timeout=60_000)
            time.sleep(2)
            page.screenshot(path=str(DOCS / "mlflow-prompts.png"))
            browser.close()
        Image.open(curve).crop((0, 0, 1600, 640)).save(curve)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)


if __name__ == "__main__":
    main()
