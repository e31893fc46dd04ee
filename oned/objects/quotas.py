"""User and group quotas (mirrors ``Quotas.h``, ``QuotaVirtualMachine`` & co).

Four sections, each a list of entries; every metric has a limit and a ``<METRIC>_USED``
counter, stored as strings. Limit -1 means "use the default quota", -2 unlimited.
"""

from __future__ import annotations

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


def _limit(raw: str | None, implicit: str) -> str | None:
    """A limit as oned stores it (``float_to_str``); None when it is not valid."""
    if raw is None:
        return implicit
    try:
        number = float(raw.strip())
    except ValueError:
        return implicit
    if number < 0 and number not in (-1.0, -2.0):
        return None
    if implicit == "-2" and number == -1.0:
        return None
    if number == int(number):
        return str(int(number))
    return f"{number:.2f}"


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

    def with_limits(self, tmpl: Template, is_default: bool = False) -> Quotas:
        """A copy with the limits of ``tmpl`` applied (this object is unchanged)."""
        staged = Quotas({k: [dict(e) for e in v] for k, v in self.entries.items()})
        staged.set_limits(tmpl, is_default)
        return staged

    def set_limits(self, tmpl: Template, is_default: bool = False) -> None:
        """``Quotas::set``: for each vector, replace every limit of its entry.

        Metrics missing from a vector fall back to -1 (default quota) or, in the
        default quotas themselves, -2 (unlimited).
        """
        implicit = "-2" if is_default else "-1"
        staged = {k: [dict(e) for e in v] for k, v in self.entries.items()}
        for kind in (DATASTORE, NETWORK, IMAGE, VM):
            for value in tmpl.vectors(kind.entry):
                entry = self._find(staged[kind.entry], kind, value)
                if entry is None:
                    entry = self._new_entry(kind, value)
                    staged[kind.entry].append(entry)
                for metric in kind.metrics:
                    limit = _limit(value.get(metric), implicit)
                    if limit is None:
                        marshal = ",".join(f"{k}={value[k]}" for k in sorted(value))
                        raise QuotaError(
                            f"Negative limits or bad format in quota {kind.entry} = [ {marshal} ]"
                        )
                    entry[metric] = limit
            staged[kind.entry] = [
                e
                for e in staged[kind.entry]
                if not (
                    all(e.get(m) == implicit for m in kind.metrics)
                    and all(float(e.get(f"{m}_USED", "0") or 0) == 0 for m in kind.metrics)
                )
            ]
        self.entries = staged

    @staticmethod
    def _find(
        entries: list[dict[str, str]], kind: QuotaKind, value: dict[str, str]
    ) -> dict[str, str] | None:
        if kind.key is None:
            wanted = value.get("CLUSTER_IDS", "")
            for entry in entries:
                if entry.get("CLUSTER_IDS", "") == wanted:
                    return entry
            return None
        key = value.get(kind.key, "").strip()
        try:
            int(key)
        except ValueError as exc:
            raise QuotaError(f"String '{key}' is not a valid ID") from exc
        for entry in entries:
            if entry.get(kind.key) == key:
                return entry
        return None

    @staticmethod
    def _new_entry(kind: QuotaKind, value: dict[str, str]) -> dict[str, str]:
        entry: dict[str, str] = {}
        if kind.key:
            entry[kind.key] = value[kind.key].strip()
        elif value.get("CLUSTER_IDS"):
            entry["CLUSTER_IDS"] = value["CLUSTER_IDS"]
        for metric in kind.metrics:
            entry[metric] = "-1"
            entry[f"{metric}_USED"] = "0"
        return entry
