"""User and group quotas (mirrors ``Quotas.h``, ``QuotaVirtualMachine`` & co).

Four sections, each a list of entries; every metric has a limit and a ``<METRIC>_USED``
counter, stored as strings. Limit -1 means "use the default quota", -2 unlimited.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field

from lxml import etree

from oned.template import Template, cdata

VM_METRICS = (
    "CPU",
    "MEMORY",
    "PCI_DEV",
    "PCI_NIC",
    "RUNNING_CPU",
    "RUNNING_MEMORY",
    "RUNNING_PCI_DEV",
    "RUNNING_PCI_NIC",
    "RUNNING_VMS",
    "SYSTEM_DISK_SIZE",
    "VMS",
)


@dataclass(frozen=True)
class QuotaKind:
    """One quota section: its XML tags, template name, key and metrics."""

    section: str
    entry: str
    key: str | None
    metrics: tuple[str, ...]


DATASTORE = QuotaKind("DATASTORE_QUOTA", "DATASTORE", "ID", ("IMAGES", "SIZE"))
NETWORK = QuotaKind("NETWORK_QUOTA", "NETWORK", "ID", ("LEASES",))
VM = QuotaKind("VM_QUOTA", "VM", None, VM_METRICS)
IMAGE = QuotaKind("IMAGE_QUOTA", "IMAGE", "ID", ("RVMS",))
KINDS = (DATASTORE, NETWORK, VM, IMAGE)
BY_ENTRY = {k.entry: k for k in KINDS}


class QuotaError(ValueError):
    """A quota template that cannot be applied."""


def _fields(kind: QuotaKind) -> list[str]:
    out = [kind.key] if kind.key else []
    for metric in kind.metrics:
        out += [metric, f"{metric}_USED"]
    return sorted(out)


@dataclass
class Quotas:
    """All quota entries of one user or group (or the defaults)."""

    entries: dict[str, list[dict[str, str]]] = field(
        default_factory=lambda: {k.entry: [] for k in KINDS}
    )

    def to_xml(self, defaults: bool = False) -> str:
        """The four sections in XSD order; VM entries omit CLUSTER_IDS unless set."""
        out = []
        for kind in KINDS:
            out.append(f"<{kind.section}>")
            for entry in self.entries[kind.entry]:
                out.append(f"<{kind.entry}>")
                if kind is VM and entry.get("CLUSTER_IDS") and not defaults:
                    out.append(f"<CLUSTER_IDS>{cdata(entry['CLUSTER_IDS'])}</CLUSTER_IDS>")
                for name in _fields(kind):
                    out.append(f"<{name}>{cdata(entry.get(name, '0'))}</{name}>")
                out.append(f"</{kind.entry}>")
            out.append(f"</{kind.section}>")
        return "".join(out)

    @classmethod
    def from_xml(cls, root: etree._Element | None) -> Quotas:
        quotas = cls()
        if root is None:
            return quotas
        for kind in KINDS:
            for node in root.findall(f"{kind.section}/{kind.entry}"):
                quotas.entries[kind.entry].append(
                    {str(c.tag): c.text or "" for c in node if isinstance(c.tag, str)}
                )
        return quotas

    def copy(self) -> Quotas:
        return Quotas({k: [dict(e) for e in v] for k, v in self.entries.items()})

    def with_limits(
        self, tmpl: Template, is_default: bool = False, clusters: set[int] | None = None
    ) -> Quotas:
        """A copy with the limits of ``tmpl`` applied (this object is unchanged)."""
        staged = self.copy()
        staged.set_limits(tmpl, is_default, clusters)
        return staged

    def set_limits(
        self, tmpl: Template, is_default: bool = False, clusters: set[int] | None = None
    ) -> None:
        """``Quotas::set``, in place: DATASTORE, NETWORK, IMAGE then VM vectors, each
        vector's metrics in oned's order. Like oned, what was applied before a bad
        vector (or a bad metric of an existing entry) stays applied when it raises.

        Metrics missing from a vector fall back to -1 (default quota) or, in the
        default quotas themselves, -2 (unlimited). ``clusters`` (the existing cluster
        ids) is checked for the CLUSTER_IDS of new VM quotas.
        """
        for kind in (DATASTORE, NETWORK, IMAGE, VM):
            for value in tmpl.vectors(kind.entry):
                self._set_one(kind, value, is_default, clusters)

    def _set_one(
        self,
        kind: QuotaKind,
        value: dict[str, str],
        is_default: bool,
        clusters: set[int] | None,
    ) -> None:
        entries = self.entries[kind.entry]
        if kind is VM:
            key = value.get("CLUSTER_IDS", "")
            ids = _split_ids(key)
            if key:
                key = value["CLUSTER_IDS"] = ",".join(str(i) for i in ids)
            entry = next((e for e in entries if e.get("CLUSTER_IDS", "") == key), None)
            if entry is None:
                for cid in ids:
                    if clusters is not None and cid not in clusters:
                        raise QuotaError(f"Cluster {cid} does not exist")
                    if any(cid in _split_ids(e.get("CLUSTER_IDS", "")) for e in entries):
                        raise QuotaError(f"Quota for cluster id {cid} already exists")
        else:
            assert kind.key is not None
            key = value.get(kind.key, "")
            if not _valid_id(key):
                raise _bad_limits(kind, value)
            entry = next((e for e in entries if e.get(kind.key) == key), None)
        if entry is None:
            entries.append(_new_entry(kind, value, is_default))
        else:
            for metric in ORDER[kind.entry]:
                limit = _limit(value.get(metric), is_default)
                if limit is None:
                    raise _bad_limits(kind, value)
                entry[metric] = limit
        self._cleanup(kind, key, is_default)

    def _cleanup(self, kind: QuotaKind, key: str, is_default: bool) -> None:
        """``Quota::cleanup_quota``: drop an entry left at its implicit limits, unused."""
        entries = self.entries[kind.entry]
        field_name = "CLUSTER_IDS" if kind is VM else str(kind.key)
        entry = next((e for e in entries if e.get(field_name, "") == key), None)
        if entry is None:
            return
        is_cluster = bool(entry.get("CLUSTER_IDS"))
        implicit = -2.0 if is_default or is_cluster else -1.0
        if is_cluster:
            for metric in kind.metrics:
                if entry.get(metric) == "-1":
                    entry[metric] = "-2"
        for metric in kind.metrics:
            used = _float(entry.get(f"{metric}_USED", "0"))
            if (not is_cluster and used not in (None, 0.0)) or _float(
                entry.get(metric, "")
            ) != implicit:
                return
        entries.remove(entry)


ORDER = {
    "DATASTORE": ("SIZE", "IMAGES"),
    "NETWORK": ("LEASES",),
    "IMAGE": ("RVMS",),
    "VM": (
        "VMS",
        "RUNNING_VMS",
        "CPU",
        "RUNNING_CPU",
        "MEMORY",
        "RUNNING_MEMORY",
        "PCI_DEV",
        "RUNNING_PCI_DEV",
        "PCI_NIC",
        "RUNNING_PCI_NIC",
        "SYSTEM_DISK_SIZE",
    ),
}
"""Metrics in the order oned applies them (``Quota*::*_METRICS``)."""

_NUMBER = re.compile(r"[ \t\n\v\f\r]*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_ID = re.compile(r"[ \t\n\v\f\r]*[+-]?\d+")


def _float(raw: str | None) -> float | None:
    """``istringstream >> float`` that must consume everything (None when it fails),
    rounded to a C ``float``."""
    if raw is None or not _NUMBER.fullmatch(raw):
        return None
    try:
        number = float(struct.unpack("f", struct.pack("f", float(raw)))[0])
    except (OverflowError, struct.error):
        return None
    return None if math.isinf(number) else number


def _valid_id(raw: str) -> bool:
    return bool(_ID.fullmatch(raw)) and -(2**31) <= int(raw) < 2**31


def _split_ids(raw: str) -> list[int]:
    """``one_util::split_unique`` of CLUSTER_IDS: unique ids, sorted; junk skipped."""
    out: set[int] = set()
    for part in raw.split(","):
        match = re.match(r"[ \t\n\v\f\r]*[+-]?\d+", part)
        if match and -(2**31) <= int(match.group(0)) < 2**31:
            out.add(int(match.group(0)))
    return sorted(out)


def _limit(raw: str | None, is_default: bool) -> str | None:
    """A limit as oned stores it (``float_to_str``); None when it is not allowed.

    Missing or unparsable values are the implicit limit (-1, or -2 in defaults);
    negatives other than -1/-2 (-2 only, in defaults) are refused."""
    number = _float(raw) if raw else None
    if number is None:
        number = -2.0 if is_default else -1.0
    if number < 0 and (number != -2.0 and (is_default or number != -1.0)):
        return None
    return _float_to_str(number)


def _float_to_str(number: float) -> str:
    """``one_util::float_to_str``: no decimals for whole numbers, else two."""
    if number == math.ceil(number):
        return f"{number:.0f}"
    return f"{number:.2f}"


def _bad_limits(kind: QuotaKind, value: dict[str, str]) -> QuotaError:
    marshal = ",".join(f"{k}={value[k]}" for k in sorted(value))
    return QuotaError(f"Negative limits or bad format in quota {kind.entry} = [ {marshal} ]")


def _new_entry(kind: QuotaKind, value: dict[str, str], is_default: bool) -> dict[str, str]:
    """``Quota::new_quota``: every metric's limit (all checked first) and usage 0."""
    entry: dict[str, str] = {}
    for metric in ORDER[kind.entry]:
        limit = _limit(value.get(metric), is_default)
        if limit is None:
            raise _bad_limits(kind, value)
        entry[metric] = limit
        entry[f"{metric}_USED"] = "0"
    if kind.key and value.get(kind.key):
        entry[kind.key] = value[kind.key]
    if value.get("CLUSTER_IDS"):
        entry["CLUSTER_IDS"] = value["CLUSTER_IDS"]
    return entry
