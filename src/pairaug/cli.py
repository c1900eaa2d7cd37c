"""The `pairaug` command: tools around the DVC pipeline (the pipeline itself runs with `dvc repro`)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence

from pairaug.errors import PairaugError


def _replace_unencodable_output() -> None:
    # A terminal or pipe in ASCII / Latin-1 gets "?" for what it cannot show instead of a traceback.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")


def _cmd_label(args: argparse.Namespace) -> None:
    from pairaug.console import clean_arg, read_stdin_text
    from pairaug.data.labeler import label_report
    from pairaug.data.schema import LABELS
    from pairaug.data.tables import read_csv

    if args.csv:
        df = read_csv(args.csv, required=[args.column])
        reports = [str(r) for r in df[args.column]]
    elif args.text:
        reports = [clean_arg(t) for t in args.text]
    else:
        reports = [line.strip() for line in read_stdin_text().splitlines() if line.strip()]
    rows = [label_report(r) for r in reports]
    if args.format == "json":
        out = [{"report": r, "labels": {k: v for k, v in row.items() if v is not None}} for r, row in zip(reports, rows)]
        json.dump(out if len(out) != 1 else out[0], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        writer = csv.writer(sys.stdout)
        writer.writerow(["report", *LABELS])
        for r, row in zip(reports, rows):
            writer.writerow([r, *["" if row[k] is None else row[k] for k in LABELS]])


def _cmd_inspect(args: argparse.Namespace) -> None:
    from pairaug.data.provenance import FIELDS, PREFIX, read_text_chunks

    for i, path in enumerate(args.image):
        chunks = read_text_chunks(path)
        fields = {k.removeprefix(PREFIX): v for k, v in chunks.items() if k.startswith(PREFIX)}
        if args.format == "json":
            out = {"image": path, "provenance": fields or None}
            sys.stdout.write(json.dumps(out, indent=2) + "\n")
            continue
        if i:
            print()
        print(f"{path}: {'synthetic image, pairaug provenance' if fields else 'no provenance (no pairaug text chunks)'}")
        # the known fields in their order, then any others (a newer writer's)
        for key in [*[k for k in FIELDS if k in fields], *sorted(set(fields) - set(FIELDS))]:
            print(f"  {key:16} {fields[key]}")


def _cmd_params_schema(args: argparse.Namespace) -> None:
    from pairaug.params_schema import SCHEMA_FILE, write_schema
    from pairaug.paths import repo_root

    print(f"wrote {write_schema(args.out or repo_root() / SCHEMA_FILE)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pairaug",
        description="PairAug for radiology. Run the pipeline with `dvc repro`; these commands inspect and explore it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("label", help="label report text with the rule-based CheXpert-style labeler",
                       description="Label reports (1 positive, 0 negative, -1 uncertain, empty = not mentioned).")
    p.add_argument("text", nargs="*", help="report text(s); reads lines from stdin when none and no --csv "
                                           "(UTF-8; undecodable bytes become U+FFFD)")
    p.add_argument("--csv", help="a CSV file holding reports")
    p.add_argument("--column", default="report", help="the CSV column holding reports (default: report)")
    p.add_argument("--format", choices=["json", "csv"], default="json")
    p.set_defaults(func=_cmd_label)

    p = sub.add_parser("inspect", help="print the provenance a synthetic PNG carries (its pairaug text chunks)",
                       description="Print the provenance text chunks of PNG images: synthetic or not, pair id, "
                                   "branch, source pair, prompt hash, generator fingerprint, sampling settings, "
                                   "package version. A PNG without them (a real film) prints 'no provenance'.")
    p.add_argument("image", nargs="+", help="PNG file(s)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("params", help="params.yaml tools (`pairaug params schema` writes params.schema.json)",
                       description="Tools for params.yaml.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = actions.add_parser("schema", help="write params.schema.json, the JSON Schema editors check params.yaml with",
                           description="Write the JSON Schema of params.yaml (every section's keys, types, bounds "
                                       "and defaults), which params.yaml's first line points editors at.")
    p.add_argument("--out", help="where to write it (default: params.schema.json at the repository root)")
    p.set_defaults(func=_cmd_params_schema)

    for register in _extensions():
        register(sub)
    return parser


def _extensions():
    """Subcommands contributed by other concerns (rewrite preview, audit, ui, review): a list of register functions."""
    from pairaug.report.cli import register as register_curve
    from pairaug.report.cli import register_replicate
    from pairaug.review.cli import register as register_review
    from pairaug.rewrite.cli import register as register_rewrite
    from pairaug.tracking.cli import register as register_tracking  # audit, ui, model

    return [register_rewrite, register_tracking, register_curve, register_replicate, register_review]


def main(argv: Sequence[str] | None = None) -> int:
    _replace_unencodable_output()
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except PairaugError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
