"""`polysemy report PATH`: an offline HTML (and Markdown) report of the runs under PATH.

polysemy report runs/demo                      # -> runs/demo/report/index.html
polysemy report runs/demo/analyses/neurons-mlp --out /tmp/neurons-report --json
"""

from __future__ import annotations

import argparse

from polysemy.cli._common import add_json_flag, emit
from polysemy.cli._flags import add_config_flags, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `report` command."""
    from polysemy.report.writer import ReportConfig

    p = subparsers.add_parser(
        "report",
        help="write an offline HTML + Markdown report of a run folder",
        description=(
            "Walk PATH (a demo run folder, a toy run, an SAE checkpoint or one analysis "
            "folder) for polysemy runs and write index.html (interactive plotly charts, their "
            "JS copied from the installed plotly package; PNG fallbacks), report.md and the "
            "figures to --out (default PATH/report). Neurons are shown as chorus cards. "
            "Opens from disk with no network."
        ),
    )
    p.add_argument("path", metavar="PATH", help="run folder, SAE, toy run or analysis folder")
    p.add_argument("--out", default=None, help="report folder (default PATH/report)")
    p.add_argument(
        "--force", action="store_true", help="replace an --out that holds another kind of run"
    )
    add_config_flags(p, ReportConfig)
    add_json_flag(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json

    from polysemy.report.writer import ReportConfig, write_report

    config = config_from_args(ReportConfig, args)
    out = write_report(args.path, args.out, force=args.force, config=config)
    record = json.loads((out / "report.json").read_text())
    obj = {
        "out": str(out),
        "page": str(out / "index.html"),
        "markdown": str(out / "report.md"),
        "interactive": record["interactive"],
        "sections": record["sections"],
        "charts": record["charts"],
        "chorus_cards": record["chorus_cards"],
    }
    text = (
        f"{len(obj['sections'])} sections, {obj['charts']} charts, {obj['chorus_cards']} "
        f"chorus cards -> {out}\nopen {(out / 'index.html').resolve()}"
    )
    emit(args, obj, text)
    return 0
