"""``oned-audit verify [--partial] [--anchor HASH] [PATH...]``: check audit chains.

Without PATH, the AUDIT PATH of ``$ONE_LOCATION/etc/oned.conf`` (default
``var/audit.log``) is checked. A PATH with rotated files beside it (``PATH.<n>``) is
checked together with them, oldest first. Exit status: 0 intact, 1 broken (the first
broken link is printed: file, line, expected vs found), 2 usage or read errors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from oned.audit.verify import chain_files, verify


def _default_path() -> Path:
    from oned.config import ConfigError, parse_config_text
    from oned.locations import Locations

    locations = Locations.from_env()
    try:
        text = locations.oned_conf.read_text(encoding="utf-8")
        return parse_config_text(text, locations).audit.file_path(locations.var)
    except (OSError, ConfigError):
        return locations.var / "audit.log"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oned-audit", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("verify", help="check the hash chain of audit logs")
    check.add_argument("paths", nargs="*", type=Path, help="audit log files, in chain order")
    check.add_argument(
        "--partial",
        action="store_true",
        help="accept a chain whose oldest files were rotated away (KEEP)",
    )
    check.add_argument(
        "--anchor",
        metavar="HASH",
        help="a 'last hash' printed earlier: fail unless that record is still in the chain",
    )
    args = parser.parse_args(argv)
    paths: list[Path] = args.paths or [_default_path()]
    files = chain_files(paths[0]) if len(paths) == 1 else paths
    if not files:
        print(f"oned-audit: no audit log at {paths[0]}", file=sys.stderr)
        return 2
    report = verify(files, partial=args.partial, anchor=args.anchor)
    if report.problem is not None:
        print(f"BROKEN after {report.records} good records", file=sys.stdout)
        print(report.problem.describe())
        return 1
    print(
        f"OK: {report.records} records in {len(files)} file(s), chain intact; "
        f"last seq {report.last_seq}, last hash {report.last_hash}"
    )
    return 0


def run() -> None:
    """Console script entry point."""
    sys.exit(main())
