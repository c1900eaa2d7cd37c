"""MkDocs hook: the figures the pipeline writes (metrics/*.png, metrics/*/*.png) become files of the site.

Pages link them as `metrics/<name>.png`; they are read from the repository's metrics/ folder at build time,
so a rerun of the pipeline updates the site without copying anything by hand."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]


def on_files(files: Files, config) -> Files:
    for png in sorted((ROOT / "metrics").rglob("*.png")):
        rel = png.relative_to(ROOT).as_posix()
        if files.get_file_from_path(rel) is None:
            files.append(File(rel, src_dir=str(ROOT), dest_dir=config["site_dir"],
                              use_directory_urls=config["use_directory_urls"]))
    return files
