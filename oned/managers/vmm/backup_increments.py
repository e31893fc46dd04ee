"""``BACKUP_INCREMENTS`` of a BACKUP image (mirrors ``BackupIncrements``/``IncrementSet``):
one ``INCREMENT`` per backup of an incremental chain (the first one FULL)."""

from __future__ import annotations

from lxml import etree

from oned.objects.image import Image
from oned.template import cdata

FULL, INCREMENT = "FULL", "INCREMENT"


def increments_of(image: Image) -> list[dict[str, str]]:
    root = etree.fromstring(image.increments.encode())
    return [
        {str(c.tag): c.text or "" for c in inc if isinstance(c.tag, str)}
        for inc in root.findall("INCREMENT")
    ]


def _render(increments: list[dict[str, str]]) -> str:
    body = "".join(
        "<INCREMENT>" + "".join(f"<{k}>{cdata(inc[k])}</{k}>" for k in sorted(inc)) + "</INCREMENT>"
        for inc in sorted(increments, key=lambda i: int(i.get("ID", "0") or 0))
    )
    return f"<BACKUP_INCREMENTS>{body}</BACKUP_INCREMENTS>"


def last_increment_id(image: Image) -> int:
    """``last_increment_id``: -1 without increments."""
    ids = [int(i["ID"]) for i in increments_of(image) if i.get("ID", "").strip().isdigit()]
    return max(ids) if ids else -1


def add_increment(image: Image, source: str, size: int, kind: str, now: int) -> int:
    """``Image::add_increment``: a new increment after the last one (a chain starts
    FULL); the image's SIZE becomes the chain's total. Returns its id, or -1."""
    increments = increments_of(image)
    parent = last_increment_id(image)
    if parent == -1 and kind != FULL:
        return -1
    new_id = parent + 1
    increments.append(
        {
            "DATE": str(now),
            "ID": str(new_id),
            "PARENT_ID": str(parent),
            "SIZE": str(size),
            "SOURCE": source,
            "TYPE": kind,
        }
    )
    image.increments = _render(increments)
    image.size = sum(int(i.get("SIZE", "0") or 0) for i in increments)
    return new_id
