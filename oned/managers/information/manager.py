"""``InformationManager``: host monitoring over the IM driver protocol (mirrors oned's
``InformationManager`` together with monitord's ``HostMonitorManager``).

OpenNebula 7 splits this between oned and ``onemonitord``; here the daemon speaks
monitord's side directly: it sends START_MONITOR/STOP_MONITOR to the host's IM_MAD,
listens for the probes' UDP reports and absorbs them. Reports never write one by one:
SYSTEM_HOST templates, errors and MONITOR_HOST samples are queued and applied every
``FLUSH_DELAY`` seconds in one transaction, each host body rendered once per batch.
A timer (``MANAGER_TIMER``) restarts monitoring of hosts silent for
``MONITORING_INTERVAL_HOST`` and expires samples older than
``HOST_MONITORING_EXPIRATION_TIME``.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IListeningPort, IReactorUDP

from oned._async import background
from oned.drivers.families import Family
from oned.drivers.message import DriverMessage
from oned.log import logger
from oned.managers.information.protocol import HostRecord, ProbeListener, Reports
from oned.objects.base import esc
from oned.objects.host import ERROR, INIT, OFFLINE, STATE_NAMES, Host
from oned.pools.monitoring import HostMonitoringStore, sample_xml
from oned.template import Template

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

    from oned.core import Core

#: Seconds between two batch applications.
FLUSH_DELAY = 0.2
#: monitord restarts a monitor stuck "in progress" this long.
MONITOR_EXPIRE = 300
DEFAULT_PORT = 4124
#: Receive buffer asked for the probes' UDP socket (bytes).
UDP_BUFFER = 8 * 1024 * 1024
PROBES_PERIOD = {
    "BEACON_HOST": "30",
    "SYSTEM_HOST": "600",
    "MONITOR_HOST": "120",
    "STATE_VM": "5",
    "EXEC_VM": "5",
    "MONITOR_VM": "30",
    "SYNC_STATE_VM": "180",
}


def _conf_int(core: Core, name: str, default: int) -> int:
    try:
        return int(core.config.get(name) or default)
    except ValueError:
        return default


class InformationManager:
    """Starts, stops and absorbs host monitoring."""

    log = logger("InM")

    def __init__(self, core: Core, drivers: Any, clock: IReactorTime) -> None:
        self.core = core
        self.drivers = drivers
        self.clock = clock
        self.timer_period = _conf_int(core, "MANAGER_TIMER", 15)
        self.interval = _conf_int(core, "MONITORING_INTERVAL_HOST", 180)
        expiration = _conf_int(core, "HOST_MONITORING_EXPIRATION_TIME", 43200)
        self.monitoring = HostMonitoringStore(core.db, expiration)
        self.reports = Reports(self, clock.seconds, self._state_of)
        self._events: dict[int, list[tuple[str, Any]]] = {}
        self._samples: list[tuple[int, int, str]] = []
        self._flush_call: IDelayedCall | None = None
        self._flushing = False
        self._timer: IDelayedCall | None = None
        self._udp: IListeningPort | None = None
        self.port = 0
        self._started = False

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Load the last samples, listen for probes, start monitoring every host."""
        await self.monitoring.load()
        if self.drivers is not None:
            for action in (*Reports._handlers, "LOG"):
                if action != "LOG":
                    self.drivers.register_action(Family.MONITOR, action, self._from_driver)
        self._listen()
        self._started = True
        for host in self.core.hosts.objects():
            self.reports.hosts[host.oid] = HostRecord()
        self._timer = self.clock.callLater(self.timer_period, self._tick)
        for host in sorted(self.core.hosts.objects(), key=lambda h: h.oid):
            if host.state != OFFLINE:
                self.start_monitor(host)

    def _listen(self) -> None:
        if not IReactorUDP.providedBy(self.clock):
            return
        net = self._vector("MONITOR_NETWORK")
        address = net.get("ADDRESS", "0.0.0.0")
        try:
            port = int(net.get("PORT", DEFAULT_PORT))
        except ValueError:
            port = DEFAULT_PORT
        udp: Any = self.clock
        listener = ProbeListener(self.reports)
        try:
            self._udp = udp.listenUDP(port, listener, interface=address, maxPacketSize=65535)
        except Exception as exc:
            self.log.error(
                "Cannot listen for monitoring on {a}:{p} ({e}); using a free port",
                a=address,
                p=port,
                e=str(exc),
            )
            self._udp = udp.listenUDP(0, listener, interface=address, maxPacketSize=65535)
        assert self._udp is not None
        self._grow_buffer(self._udp)
        self.port = int(getattr(self._udp.getHost(), "port", port))
        self.log.info("Listening for monitoring reports on {a}:{p}", a=address, p=self.port)

    def _grow_buffer(self, port: IListeningPort) -> None:
        """Thousands of hosts report in bursts: a receive buffer of a few MB (as
        large as ``net.core.rmem_max`` allows) keeps a busy reactor from dropping them."""
        sock = getattr(port, "socket", None)
        if sock is None:
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_BUFFER)
        except OSError as exc:
            self.log.warn("Cannot enlarge the monitoring receive buffer: {e}", e=str(exc))

    async def stop(self) -> None:
        """Stop timers and the listener, then apply what is pending."""
        self._started = False
        for call in (self._timer, self._flush_call):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._flush_call = None
        if self._udp is not None:
            stopping = self._udp.stopListening()
            self._udp = None
            if stopping is not None:
                await stopping
        await self.flush()

    # -- what the API tells us (HostPool::allocate/update/drop) ----------------------

    def host_added(self, host: Host) -> None:
        """A new host (INIT) starts being monitored."""
        self.reports.hosts[host.oid] = HostRecord()
        if host.state == INIT:
            self.start_monitor(host)

    def host_changed(self, old_state: int, host: Host) -> None:
        """``HostMonitorManager::update_host``: OFFLINE stops, leaving it (or enable to
        INIT) starts monitoring; timestamps restart on any state change."""
        rec = self.reports.hosts.setdefault(host.oid, HostRecord())
        if host.state == old_state:
            return
        rec.last_ts.clear()
        if host.state == OFFLINE:
            self.stop_monitor(host)
        elif (old_state == OFFLINE or host.state == INIT) and not rec.in_progress:
            self.start_monitor(host)

    def host_deleted(self, host: Host) -> None:
        self.stop_monitor(host)
        self.reports.hosts.pop(host.oid, None)
        self._events.pop(host.oid, None)

    # -- driver actions ------------------------------------------------------------

    def _action(self, host: Host) -> str:
        base = (
            f"<HOST><ID>{host.oid}</ID><NAME>{esc(host.name)}</NAME><STATE>{host.state}</STATE>"
            f"<PREV_STATE>{host.prev_state}</PREV_STATE><IM_MAD>{esc(host.im_mad)}</IM_MAD>"
            f"<VM_MAD>{esc(host.vm_mad)}</VM_MAD><CLUSTER_ID>{host.cluster_id}</CLUSTER_ID>"
            f"<CLUSTER>{esc(host.cluster)}</CLUSTER></HOST>"
        )
        return f"<MONITOR_DRIVER_ACTION>{base}{self.configuration_xml()}</MONITOR_DRIVER_ACTION>"

    def configuration_xml(self) -> str:
        """The MONITOR_CONFIGURATION probes read (network, probe periods, timers)."""
        net = self._vector("MONITOR_NETWORK")
        net.setdefault("ADDRESS", "0.0.0.0")
        net.setdefault("MONITOR_ADDRESS", "auto")
        net["PORT"] = str(self.port or net.get("PORT", DEFAULT_PORT))
        net.setdefault("PUBKEY", "")
        periods = dict(PROBES_PERIOD)
        periods.update(self._vector("PROBES_PERIOD"))
        tmpl = Template(
            [
                ("MANAGER_TIMER", str(self.timer_period)),
                ("MONITORING_INTERVAL_HOST", str(self.interval)),
                ("HOST_MONITORING_EXPIRATION_TIME", str(self.monitoring.expiration)),
                ("NETWORK", net),
                ("PROBES_PERIOD", periods),
            ]
        )
        return tmpl.to_xml("MONITOR_CONFIGURATION")

    def _vector(self, name: str) -> dict[str, str]:
        """The last ``name`` vector of oned.conf (a repeated setting: the last wins)."""
        vectors = self.core.config.vectors(name)
        return dict(vectors[-1]) if vectors else {}

    def _driver(self, host: Host, what: str) -> bool:
        if self.drivers is None or self.drivers.get(Family.MONITOR, host.im_mad) is None:
            self.log.error("{what}: Cannot find driver {mad}", what=what, mad=host.im_mad)
            return False
        return True

    def start_monitor(self, host: Host) -> None:
        """``start_host_monitor``: START_MONITOR to the host's IM driver."""
        if not self._started or not self._driver(host, "start_monitor"):
            return
        rec = self.reports.hosts.setdefault(host.oid, HostRecord())
        rec.in_progress = True
        rec.last_monitored = self.clock.seconds()
        self.log.debug("Monitoring host {name}({oid})", name=host.name, oid=host.oid)
        self.drivers.send(
            Family.MONITOR, "START_MONITOR", host.oid, self._action(host), name=host.im_mad
        )

    def stop_monitor(self, host: Host) -> None:
        if not self._started or not self._driver(host, "stop_monitor"):
            return
        rec = self.reports.hosts.get(host.oid)
        if rec is not None:
            rec.in_progress = False
        self.log.debug("Stopping Monitoring on host {name}({oid})", name=host.name, oid=host.oid)
        self.drivers.send(
            Family.MONITOR, "STOP_MONITOR", host.oid, self._action(host), name=host.im_mad
        )

    def _from_driver(self, msg: DriverMessage) -> None:
        self.reports.dispatch(msg)

    # -- the batch (Reports' Batch protocol) -----------------------------------------

    def _state_of(self, hid: int) -> int | None:
        host = self.core.hosts.get(hid)
        return None if host is None else host.state

    def queue_system(self, hid: int, tmpl: Template) -> None:
        self._queue(hid, ("system", tmpl))

    def queue_error(self, hid: int, message: str) -> None:
        self._queue(hid, ("error", message))

    def queue_sample(self, hid: int, tmpl: Template) -> None:
        now = int(self.clock.seconds())
        self._samples.append((hid, now, sample_xml(hid, now, tmpl)))
        self._schedule()

    def queue_vm_monitoring(self, hid: int, text: str, timestamp: int) -> None:
        """MONITOR_VM reports go to the VMs (``oned.managers.lifecycle.monitor``)."""
        from oned.managers.lifecycle.monitor import monitor_vms

        background(monitor_vms(self.core, hid, text, timestamp), f"VM monitoring of host {hid}")

    def queue_vm_state(self, hid: int, text: str) -> None:
        """STATE_VM reports move the VMs (``oned.managers.lifecycle.monitor_states``)."""
        from oned.managers.lifecycle.monitor_states import vm_state

        background(vm_state(self.core, hid, text), f"VM states of host {hid}")

    def queue_vm_exec(self, hid: int, text: str) -> None:
        """EXEC_VM reports update the VMs' QEMU_GA_EXEC (``oned.managers.vmm.system_exec``)."""
        from oned.managers.vmm.system_exec import vm_exec

        background(vm_exec(self.core, hid, text), f"VM exec results of host {hid}")

    def _queue(self, hid: int, event: tuple[str, Any]) -> None:
        self._events.setdefault(hid, []).append(event)
        self._schedule()

    def _schedule(self) -> None:
        if self._flush_call is None and not self._flushing:
            self._flush_call = self.clock.callLater(FLUSH_DELAY, self._flush_now)

    def _flush_now(self) -> None:
        self._flush_call = None
        background(self.flush(), "host monitoring batch")

    async def flush(self) -> None:
        """Apply every queued report in one transaction."""
        if self._flushing:
            return
        self._flushing = True
        try:
            await self._apply()
        finally:
            self._flushing = False
            if self._events or self._samples:
                self._schedule()

    async def _apply(self) -> None:
        core = self.core
        events, self._events = self._events, {}
        samples, self._samples = self._samples, []
        unit = core.unit()
        held = []
        failed: list[int] = []
        saved = 0
        for hid, todo in events.items():
            lock = core.hosts.lock(hid)
            if lock.locked:
                self._events.setdefault(hid, [])[:0] = todo
                continue
            await lock.acquire()
            held.append(lock)
            host = core.hosts.get(hid)
            if host is None:
                continue
            new = self._absorb(host, todo)
            if new is not None:
                unit.save(core.hosts, new.saved())
                saved += 1
                if new.state == ERROR and host.state != ERROR and new.vms:
                    failed.extend(sorted(new.vms))
        store = self.monitoring
        for hid, ts, body in samples:
            if core.hosts.get(hid) is None:
                continue
            statement = store.insert(hid, ts, body)
            if statement is not None:
                unit.sql(statement)
            unit.then(lambda hid=hid, body=body: store.remember(hid, body))  # type: ignore[misc]
        if failed:
            unit.then(lambda: self._monitor_done(failed))
        try:
            await unit.commit(f"monitoring of {saved} hosts, {len(samples)} samples")
        except Exception:
            self.log.failure("Unable to write monitoring to DB")
        finally:
            for lock in held:
                lock.release()

    def _monitor_done(self, vids: list[int]) -> None:
        """oned's ``_host_state``: every VM of a host gone to ERROR gets
        ``monitor_done`` (RUNNING to UNKNOWN), once the lifecycle manager offers it."""
        done = getattr(self.core.lifecycle_manager, "monitor_done", None)
        if done is None:
            return
        for vid in vids:
            self.core.eventually(done, vid)

    def _absorb(self, host: Host, todo: list[tuple[str, Any]]) -> Host | None:
        """Apply a host's queued SYSTEM_HOST templates and errors (oned's
        ``_host_system``/``_host_state``); None when nothing changed."""
        new: Host | None = None
        for kind, value in todo:
            current = new or host
            if current.state == OFFLINE:
                continue
            if kind == "system":
                new = new or host.copy()
                cluster = self.core.clusters.get(new.cluster_id)
                new.update_info(value, cluster.template if cluster is not None else None)
                self.log.debug(
                    "Host {name} ({oid}) successfully monitored.", name=new.name, oid=new.oid
                )
            elif current.state != ERROR:
                new = new or host.copy()
                text = new.error(value, self.clock.seconds())
                self.log.error("{text}", text=text)
        return new

    # -- timer (HostMonitorManager::timer_action) ----------------------------------

    def _tick(self) -> None:
        self._timer = None
        try:
            self._timer_action()
        except Exception:
            self.log.failure("Monitoring timer failed")
        if self._started:
            self._timer = self.clock.callLater(self.timer_period, self._tick)

    def _timer_action(self) -> None:
        now = self.clock.seconds()
        expire = self.monitoring.expire(int(now))
        if expire is not None:
            unit = self.core.unit()
            unit.sql(expire)
            background(unit.commit("expire host monitoring"), "expire host monitoring")
        target = now - self.interval
        for hid, rec in list(self.reports.hosts.items()):
            if rec.last_monitored >= target:
                continue
            host = self.core.hosts.get(hid)
            if host is None:
                continue
            if rec.in_progress:
                if now - rec.last_monitored >= MONITOR_EXPIRE:
                    self.start_monitor(host)
            elif host.state == OFFLINE:
                rec.last_monitored = now
                self._samples.append((hid, int(now), sample_xml(hid, int(now), None)))
                self._schedule()
            else:
                self.start_monitor(host)

    def stats(self) -> dict[str, int]:
        """Counters for logs and benchmarks."""
        states: dict[str, int] = {}
        for host in self.core.hosts.objects():
            name = STATE_NAMES.get(host.state, str(host.state))
            states[name] = states.get(name, 0) + 1
        return {"received": self.reports.received, "ignored": self.reports.ignored, **states}
