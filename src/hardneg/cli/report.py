"""``hardneg report``: the run's report as one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

from hardneg.cli.checks import check_output
from hardneg.errors import HardnegError


def register(sub) -> None:
    """Add ``report`` to the ``hardneg`` parser."""
    rp = sub.add_parser(
        "report", help="write a self-contained HTML page with the run's plots",
        description="Render RUN_DIR/report.json and the saved score samples as one HTML page with embedded PNG plots.",
    )
    rp.add_argument("run_dir", help="a run directory written by `hardneg mine`")
    rp.add_argument("--output", "-o", help="page to write (default: RUN_DIR/report.html)")
    rp.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from hardneg.report import MiningReport
    from hardneg.report_html import render_html
    from hardneg.store import RunDir

    if not Path(args.run_dir).is_dir():
        raise HardnegError(f"{args.run_dir} is not a run directory; pass the --run-dir of a `hardneg mine` run.")
    run = RunDir(args.run_dir)
    page = Path(args.output) if args.output else run.page
    if page.resolve() != run.page.resolve():
        check_output(page, args, run_dir=args.run_dir)
    report = MiningReport.load(run.report) if run.report.is_file() else None
    page = render_html(run.path, page)
    if report is not None:
        print(report.format_table())
    print(f"page      {page}")
    return 0
