"""VMM driver configuration and the attribute look-up of the libvirt writer (mirrors
``VirtualMachineManagerDriver``'s ``driver_conf`` and ``get_attribute``).

A ``VM_MAD`` section of oned.conf may name a ``DEFAULT`` file (relative to the ``etc``
directory, e.g. ``vmm_exec/vmm_exec_kvm.conf``) whose attributes are the driver's
defaults; the section's own attributes are copied over them. The writer looks every
setting up in the VM template first, then the host's, then the cluster's, then these
defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from oned.locations import packaged_share
from oned.log import logger
from oned.template import Template
from oned.template.parser import TemplateSyntaxError, parse_text

if TYPE_CHECKING:
    from oned.core import Core

log = logger("VMM")

#: Parsed DEFAULT files, by path and modification time.
_CACHE: dict[tuple[str, float], Template] = {}


def vm_mad_section(core: Core, name: str) -> dict[str, str] | None:
    """The ``VM_MAD`` vector of oned.conf called ``name`` (None when absent)."""
    for vector in core.config.vectors("VM_MAD"):
        if vector.get("NAME", "") == name:
            return vector
    return None


def _read_defaults(core: Core, default: str) -> Template:
    if default.startswith("/"):
        candidates = [Path(default)]
    else:
        candidates = [
            core.config.locations.etc / default,
            packaged_share() / "etc" / default,
        ]
    for path in candidates:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            continue
        key = (str(path), mtime)
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        try:
            tmpl = parse_text(path.read_text(encoding="utf-8"), trim=False)
        except (OSError, UnicodeDecodeError, TemplateSyntaxError) as exc:
            log.error(f"Error loading driver configuration file {path} : {exc}")
            return Template()
        _CACHE[key] = tmpl
        return tmpl
    log.error(f"Error loading driver configuration file {candidates[0]}")
    return Template()


def driver_conf(core: Core, section: dict[str, str]) -> Template:
    """``driver_conf``: the DEFAULT file's attributes (later ones replace earlier ones,
    as in a replace-mode template), with the section's attributes copied over them."""
    conf = Template()
    default = section.get("DEFAULT", "")
    if default:
        for name, value in _read_defaults(core, default):
            conf.set(name, value)
    for key, value in section.items():
        conf.set(key, value)
    return conf


def _int(text: str | None) -> int | None:
    """``istringstream >> int`` that must consume the whole value."""
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def to_float(text: str | None, default: float) -> float:
    if text is None:
        return default
    try:
        value = float(text.strip())
    except ValueError:
        return default
    return value if math.isfinite(value) else default


@dataclass
class Lookup:
    """``get_attribute``: VM > host > cluster > driver configuration."""

    vm: Template | None
    host: Template | None
    cluster: Template | None
    conf: Template = field(default_factory=Template)

    def _chain(self, vm: bool, host: bool, cluster: bool = True) -> list[Template]:
        chain: list[Template | None] = [
            self.vm if vm else None,
            self.host if host else None,
            self.cluster if cluster else None,
            self.conf,
        ]
        return [t for t in chain if t is not None]

    # -- single attributes -------------------------------------------------------------

    def single(self, name: str, vm: bool = True, host: bool = True) -> str | None:
        for tmpl in self._chain(vm, host):
            value = tmpl.get(name)
            if value is not None:
                return value
        return None

    def string(self, name: str, vm: bool = True, host: bool = True) -> str:
        return self.single(name, vm, host) or ""

    def integer(
        self, name: str, default: int, vm: bool = True, host: bool = True, cluster: bool = True
    ) -> int:
        for tmpl in self._chain(vm, host, cluster):
            value = _int(tmpl.get(name))
            if value is not None:
                return value
        return default

    def boolean(self, name: str, vm: bool = True, host: bool = True) -> bool:
        value = self.single(name, vm, host)
        return value is not None and value.upper() == "YES"

    # -- vector attributes -------------------------------------------------------------

    def vstring(
        self, name: str, key: str, vm: bool = True, host: bool = True, cluster: bool = True
    ) -> str:
        """A found key stops the search even when its value is empty."""
        for tmpl in self._chain(vm, host, cluster):
            vector = tmpl.get_vector(name)
            if vector is not None and key in vector:
                return vector[key]
        return ""

    def vbool(self, name: str, key: str, vm: bool = True, host: bool = True) -> bool:
        """Empty values do not count as found (``vector_value(bool)``)."""
        for tmpl in self._chain(vm, host):
            vector = tmpl.get_vector(name)
            if vector is not None and vector.get(key, ""):
                return vector[key].upper() == "YES"
        return False

    def vint(self, name: str, key: str, default: int, vm: bool = True, host: bool = True) -> int:
        for tmpl in self._chain(vm, host):
            vector = tmpl.get_vector(name)
            if vector is None:
                continue
            value = _int(vector.get(key) or None)
            if value is not None:
                return value
        return default
