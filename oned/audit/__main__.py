"""``python -m oned.audit verify ...`` (same as ``oned-audit``)."""

from oned.audit.cli import run

run()
