"""Checks an audit chain and names its first broken link.

Each record's ``prev`` must be the SHA-256 of the previous record's line and its ``seq``
one more than the previous record's; the first record of a file follows the last one
of the file before it. A line that is not a JSON record (or a torn last line) is named
as corrupted. A chain must start at the genesis hash (64 zeros) unless ``partial``
(older files rotated away by KEEP).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oned.audit.writer import GENESIS, in_chain_order, line_hash, rotated_files


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int
    what: str
    expected: str = ""
    found: str = ""

    def describe(self) -> str:
        text = f"{self.path}:{self.line}: {self.what}"
        if self.expected or self.found:
            text += f"\n  expected: {self.expected}\n  found:    {self.found}"
        return text


@dataclass
class Report:
    files: list[Path] = field(default_factory=list)
    records: int = 0
    last_hash: str = GENESIS
    last_seq: int = 0
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def chain_files(path: Path) -> list[Path]:
    """``path`` and its rotated files, in chain order (by their first record's seq;
    files without a readable first record keep their place by name)."""
    return in_chain_order([*rotated_files(path), path] if path.exists() else rotated_files(path))


def _record(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("prev"), str):
        return None
    if not isinstance(record.get("seq"), int):
        return None
    return record


def _shown(line: bytes) -> str:
    text = line[:120].decode("utf-8", "replace")
    return text + ("..." if len(line) > 120 else "")


def verify(files: list[Path], partial: bool = False, anchor: str | None = None) -> Report:
    """Walk ``files`` in order; stop at the first broken link. ``anchor``: the hash of
    a record noted earlier (a ``last hash``), which must still be in the chain."""
    report = Report(files=list(files))
    anchored = anchor is None
    expected: str | None = None if partial else GENESIS
    seq: int | None = None if partial else 0
    previous = ""
    for path in files:
        try:
            handle = path.open("rb")
        except OSError as exc:
            report.problem = Problem(path, 0, f"cannot read: {exc.strerror}")
            return report
        with handle:
            for number, raw in enumerate(handle, start=1):
                problem = _check(path, number, raw, expected, seq, previous)
                if problem is not None:
                    report.problem = problem
                    return report
                line = raw[:-1]
                record = _record(line)
                assert record is not None
                expected = line_hash(line)
                seq = record["seq"]
                report.records += 1
                report.last_hash = expected
                report.last_seq = record["seq"]
                previous = f"{path.name}:{number}"
                anchored = anchored or expected == anchor
    if not anchored and files:
        what = "anchor not found: the records up to it were removed or altered"
        report.problem = Problem(files[-1], 0, what, str(anchor), report.last_hash)
    return report


def _check(
    path: Path, number: int, raw: bytes, expected: str | None, seq: int | None, previous: str
) -> Problem | None:
    if not raw.endswith(b"\n"):
        return Problem(path, number, "corrupted line: torn (no newline)", "", _shown(raw))
    record = _record(raw[:-1])
    if record is None:
        return Problem(path, number, "corrupted line: not an audit record", "", _shown(raw))
    if expected is not None and record["prev"] != expected:
        what = (
            f"broken link: prev is not the hash of the record before it ({previous}): "
            "that record was altered, or records between them were removed"
        )
        if expected == GENESIS:
            what = "broken link: the chain does not start at the genesis hash"
        return Problem(path, number, what, expected, record["prev"])
    if seq is not None and record["seq"] != seq + 1:
        what = "broken link: seq does not follow the previous record's (records missing)"
        return Problem(path, number, what, str(seq + 1), str(record["seq"]))
    return None
