"""The Prometheus text exposition format (version 0.0.4), written directly.

prometheus_client's ``generate_latest`` formats every sample through several layers of
objects; the pool families hold ten samples per VM, so they are written here as plain
strings (and the exporter caches each object's lines until it changes).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label(value: str) -> str:
    """A label value as the format quotes it."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def labels(*pairs: tuple[str, object]) -> str:
    """``{a="1",b="x"}`` (values escaped)."""
    return "{" + ",".join(f'{k}="{escape_label(str(v))}"' for k, v in pairs) + "}"


def value(number: float) -> str:
    """A sample value: integers without a fraction, floats as Python writes them."""
    if isinstance(number, bool):
        return "1" if number else "0"
    if isinstance(number, int):
        return str(number)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return repr(number)


def header(name: str, help_text: str, kind: str = "gauge") -> str:
    """The ``# HELP`` and ``# TYPE`` lines of a family."""
    doc = help_text.replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {kind}\n"


def family(name: str, help_text: str, lines: Iterable[str], kind: str = "gauge") -> str:
    """A whole family: header, then its sample lines (each ending in a newline)."""
    return header(name, help_text, kind) + "".join(lines)
