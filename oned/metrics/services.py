"""The exporter's service, HA and backup/restore families (mirrors
``opennebula_server_collector.rb``, ``opennebula_ha_collector.rb`` and
``opennebula_backup_restore_collector.rb``).

* ``opennebula_<service>_state{one_server_fqdn}``: the exporter asks systemd whether
  each unit is active. Here ``oned_state`` is 1 (the daemon is answering),
  ``scheduler_state`` is whether the SCHED_MAD driver runs (the scheduler lives inside
  the daemon), and the others come from systemd as the exporter reads them
  (``systemctl show --value -p ActiveState``), run in the background through the
  reactor and refreshed at most every ``SYSTEMD_REFRESH`` seconds, so a scrape never
  waits for a process; the hook manager counts as up when either OpenNebula's
  ``opennebula-hem.service`` or our ``oned-hem.service`` is active. No systemd: 0, as
  the exporter reports.
* ``opennebula_ha_*``: computed from the local zone's SERVER_POOL; a standalone zone
  has no servers and, like the exporter, gives no samples. This daemon does not run
  Raft (``one.zone.raftstatus`` answers STATE 0, SOLO), so a zone with servers counts
  every member in error and is never leader, which is what the exporter would read.
* ``opennebula_vm_{backup,restore}_last_*``: from ``state.json`` in the var directory,
  written by OpenNebula's ``share/hooks/metrics/backup_restore_metrics.rb`` hook (read
  again only when its modification time or size changes).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet.utils import getProcessOutputAndValue

from oned._async import background
from oned.drivers.families import Family
from oned.metrics.text import escape_label, family, labels

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from oned.core import Core

#: Seconds between two systemd queries.
SYSTEMD_REFRESH = 15.0
SYSTEMCTL = "/usr/bin/systemctl"

#: (metric, help, systemd units any of which makes it 1) in the collector's order.
SERVICES = (
    ("oned_state", "OpenNebula oned service state 0:down 1:up", ()),
    ("scheduler_state", "OpenNebula scheduler service state 0:down 1:up", ()),
    ("flow_state", "OpenNebula Flow service state 0:down 1:up", ("opennebula-flow.service",)),
    (
        "hem_state",
        "OpenNebula hook manager service state 0:down 1:up",
        ("opennebula-hem.service", "oned-hem.service"),
    ),
    ("gate_state", "OpenNebula Gate service state 0:down 1:up", ("opennebula-gate.service",)),
    (
        "fireedge_state",
        "OpenNebula FireEdge service state 0:down 1:up",
        ("opennebula-fireedge.service",),
    ),
)

HA_FAMILIES = (
    ("opennebula_ha_is_leader", "This server is RAFT leader (1) or not (0)"),
    (
        "opennebula_ha_error_members",
        "Number of HA members with failed or unexpected RAFT state",
    ),
    ("opennebula_ha_members", "Total number of HA members reported by zone pool"),
)

BACKUP_FAMILIES = (
    ("opennebula_vm_backup_last_status", "Last backup result for VM (1=success, 0=failed)"),
    ("opennebula_vm_backup_last_timestamp", "Unix timestamp of last backup event for VM"),
    ("opennebula_vm_restore_last_status", "Last restore result for VM (1=success, 0=failed)"),
    ("opennebula_vm_restore_last_timestamp", "Unix timestamp of last restore event for VM"),
)
_BACKUP_KEYS = ("backup_status", "backup_ts", "restore_status", "restore_ts")


def server_fqdn() -> str:
    """``Addrinfo.getaddrinfo(Socket.gethostname, nil).first.getnameinfo.first``."""
    host = socket.gethostname()
    try:
        info = socket.getaddrinfo(host, None)[0]
        return socket.getnameinfo(info[4][:2], 0)[0]
    except OSError:
        return host


#: Runs ``systemctl`` and returns (stdout, stderr, exit code).
Runner = Callable[[list[str]], Any]


class ServiceStates:
    """The ``opennebula_*_state`` families."""

    def __init__(
        self,
        core: Core,
        drivers: Any,
        clock: IReactorTime,
        fqdn: str,
        runner: Runner | None = None,
    ) -> None:
        self.core = core
        self.drivers = drivers
        self.clock = clock
        self.fqdn = fqdn
        self._runner = runner
        self._active: set[str] = set()
        self._asked = -SYSTEMD_REFRESH
        self._asking = False

    def render(self) -> list[str]:
        self._refresh()
        lab = labels(("one_server_fqdn", self.fqdn))
        out = []
        for name, help_text, units in SERVICES:
            if name == "oned_state":
                up = 1
            elif name == "scheduler_state":
                up = int(self._driver_up(Family.SCHED))
            else:
                up = int(any(u in self._active for u in units))
            out.append(family(f"opennebula_{name}", help_text, [f"opennebula_{name}{lab} {up}\n"]))
        return out

    def _driver_up(self, fam: Family) -> bool:
        if self.drivers is None:
            return False
        return any(d.is_running for d in self.drivers.drivers(fam))

    def _refresh(self) -> None:
        now = self.clock.seconds()
        if self._runner is None or self._asking or now - self._asked < SYSTEMD_REFRESH:
            return
        self._asked = now
        self._asking = True
        background(self._ask(), "systemd service states")

    async def _ask(self) -> None:
        units = [u for _, _, us in SERVICES for u in us]
        assert self._runner is not None
        try:
            out, _err, _code = await self._runner(["show", "--value", "-p", "ActiveState", *units])
        except Exception:
            self._active = set()
            return
        finally:
            self._asking = False
        states = [line.strip() for line in out.decode(errors="replace").split("\n\n")]
        self._active = {u for u, s in zip(units, states, strict=False) if s == "active"}


def systemctl_runner(reactor: Any) -> Runner | None:
    """Runs systemctl through ``reactor`` (None when the machine has no systemctl)."""
    if not os.access(SYSTEMCTL, os.X_OK):
        return None

    def run(args: list[str]) -> Any:
        return getProcessOutputAndValue(SYSTEMCTL, args, env={}, reactor=reactor)

    return run


def ha_families(core: Core, fqdn: str) -> list[str]:
    zone = core.zones.get(core.config.zone_id)
    servers = len(zone.server_ids()) if zone is not None else 0
    lab = labels(("one_server_fqdn", fqdn))
    values = (0, servers, servers)  # SOLO: never leader, every member "in error"
    return [
        family(name, help_text, [f"{name}{lab} {v}\n"] if servers else [])
        for (name, help_text), v in zip(HA_FAMILIES, values, strict=True)
    ]


class BackupState:
    """The backup/restore families from the hook's ``state.json``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[float, int] | None = None
        self._lines: list[list[str]] = [[] for _ in BACKUP_FAMILIES]

    def render(self) -> list[str]:
        self._load()
        return [
            family(name, help_text, lines)
            for (name, help_text), lines in zip(BACKUP_FAMILIES, self._lines, strict=True)
        ]

    def _load(self) -> None:
        try:
            st = self.path.stat()
        except OSError:
            self._stamp, self._lines = None, [[] for _ in BACKUP_FAMILIES]
            return
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        self._lines = [[] for _ in BACKUP_FAMILIES]
        try:
            state = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return
        if not isinstance(state, dict):
            return
        for vm in state.values():
            if not isinstance(vm, dict):
                continue
            vm_id = vm.get("vm_id")
            if vm_id is None or str(vm_id) == "":
                continue
            try:
                lab = (
                    f'{{one_vm_id="{int(vm_id)}",'
                    f'one_vm_name="{escape_label(str(vm.get("vm_name") or "unknown"))}"}}'
                )
            except (TypeError, ValueError):
                continue
            for i, key in enumerate(_BACKUP_KEYS):
                if key in vm:
                    number = _to_i(vm[key])
                    self._lines[i].append(f"{BACKUP_FAMILIES[i][0]}{lab} {number}\n")


def _to_i(raw: Any) -> int:
    """Ruby's ``to_i``: leading digits, else 0."""
    if isinstance(raw, bool):
        return 0
    if isinstance(raw, (int, float)):
        return int(raw)
    text = str(raw).strip()
    digits = ""
    for i, ch in enumerate(text):
        if ch.isdigit() or (i == 0 and ch in "+-"):
            digits += ch
        else:
            break
    try:
        return int(digits)
    except ValueError:
        return 0
