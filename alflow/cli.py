"""The ``alflow`` command, for people on a login node next to a campaign.

    alflow status [RESULTS]        where the campaign stands (running or not), from its files
    alflow report --configfile F   the report of every finished iteration (snakemake --report)

Campaigns themselves run with snakemake (see the README): this command only
reads their files, and builds the report with Snakemake's own --report.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

#: The workflow this package belongs to (an editable install of the checkout).
WORKFLOW = Path(__file__).resolve().parent.parent / "Snakefile"


def _status(args: argparse.Namespace) -> int:
    from .status import campaign_status, format_status

    try:
        table, info = campaign_status(args.results, args.directory)
    except FileNotFoundError as exc:
        print(f"alflow status: {exc}", file=sys.stderr)
        return 2
    if args.csv:
        table.to_csv(sys.stdout, index=False)
    else:
        print(format_status(table, info, args.results))
    return 0


def _snakemake() -> str:
    here = Path(sys.executable).parent / "snakemake"
    return str(here) if here.exists() else (shutil.which("snakemake") or "snakemake")


def _report(args: argparse.Namespace, extra: list[str]) -> int:
    from .status import REPORT_ENV

    if not WORKFLOW.exists():
        print(f"alflow report: the workflow {WORKFLOW} is missing (alflow must be installed "
              "from its checkout with pip install -e)", file=sys.stderr)
        return 2
    out = args.output or str(Path(args.results) / "report.html")
    cmd = [_snakemake(), "-s", str(WORKFLOW), "--configfile", *args.configfile]
    if args.profile:
        cmd += ["--profile", args.profile]
    else:
        cmd += ["--cores", "1"]
    cmd += [*extra, "--report", out]
    env = dict(os.environ, **{REPORT_ENV: "1"})
    print("running:", " ".join(cmd), file=sys.stderr)
    proc = subprocess.run(cmd, env=env)
    if proc.returncode == 0:
        print(f"report of the finished iterations: {Path(out).resolve()}")
    return proc.returncode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="alflow", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    st = sub.add_parser("status", help="the campaign table of a running or finished campaign")
    st.add_argument("results", nargs="?", default="results",
                    help="the campaign's results directory (default: results)")
    st.add_argument("--directory", "-d", default=None,
                    help="where snakemake runs (default: the nearest directory at or above "
                         "RESULTS with a .snakemake directory)")
    st.add_argument("--csv", action="store_true", help="the table as CSV")
    rp = sub.add_parser("report", help="the report of the finished iterations",
                        description="Builds Snakemake's report of every finished iteration "
                        "(and of the validation, once done) of a running, stopped or finished "
                        "campaign. Other options are passed on to snakemake.")
    rp.add_argument("--configfile", nargs="+", required=True,
                    help="the campaign's config file(s), as given to snakemake")
    rp.add_argument("--profile", default=None, help="the profile the campaign runs with")
    rp.add_argument("--results", default="results",
                    help="the campaign's results directory (default: results)")
    rp.add_argument("--output", "-o", default=None,
                    help="the report file (default: RESULTS/report.html)")
    args, extra = ap.parse_known_args(argv)
    if args.command == "status":
        if extra:
            ap.error(f"unrecognized arguments: {' '.join(extra)}")
        return _status(args)
    return _report(args, extra)


if __name__ == "__main__":
    sys.exit(main())
