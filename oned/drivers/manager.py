"""All driver processes of the daemon (mirrors ``include/DriverManager.h``).

:class:`DriverManager` reads the ``*_MAD`` sections of ``oned.conf``, resolves each
``EXECUTABLE`` (``lib/mads``, then this package's ``drivers/mads`` when running from a
checkout), writes ``var/config``, starts every driver (a missing program or a failed
``INIT`` aborts the start, as in oned), routes ``LOG`` lines to oned.log or the VM's
log, and offers request/response with a timeout for the synchronous actions (auth,
IPAM address calls, ``STAT``/``RESTORE``).

Single-driver families use only their first section, under OpenNebula's internal
names (``transfer_exe``, ``image_exe``, ``auth_exe`` ...); ``VM_MAD`` and ``IM_MAD``
keep their ``NAME``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel

from oned.drivers.families import SYNC_TIMEOUT, Family
from oned.drivers.process import DriverProcess, DriverStartError, Handler
from oned.log import format_line as format_log_line

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorProcess

    from oned.config import OnedConfig
    from oned.drivers.message import DriverMessage

__all__ = ["CHECKOUT_MADS", "DriverManager", "DriverStartError", "VMLogger"]

#: Driver programs shipped in this source tree (used when lib/mads lacks one).
CHECKOUT_MADS = Path(__file__).resolve().parent.parent.parent / "drivers" / "mads"
#: Where a package install puts them (``<prefix>/lib/one/mads``).
PREFIX_MADS = Path(sys.prefix) / "lib" / "one" / "mads"

#: ``vm_log(vm_id, tag, letter, text) -> written``.
VMLogger = Callable[[int, str, str, str], bool]

_LEVELS = {"E": LogLevel.error, "W": LogLevel.warn, "D": LogLevel.debug}

_FAMILY_ORDER = (
    Family.AUTH,
    Family.IMAGE,
    Family.TM,
    Family.VMM,
    Family.IPAM,
    Family.MARKET,
    Family.HOOK,
    Family.SCHED,
)

DEFAULT_SCRIPTS_REMOTE_DIR = "/var/tmp/one"  # noqa: S108 - OpenNebula's default


class DriverManager:
    """Builds, starts, routes and stops every driver declared in ``oned.conf``.

    Args:
        config: Parsed oned.conf.
        reactor: Spawns the drivers; also the clock unless ``clock`` is given.
        clock: Time source (default: ``reactor``).
        environ: Environment passed to the drivers (default: ``os.environ``).
        fallback_mads: Where to look for programs missing from ``lib/mads``
            (default: this source tree's ``drivers/mads``).
        prefix_mads: Next place to look (default: ``<sys.prefix>/lib/one/mads``).
        init_timeout: Seconds a driver has to answer ``INIT``.
        finalize_timeout: Seconds a driver has to exit after ``FINALIZE``.
        vm_log: Writes a driver ``LOG`` line to a VM's log; the default appends to
            ``var/vms/<id>/vm.log`` when that directory exists.
    """

    log = Logger(namespace="oned.DrM")

    def __init__(
        self,
        config: OnedConfig,
        reactor: IReactorProcess,
        *,
        clock: IReactorTime | None = None,
        environ: Mapping[str, str] | None = None,
        fallback_mads: Path | None = CHECKOUT_MADS,
        prefix_mads: Path | None = PREFIX_MADS,
        init_timeout: float = 10.0,
        finalize_timeout: float = 10.0,
        vm_log: VMLogger | None = None,
    ) -> None:
        self.config = config
        self._reactor = reactor
        self._clock: IReactorTime = clock if clock is not None else IReactorTime(reactor)
        env = dict(os.environ if environ is None else environ)
        if config.locations.root is not None:
            env.setdefault("ONE_LOCATION", str(config.locations.root))
        self._env = env
        self._fallbacks = [p for p in (fallback_mads, prefix_mads) if p is not None]
        self._init_timeout = init_timeout
        self._finalize_timeout = finalize_timeout
        self._vm_log: VMLogger = vm_log or self._default_vm_log
        self._drivers: dict[Family, dict[str, DriverProcess]] = {f: {} for f in Family}
        self._load_errors: list[str] = []
        self._next_id: dict[Family, int] = {f: 0 for f in Family}
        self._loggers = {f: Logger(namespace=f"oned.{f.spec.log_tag}") for f in Family}
        self._build()

    # -- construction --------------------------------------------------------------

    def _build(self) -> None:
        self.log.info("Loading drivers.")
        for vector in self.config.vectors("VM_MAD"):
            self._load(Family.VMM, vector, vector.get("NAME", ""))
        for vector in self.config.vectors("IM_MAD"):
            exe = vector.get("EXECUTABLE", "")
            family = Family.IM if Path(exe).name == "onemonitord" else Family.MONITOR
            self._load(family, vector, vector.get("NAME", ""))
        for family in _FAMILY_ORDER:
            if family is Family.VMM:
                continue
            vectors = self.config.vectors(family.spec.section)
            if not vectors:
                continue
            vector = dict(vectors[0])
            if family is Family.AUTH:
                vector["ARGUMENTS"] = self.auth_arguments(vector)
            self._load(family, vector, family.spec.single_name or family.name)

    @staticmethod
    def auth_arguments(vector: Mapping[str, str]) -> str:
        """The ARGUMENTS oned builds for AUTH_MAD from ``AUTHN``/``AUTHZ``."""
        args = ""
        if vector.get("AUTHN"):
            args = f"--authn {vector['AUTHN']}"
        if vector.get("AUTHZ"):
            args += f" --authz {vector['AUTHZ']}"
        return args

    def resolve_executable(self, exe: str) -> str:
        """Absolute path of a driver program (lib/mads, then the checkout)."""
        if exe.startswith("/"):
            return exe
        primary = self.config.locations.mads / exe
        if primary.exists():
            return str(primary)
        for directory in self._fallbacks:
            fallback = directory / exe
            if fallback.exists():
                return str(fallback)
        return str(primary)

    def _load(self, family: Family, vector: Mapping[str, str], name: str) -> None:
        self.log.info("Loading driver: {name}", name=name)
        exe = vector.get("EXECUTABLE", "")
        if not exe:
            error = f"Empty executable for driver: {name}"
            self.log.error("\t{error}", error=error)
            self._load_errors.append(error)
            return
        path = self.resolve_executable(exe)
        if not os.path.exists(path):
            error = f"File not exists: {path}"
            self.log.error("{error}", error=error)
            if family is not Family.VMM:
                self._load_errors.append(error)
        if name in self._drivers[family]:
            error = f"Driver already exists: {name}"
            self.log.error("\t{error}", error=error)
            self._load_errors.append(error)
            return
        driver = DriverProcess(
            name,
            family,
            path,
            vector.get("ARGUMENTS", ""),
            self._reactor,
            self._clock,
            env=self._env,
            init_timeout=self._init_timeout,
            finalize_timeout=self._finalize_timeout,
            log=self._loggers[family],
        )
        driver.register_action("LOG", self._log_handler(family))
        self._drivers[family][name] = driver
        self.log.info("\tDriver loaded: {name}", name=name)

    # -- var/config ------------------------------------------------------------------

    def write_var_config(self) -> Path:
        """Write ``<var>/config`` (flat oned.conf) as oned does at every start."""
        lines = self.config.template.flat_lines()
        if not any(line.startswith("SCRIPTS_REMOTE_DIR=") for line in lines):
            lines.append(f"SCRIPTS_REMOTE_DIR={DEFAULT_SCRIPTS_REMOTE_DIR}")
        var = self.config.locations.var
        var.mkdir(parents=True, exist_ok=True)
        target = var / "config"
        fd, tmp = tempfile.mkstemp(dir=var, prefix=".config.")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
        os.chmod(tmp, 0o640)
        os.replace(tmp, target)
        return target

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Write var/config and start every driver (each answers INIT or fails).

        Raises:
            DriverStartError: A program is missing, or a driver failed to start;
                drivers already started are stopped again first.
        """
        if self._load_errors:
            raise DriverStartError(
                "Could not load an OpenNebula driver: " + "; ".join(self._load_errors)
            )
        self.write_var_config()
        drivers = self.drivers()
        results = await gatherResults([Deferred.fromCoroutine(self._start_one(d)) for d in drivers])
        errors = []
        for driver, error in zip(drivers, results, strict=True):
            if error is not None:
                self.log.error(
                    "Unable to start driver '{name}': {error}",
                    name=driver.name,
                    error=error,
                )
                errors.append(f"{driver.name}: {error}")
        if errors:
            await self.stop()
            raise DriverStartError("Unable to start drivers: " + "; ".join(errors))

    @staticmethod
    async def _start_one(driver: DriverProcess) -> str | None:
        try:
            await driver.start()
        except DriverStartError as exc:
            return str(exc)
        return None

    async def stop(self) -> None:
        """FINALIZE every driver (then TERM, KILL), all in parallel."""
        await DeferredList(
            [Deferred.fromCoroutine(d.stop()) for d in self.drivers()],
            consumeErrors=True,
        )

    # -- lookup and routing ----------------------------------------------------------

    def get(self, family: Family, name: str | None = None) -> DriverProcess | None:
        """Driver ``name`` of ``family`` (its first driver when ``name`` is None)."""
        drivers = self._drivers[family]
        if name is None:
            return next(iter(drivers.values()), None)
        return drivers.get(name)

    def drivers(self, family: Family | None = None) -> list[DriverProcess]:
        """All drivers, or those of one family."""
        if family is not None:
            return list(self._drivers[family].values())
        return [d for f in Family for d in self._drivers[f].values()]

    def register_action(self, family: Family, action: str, handler: Handler) -> None:
        """Route replies of type ``action`` from every driver of ``family``."""
        for driver in self._drivers[family].values():
            driver.register_action(action, handler)

    def add_reconnect_callback(self, family: Family, callback: Callable[[], object]) -> None:
        """Call ``callback`` whenever a driver of ``family`` has been restarted."""
        for driver in self._drivers[family].values():
            driver.add_reconnect_callback(callback)

    def send(
        self,
        family: Family,
        action: str,
        oid: int,
        payload: str = "",
        *,
        name: str | None = None,
        timeout: float | None = None,
    ) -> bool:
        """Send an asynchronous request; its reply goes to the registered handler.

        Returns:
            False when the family has no such driver (nothing is sent).
        """
        driver = self.get(family, name)
        if driver is None:
            self._loggers[family].error(
                "Could not find {family} driver {name}", family=family.name, name=name
            )
            return False
        driver.send(action, oid, payload, timeout=timeout)
        return True

    def next_request_id(self, family: Family) -> int:
        """Next synthetic request id of ``family`` (one counter per manager, from 0)."""
        rid = self._next_id[family]
        self._next_id[family] = rid + 1
        return rid

    async def request(
        self,
        family: Family,
        action: str,
        payload: str,
        timeout: float | None = None,
        *,
        name: str | None = None,
    ) -> tuple[bool, str]:
        """Send a synchronous request with a fresh request id and wait for its reply.

        Args:
            family: Driver family (AUTH, IPAM, IMAGE ...).
            action: Message type (``AUTHENTICATE``, ``GET_ADDRESS``, ``STAT`` ...).
            payload: Request payload (encode it first where the family expects b64).
            timeout: Seconds before the request fails with ``Request timeout``
                (default: the family's value for ``action``, else 90).
            name: Driver name for multi-driver families.

        Returns:
            ``(success, info)``; ``info`` is the reply's INFO, ``""`` for ``-``.
        """
        driver = self.get(family, name)
        if driver is None:
            return False, f"Could not find {family.name} driver"
        if timeout is None:
            timeout = family.spec.sync_timeouts.get(action, SYNC_TIMEOUT)
        rid = self.next_request_id(family)
        reply = await driver.request(action, rid, payload, timeout)
        info = "" if reply.payload == "-" else reply.payload
        return reply.success, info

    # -- LOG lines -----------------------------------------------------------------

    def _log_handler(self, family: Family) -> Handler:
        logger = self._loggers[family]
        # Scheduler lines about a VM go to its log under the VMM tag, as oned does.
        tag = "VMM" if family is Family.SCHED else family.spec.log_tag
        object_log = family.spec.object_log

        def handle(msg: DriverMessage) -> None:
            letter = msg.status[:1] if msg.status[:1] in ("E", "W", "D") else "I"
            if object_log and msg.oid >= 0 and self._vm_log(msg.oid, tag, letter, msg.payload):
                return
            logger.emit(_LEVELS.get(letter, LogLevel.info), "{text}", text=msg.payload)

        return handle

    def _default_vm_log(self, vm_id: int, tag: str, letter: str, text: str) -> bool:
        vm_dir = self.config.locations.var / "vms" / str(vm_id)
        if not vm_dir.is_dir():
            return False
        level = {"E": LogLevel.error, "W": LogLevel.warn, "D": LogLevel.debug}.get(
            letter, LogLevel.info
        )
        event = {
            "log_time": time.time(),
            "log_namespace": f"oned.{tag}",
            "log_level": level,
            "log_format": "{text}",
            "text": text,
        }
        line = format_log_line(event, self.config.zone_id)
        try:
            with open(vm_dir / "vm.log", "a", encoding="utf-8") as out:
                out.write(line + "\n")
        except OSError:
            return False
        return True
