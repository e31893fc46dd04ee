"""DATASTORE quota usage of images (mirrors ``QuotaDatastore`` and ``Quota::check_quota``,
``Quota::del_quota``, ``Quota::cleanup_quota``, ``SharedAPI::quota_authorization``).

These work on working copies (``Quotas``) that ``Stage`` commits; uid 0 and gid 0
are never counted, as in oned.
"""

from __future__ import annotations

import math

from oned.objects.quotas import DATASTORE, Quotas

DEFAULT = -1.0
UNLIMITED = -2.0


def float_to_str(num: float) -> str:
    """``one_util::float_to_str``: no decimals when whole, else two."""
    if num == math.ceil(num):
        return f"{num:.0f}"
    return f"{num:.2f}"


def _num(text: str | None, default: float = 0.0) -> float:
    try:
        return float(text) if text is not None else default
    except ValueError:
        return default


def _limit_text(limit: float) -> str:
    """A limit as C++ streams print a float (``%g``)."""
    return f"{limit:g}"


def _entry(quotas: Quotas, ds_id: int) -> dict[str, str] | None:
    for entry in quotas.entries[DATASTORE.entry]:
        if entry.get("ID") == str(ds_id):
            return entry
    return None


def check(quotas: Quotas, defaults: Quotas, ds_id: int, usage: dict[str, float]) -> str | None:
    """``Quota::check_quota``: add ``usage`` or return why not (``quotas`` changes)."""
    entry = _entry(quotas, ds_id)
    if entry is None:
        entry = {"ID": str(ds_id)}
        for metric in DATASTORE.metrics:
            entry[metric] = "-1"
            entry[f"{metric}_USED"] = "0"
        quotas.entries[DATASTORE.entry].append(entry)
    default_entry = _entry(defaults, ds_id)
    for metric in DATASTORE.metrics:
        if metric not in usage:
            continue
        limit = _num(entry.get(metric), DEFAULT)
        used = _num(entry.get(f"{metric}_USED"))
        if limit == DEFAULT:
            limit = _num(default_entry.get(metric), UNLIMITED) if default_entry else UNLIMITED
        if limit != UNLIMITED and used + usage[metric] > limit:
            return (
                f"limit of {_limit_text(limit)} reached for {metric} quota in "
                f"{DATASTORE.entry} with ID: {ds_id}"
            )
    for metric, amount in usage.items():
        entry[f"{metric}_USED"] = float_to_str(_num(entry.get(f"{metric}_USED")) + amount)
    return None


def release(quotas: Quotas, ds_id: int, usage: dict[str, float]) -> None:
    """``Quota::del_quota`` then ``cleanup_quota`` (an unused default entry goes)."""
    entry = _entry(quotas, ds_id)
    if entry is None:
        return
    for metric, amount in usage.items():
        entry[f"{metric}_USED"] = float_to_str(_num(entry.get(f"{metric}_USED")) - amount)
    for metric in DATASTORE.metrics:
        if _num(entry.get(f"{metric}_USED")) != 0 or _num(entry.get(metric), DEFAULT) != DEFAULT:
            return
    quotas.entries[DATASTORE.entry].remove(entry)


def usage_of(size: float, images: int = 1) -> dict[str, float]:
    return {"IMAGES": float(images), "SIZE": float(size)}
